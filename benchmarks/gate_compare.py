"""Compare the gate's cost on two source trees, alternately, in CPU seconds.

    flock /tmp/consentry-bench.lock python benchmarks/gate_compare.py \\
        --a /work/main/src --b src --workdir benchmarks/out/work --size 10M \\
        --engines duckdb,duckdb-multiset,spark --repeat 4 --json benchmarks/out/compare.json

Each run is one ``benchmarks/gate.py --worker`` process (the store and manifests that
``gate.py`` built and cached in ``--workdir``) with ``PYTHONPATH`` set to one tree; the trees
alternate run by run (A B, then B A, ...), so a neighbour's load falls on both alike. On a
shared machine wall time says as much about the neighbours as about the code: the figure
compared is CPU time. DuckDB: the process's CPU seconds from the start of ``store.gate`` to
its end (every thread; the worker's ``cpu`` stages). Spark: the whole process tree's CPU
(the JVM included, sampled every 100 ms until it exits), which includes the JVM's start and
the store's load, the same on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def tree_cpu(proc: Any) -> float:
    import psutil

    total = 0.0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
    except psutil.NoSuchProcess:
        pass
    return total


def one(
    src: Path, engine: str, url: str, manifest: Path, out: Path, timeout: float
) -> dict[str, Any]:
    import psutil

    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    cmd = [sys.executable, str(HERE / "gate.py"), "--worker", engine, "--store", url,
           "--manifest", str(manifest), "--out", str(out)]  # fmt: skip
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    cpu = 0.0
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        cpu = max(cpu, tree_cpu(proc))
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate(timeout=60)
            raise RuntimeError(f"{engine} on {src} timed out")
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} on {src} failed: {stderr.strip()[-2000:]}")
    data = json.loads(stdout.strip().splitlines()[-1])
    data["tree_cpu_s"] = cpu
    data["gate_cpu_s"] = sum(data.get("cpu", {}).values())
    shutil.rmtree(out, ignore_errors=True)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="one source tree (its src/)")
    ap.add_argument("--b", type=Path, required=True, help="the other")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--size", default="10M", help="a manifest gate.py built: 1M, 10M, ...")
    ap.add_argument("--engines", default="duckdb,duckdb-multiset")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--subjects", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    url = f"sqlite:///{args.workdir / f'store-{args.subjects}.db'}"
    manifest = args.workdir / f"manifest-{args.size}.parquet"
    results: dict[str, Any] = {"a": str(args.a), "b": str(args.b), "size": args.size, "runs": []}
    for engine in args.engines.split(","):
        for rep in range(args.repeat):
            order = [("a", args.a), ("b", args.b)]
            for side, src in order if rep % 2 == 0 else order[::-1]:
                r = one(src, engine, url, manifest, args.workdir / f"cmp-{side}", args.timeout)
                r.update(engine=engine, side=side, rep=rep)
                results["runs"].append(r)
                print(f"{engine:<16} {side} rep {rep}: gate {r['gate_s']:7.2f}s wall, "
                      f"{r['gate_cpu_s']:7.2f}s CPU in-process, {r['tree_cpu_s']:7.2f}s tree CPU",
                      flush=True)  # fmt: skip
        for key in ("gate_s", "gate_cpu_s", "tree_cpu_s"):
            med = {
                side: statistics.median(
                    r[key] for r in results["runs"] if r["engine"] == engine and r["side"] == side
                )
                for side in ("a", "b")
            }
            ratio = med["b"] / med["a"] if med["a"] else float("nan")
            print(f"{engine:<16} median {key}: a {med['a']:.2f}, b {med['b']:.2f} "
                  f"(b/a {ratio:.3f})", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
