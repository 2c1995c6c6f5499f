"""Benchmark the training-data gate: DuckDB, Spark on local[2], and plain pandas.

    python benchmarks/gate.py                       # 1M, 10M and 100M rows (long)
    python benchmarks/gate.py --sizes 1M,10M --engines duckdb,pandas
    python benchmarks/gate.py --impact-only

What it does, in one run:

1. builds (once, then reuses) a store of 1M subjects: every subject is a member of one of
   10,000 accounts, 30% opted in to ``ai.training`` on content, 5% refused;
2. generates synthetic manifests with DuckDB (10% of items with 2-4 subjects, 1% with a
   protected label, five content categories, a source URL and a duration column);
3. gates each manifest Parquet -> Parquet with every engine, each in a fresh process, and
   reports rows/s end to end (the ``store.gate`` call: read, decide, write both outputs,
   measure them, record the lineage) and the peak RSS of the process tree (Spark's JVM
   included), sampled every 50 ms; ``--engines copy,copy-arrow`` add two floors: DuckDB
   copying the manifest Parquet -> Parquet with its own writer, deciding nothing, and the
   same copy through the gate's own path (DuckDB's Arrow batches into its PyArrow writer);
4. adds 1,000 datasets over the 1M subjects (10,000 subjects each) to a copy of the store
   and times ``store.impact(subject)`` for 2,000 random subjects (p50, p99).

The pandas baseline is the straightforward implementation: read the manifest whole, explode
the subject lists, merge the per-subject decision table (the same one the engines use), take
the first denying subject per item, merge back and write. It needs the manifest in memory, so
it runs up to ``--pandas-max`` rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEETINGS = ROOT / "policies" / "meetings.yaml"
SUBJECTS = 1_000_000
ACCOUNTS = 10_000
PURPOSE = "ai.training"
CATEGORIES = ["content.audio", "content.video", "content.chat", "content.transcript",
              "content.recording"]  # fmt: skip


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * scale)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n:,}"


def subject(i: int) -> str:
    return f"u{i:07d}"


# -- the store ----------------------------------------------------------------------------------


def build_store(path: Path, subjects: int) -> str:
    """A store of ``subjects`` subjects (reused when the file is already complete)."""
    from consentry import Store
    from consentry.ledger.events import Draft, Kind

    url = f"sqlite:///{path}"
    done = path.with_suffix(".done")
    if done.exists() and done.read_text() == str(subjects):
        return url
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    started = time.perf_counter()
    store = Store(url)
    store.init(policies=[MEETINGS])
    version = store.policy().version
    rng = random.Random(42)
    batch: list[Draft] = []
    for i in range(subjects):
        s = subject(i)
        batch.append(Draft(kind=Kind.MEMBER_ADDED, subject=s, account=f"acct{i % ACCOUNTS:05d}"))
        r = rng.random()
        kind = Kind.CONSENT_GIVEN if r < 0.30 else Kind.CONSENT_REFUSED if r < 0.35 else None
        if kind is not None:
            batch.append(
                Draft(
                    kind=kind,
                    actor=s,
                    subject=s,
                    purpose=PURPOSE,
                    categories=("content",),
                    policy_version=version,
                    notice_version=version,
                    language="en",
                    method="benchmark",
                )
            )
        if len(batch) >= 20_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    store.close()
    done.write_text(str(subjects))
    print(f"  store: {subjects:,} subjects in {time.perf_counter() - started:.0f}s", flush=True)
    return url


# -- manifests ------------------------------------------------------------------------------------


def generate_manifest(path: Path, rows: int, subjects: int) -> None:
    """Synthetic manifest with DuckDB: streamed straight to Parquet."""
    import duckdb

    if path.exists():
        return
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    con = duckdb.connect()
    con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='2GB'")
    con.execute("SET enable_progress_bar=false")

    def sid(seed: int) -> str:
        return f"'u' || lpad((hash(i, {seed}) % {subjects})::VARCHAR, 7, '0')"

    con.execute(
        f"""
        COPY (
            SELECT
                'item-' || i::VARCHAR AS item_id,
                CASE WHEN hash(i, 1) % 10 = 0
                     THEN [{sid(2)}, {sid(3)}, {sid(4)}, {sid(5)}][1:2 + (hash(i, 6) % 3)::INT]
                     ELSE [{sid(2)}] END AS subject_ids,
                {cats}[1 + (hash(i, 7) % 5)::INT] AS category,
                CASE WHEN hash(i, 8) % 100 = 0 THEN ['health'] ELSE []::VARCHAR[] END AS labels,
                'https://media.example.com/r/' || i::VARCHAR AS source_url,
                (hash(i, 9) % 3600)::DOUBLE AS duration_s
            FROM range({rows}) t(i)
        ) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 1048576)
        """
    ).fetchall()
    con.close()
    tmp.rename(path)
    size = path.stat().st_size / 1e9
    print(f"  manifest {label(rows)}: {size:.2f} GB in {time.perf_counter() - started:.0f}s",
          flush=True)  # fmt: skip


# -- workers (one fresh process per run) -----------------------------------------------------


def worker(engine: str, url: str, manifest: str, out: str) -> dict[str, Any]:
    from consentry import Store

    store = Store(url)
    t0 = time.perf_counter()
    store.state()  # load the 1M-subject snapshot (a long-running service has it warm)
    state_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    if engine in ("duckdb", "duckdb-multiset"):
        # duckdb: the default, sorted SHA-256 digests; duckdb-multiset: the one-pass checksum
        digest = "multiset" if engine == "duckdb-multiset" else "sorted"
        r = store.gate(
            manifest, purpose=PURPOSE, out=out, threads=2, memory_limit="3GB", digest=digest
        )
        counts = (r.input_items, r.allowed, r.excluded)
        timings = dict(r.extra.get("timings", {}))
        cpu = dict(r.extra.get("cpu", {}))
    elif engine == "spark":
        _spark_session()  # local[2], started before the clock: the gate uses the active session
        t1 = time.perf_counter()
        # The multiset digest, as the figures in docs/performance.md were measured.
        r = store.gate(manifest, purpose=PURPOSE, out=out, engine="spark", digest="multiset")
        counts = (r.input_items, r.allowed, r.excluded)
    elif engine == "copy":  # the floor: read the manifest and write it again, decide nothing
        import duckdb

        Path(out).mkdir(parents=True)
        con = duckdb.connect()
        con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='3GB'")
        ((n,),) = con.execute(
            f"COPY (SELECT * FROM read_parquet('{manifest}')) TO '{out}/copy.parquet' "
            "(FORMAT parquet)"
        ).fetchall()
        counts = (n, n, 0)
    elif engine == "copy-arrow":  # the floor for the gate's own reader and writer
        counts = arrow_copy(manifest, Path(out))
    else:
        counts = pandas_gate(store, manifest, Path(out))
    gate_s = time.perf_counter() - t1
    return {"state_s": state_s, "gate_s": gate_s, "input": counts[0], "allowed": counts[1],
            "excluded": counts[2], "timings": timings, "cpu": cpu}  # fmt: skip


def arrow_copy(manifest: str, out: Path) -> tuple[int, int, int]:
    """Copy the manifest the way the gate moves its rows, deciding nothing: DuckDB's Arrow
    record batches (2 threads, the gate's batch size and buffer) into the gate's Parquet
    writer (PyArrow, snappy, dictionaries only where the first batch repeats values) on a
    thread of its own."""
    import duckdb

    from consentry.gate import stream

    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET threads=2; SET preserve_insertion_order=false; SET memory_limit='3GB'")
    con.execute("SET streaming_buffer_size='400MB'")
    reader = con.sql(f"SELECT * FROM read_parquet('{manifest}')").to_arrow_reader(stream.BATCH_ROWS)
    sink = stream.Sink(stream.parquet_opener(out / "copy.parquet"), reader.schema, "copy")
    n = 0
    for batch in stream.Prefetch(reader):
        sink.put(batch)
        n += batch.num_rows
    sink.close()
    return n, n, 0


def _spark_session() -> Any:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("consentry-gate-benchmark")
        .config("spark.driver.memory", "3g")
        .config("spark.sql.shuffle.partitions", "16")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def pandas_gate(store: Any, manifest: str, out: Path) -> tuple[int, int, int]:
    """The straightforward pandas implementation: per-subject decisions merged onto the
    manifest (the decisions themselves come from the same table the engines join)."""
    import numpy as np
    import pandas as pd

    from consentry.gate.decisions import (
        ALLOW_CODES,
        PROTECTED_CODE,
        REASONS,
        UNKNOWN_CODE,
        build_table,
        take_snapshot,
    )

    df = pd.read_parquet(manifest)
    snapshot = take_snapshot(store, PURPOSE, None)
    table = build_table(snapshot, df["category"].unique().tolist())
    cats = table.category_table().to_pandas()
    decisions = table.table.to_pandas()
    df["_row"] = np.arange(len(df))
    units = df[["_row", "category", "subject_ids"]].explode("subject_ids")
    units["pos"] = units.groupby("_row").cumcount()
    units = units.merge(cats[["category", "g", "fixed", "parties_all"]], on="category")
    units = units[(units["pos"] == 0) | units["parties_all"]]
    units = units.merge(
        decisions, left_on=["g", "subject_ids"], right_on=["g", "subject"], how="left"
    )
    units["code"] = units["code"].fillna(UNKNOWN_CODE).astype("int64")
    units.loc[units["fixed"].notna(), "code"] = units["fixed"]
    denied = units[~units["code"].isin(ALLOW_CODES)].sort_values(["_row", "pos"])
    first = denied.drop_duplicates("_row")[["_row", "code", "subject_ids"]]
    first = first.rename(columns={"subject_ids": "blocking_subject"})
    df = df.merge(first, on="_row", how="left")
    protected = set(cats["protected"].iloc[0]) if len(cats) else set()
    hit = df["labels"].map(lambda labels: bool(protected.intersection(labels)))
    df.loc[hit, "code"] = PROTECTED_CODE
    df.loc[hit, "blocking_subject"] = df.loc[hit, "subject_ids"].map(lambda s: s[0])
    excluded = df[df["code"].notna()]
    allowed = df[df["code"].isna()].drop(columns=["_row", "code", "blocking_subject"])
    out.mkdir(parents=True, exist_ok=True)
    allowed.to_parquet(out / "allowed.parquet", index=False)
    ex = pd.DataFrame(
        {
            "item_id": excluded["item_id"],
            "reason": excluded["code"].astype(int).map(lambda c: REASONS[c]),
            "blocking_subject": excluded["blocking_subject"],
        }
    )
    ex.to_parquet(out / "excluded.parquet", index=False)
    return len(df), len(allowed), len(ex)


def run_worker(engine: str, url: str, manifest: Path, out: Path, timeout: float) -> dict[str, Any]:
    """Run one gate in a fresh process; sample the process tree's RSS every 50 ms."""
    import psutil

    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, __file__, "--worker", engine, "--store", url,
           "--manifest", str(manifest), "--out", str(out)]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                total = root.memory_info().rss
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += child.memory_info().rss
                peak = max(peak, total)
            except psutil.NoSuchProcess:
                return
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        stop.set()
        return {"engine": engine, "error": f"timed out after {timeout:.0f}s"}
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {"engine": engine, "error": " | ".join(tail)}
    data = json.loads(stdout.strip().splitlines()[-1])
    data.update(engine=engine, process_s=wall, peak_rss_gib=peak / 2**30)
    data["rows_per_s"] = data["input"] / data["gate_s"]
    data["rows_per_s_with_state"] = data["input"] / (data["gate_s"] + data["state_s"])
    return data


# -- impact ---------------------------------------------------------------------------------------


def impact_benchmark(
    url: str, work: Path, datasets: int, per_dataset: int, calls: int
) -> dict[str, Any]:
    """1,000 datasets over the 1M subjects; time store.impact(subject)."""
    import pyarrow as pa

    from consentry import Store, lineage
    from consentry.gate.result import LineageRecord
    from consentry.ids import new_id

    source = Path(url.removeprefix("sqlite:///"))
    target = work / "impact.db"
    done = work / "impact.done"
    if not (done.exists() and done.read_text() == f"{datasets}x{per_dataset}"):
        for p in work.glob("impact.db*"):
            p.unlink()
        shutil.copy(source, target)
        store = Store(f"sqlite:///{target}")
        rng = random.Random(1)
        started = time.perf_counter()
        ids = []
        seq = store.state().seq
        for n in range(datasets):
            picks = sorted(rng.sample(range(SUBJECTS), per_dataset))
            index = pa.table({
                "subject": [subject(i) for i in picks],
                "items": [rng.randint(1, 20) for _ in picks],
                "categories": ['{"content.audio":[3,3],"content.video":[1,1]}'] * len(picks),
            })  # fmt: skip
            dataset_id = new_id()
            ids.append(dataset_id)
            record = LineageRecord.make({
                "version": 1, "dataset_id": dataset_id, "name": f"bench-{n:04d}",
                "purpose": PURPOSE, "as_of": "2026-01-01T00:00:00.000000Z",
                "as_of_us": 1767225600000000, "policy_version": "2023-08",
                "ledger": {"seq": seq, "hash": "0" * 64}, "engine": "duckdb",
                "counts": {"input": 0, "allowed": 0, "excluded": 0, "excluded_by_reason": {}},
                "digests": {"method": "multiset-md5-v1", "input_sha256": "0" * 64,
                            "output_sha256": "0" * 64, "excluded_sha256": "0" * 64},
                "subjects": {"count": per_dataset, "index_sha256": "0" * 64},
                "created_at": "2026-01-01T00:00:00.000000Z",
            })  # fmt: skip
            lineage.save_dataset(store, record, index)
        for m in range(100):
            store.register_model(f"model-{m:03d}", rng.sample(ids, 10))
        store.close()
        done.write_text(f"{datasets}x{per_dataset}")
        print(f"  impact store: {datasets:,} datasets x {per_dataset:,} subjects in "
              f"{time.perf_counter() - started:.0f}s", flush=True)  # fmt: skip
    store = Store(f"sqlite:///{target}")
    rng = random.Random(2)
    for _ in range(50):  # warm up (policy parse cache, connection pool)
        store.impact(subject(rng.randrange(SUBJECTS)))
    times = []
    found = 0
    for _ in range(calls):
        s = subject(rng.randrange(SUBJECTS))
        t = time.perf_counter()
        result = store.impact(s)
        times.append(time.perf_counter() - t)
        found += len(result.datasets)
    store.close()
    times.sort()
    return {
        "datasets": datasets,
        "subjects_per_dataset": per_dataset,
        "calls": calls,
        "mean_datasets_per_subject": found / calls,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "max_ms": times[-1] * 1000,
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,10M,100M")
    ap.add_argument("--engines", default="duckdb,spark,pandas")
    ap.add_argument("--subjects", type=parse_size, default=SUBJECTS)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "consentry-bench-gate")  # fmt: skip
    ap.add_argument("--pandas-max", type=parse_size, default=parse_size("10M"))
    ap.add_argument("--spark-max", type=parse_size, default=parse_size("100M"))
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--impact-datasets", type=int, default=1000)
    ap.add_argument("--impact-subjects", type=int, default=10_000)
    ap.add_argument("--impact-calls", type=int, default=2000)
    ap.add_argument("--impact-only", action="store_true")
    ap.add_argument("--no-impact", action="store_true")
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    ap.add_argument("--keep-outputs", action="store_true")
    ap.add_argument("--shape", choices=["uniform", "per-category"], default="uniform",
                    help="per-category: the realistic shape of gate_peers.py, with its peers "
                    "in one process")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="per-category: alternating rounds")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.store, args.manifest, args.out)))
        return

    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"consentry gate benchmark — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, workdir {work}", flush=True)  # fmt: skip
    if args.shape == "per-category":
        per_category(args, work)
        return
    url = build_store(work / f"store-{args.subjects}.db", args.subjects)
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    results: dict[str, Any] = {"machine": machine, "runs": [], "impact": None}
    if not args.impact_only:
        for size in [parse_size(s) for s in args.sizes.split(",")]:
            manifest = work / f"manifest-{label(size)}.parquet"
            generate_manifest(manifest, size, args.subjects)
            for engine in args.engines.split(","):
                limit = {"pandas": args.pandas_max, "spark": args.spark_max}.get(engine)
                if limit is not None and size > limit:
                    print(f"  {label(size):>5} {engine:<7} skipped (over --{engine}-max)")
                    continue
                out = work / f"out-{engine}-{label(size)}"
                r = run_worker(engine, url, manifest, out, args.timeout)
                r["rows"] = size
                results["runs"].append(r)
                if "error" in r:
                    print(f"  {label(size):>5} {engine:<7} FAILED: {r['error']}", flush=True)
                else:
                    print(
                        f"  {label(size):>5} {engine:<7} {r['gate_s']:8.1f}s "
                        f"{r['rows_per_s'] / 1e6:7.2f}M rows/s  "
                        f"peak RSS {r['peak_rss_gib']:5.2f} GiB"
                        f"  (allowed {r['allowed']:,}; store load {r['state_s']:.1f}s)",
                        flush=True,
                    )
                if not args.keep_outputs and out.exists():
                    shutil.rmtree(out)
    if not args.no_impact:
        results["impact"] = impact_benchmark(
            url, work, args.impact_datasets, args.impact_subjects, args.impact_calls
        )
        i = results["impact"]
        print(f"  impact: p50 {i['p50_ms']:.2f} ms, p99 {i['p99_ms']:.2f} ms "
              f"({i['calls']} calls, ~{i['mean_datasets_per_subject']:.1f} datasets/subject)",
              flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def per_category(args: Any, work: Path) -> None:
    """The per-category shape: the gate and its peers alternating in this process."""
    import gate_peers
    from consentry import Store

    url = gate_peers.build_store(work / f"store-cat-{args.subjects}.db", args.subjects, MEETINGS)
    store = Store(url)
    started = time.perf_counter()
    store.state()
    load_s = time.perf_counter() - started
    results: dict[str, Any] = {"shape": "per-category", "subjects": args.subjects,
                               "snapshot_load_s": load_s, "load_start": os.getloadavg(),
                               "runs": []}  # fmt: skip
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        manifest = work / f"manifest-cat-{label(size)}-{args.subjects}.parquet"
        gate_peers.generate_manifest(manifest, size, args.subjects)
        r = gate_peers.run_shape(store, manifest, work, args.rounds, args.pandas_max, size)
        r["rows"] = size
        results["runs"].append(r)
        best = {k: min(v["wall"]) for k, v in r["figures"].items()}
        cpu = {k: min(v["cpu"]) for k, v in r["figures"].items()}
        print(f"  {label(size):>5} rows, {args.subjects:,} subjects (per category), best of "
              f"{args.rounds}; allowed sets identical: {r['allowed_sets_identical']}")  # fmt: skip
        for name in best:
            print(f"    {name:<12} {best[name]:7.2f} s wall  {cpu[name]:7.2f} s CPU  "
                  f"gate ÷ this {best['gate'] / best[name]:5.2f}×")  # fmt: skip
    results["load_end"] = os.getloadavg()
    print(f"  load average {results['load_start']} -> {results['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
