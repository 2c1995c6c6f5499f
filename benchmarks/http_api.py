"""HTTP benchmark: the running service over loopback at 64 concurrent connections.

Run:  python benchmarks/http_api.py [--subjects 50000] [--connections 64] [--seconds 6]
                                [--rounds 3] [--workers N] [--batch 10000] [--json FILE]

Starts ``consentry serve`` on a copy of the synthetic meetings store (benchmarks/_common.py,
built once and cached), then drives it with a small asyncio HTTP/1.1 client (keep-alive, one
request in flight per connection) and reports, in one run:

1. a trivial endpoint of the same app (``GET /healthz``): throughput, p50 and p99 latency;
2. the single-decision endpoint (``POST /v1/decisions``, a service API key, a random subject
   of the store per request): the same figures, and its throughput as a share of (1) —
   measured in rounds that alternate (1) and (2);
3. the batch endpoint (``POST /v1/decisions/batch``, ``--batch`` subjects per request):
   decisions per second;

and the CPU time the server's processes spent per request (load-independent, unlike the
rates). The server runs one worker per CPU unless ``--workers`` says otherwise.

Targets: (2) at least 70% of (1)'s throughput with p99 at most 20 ms; (3) at least 200,000
decisions per second. The ratio is the figure that holds on a noisy machine: both endpoints
share the process, the client and the machine's mood.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Row, build_store, machine, percentile, print_table, subject_id

TARGET_RATIO = 0.70
TARGET_P99_MS = 20.0
TARGET_BATCH = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``consentry serve`` in a child process on a loopback port."""

    def __init__(self, url: str, workers: int, port: int) -> None:
        self.url = url
        self.workers = workers
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = dict(os.environ)
        env.update(CONSENTRY_DATABASE_URL=self.url, CONSENTRY_JWT_SECRET="benchmark-" + "x" * 32)
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "consentry"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"the server exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if b" 200 " in s.recv(4096):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready within 60 s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far."""
        import psutil

        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- a small HTTP/1.1 client -------------------------------------------------------------------


def request(method: str, path: str, body: bytes | None = None, token: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(length)


async def drive(
    port: int,
    make: Any,
    connections: int,
    seconds: float,
    warmup: float,
    check: Any = None,
    server_cpu: Any = None,
) -> dict[str, Any]:
    """Keep ``connections`` requests in flight for ``warmup + seconds``; measure the last
    ``seconds`` (and, with ``server_cpu``, the CPU time the server spent meanwhile)."""
    latencies: list[float] = []
    cpu: list[float] = []

    async def cpu_marks() -> None:
        if server_cpu is None:
            return
        await asyncio.sleep(warmup)
        cpu.append(server_cpu())
        await asyncio.sleep(seconds)
        cpu.append(server_cpu())

    errors = 0
    stop_at = time.perf_counter() + warmup + seconds
    measure_from = time.perf_counter() + warmup
    done = 0

    async def one() -> None:
        nonlocal errors, done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                payload = make()
                start = time.perf_counter()
                if start >= stop_at:
                    break
                writer.write(payload)
                status, body = await _read_response(reader)
                end = time.perf_counter()
                if status != 200 or (check is not None and not check(body)):
                    errors += 1
                if start >= measure_from:
                    latencies.append(end - start)
                    done += 1
        finally:
            writer.close()

    await asyncio.gather(cpu_marks(), *(one() for _ in range(connections)))
    cpu_s = cpu[1] - cpu[0] if len(cpu) == 2 else float("nan")
    return {"latencies": latencies, "seconds": seconds, "errors": errors, "cpu_s": cpu_s}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from several measured windows (rounds)."""
    latencies = sorted(x for r in runs for x in r["latencies"])
    seconds = sum(r["seconds"] for r in runs)
    done = len(latencies)
    cpu = sum(r["cpu_s"] for r in runs)
    return {
        "server_cpu_us_per_request": cpu * 1e6 / done if done else float("nan"),
        "requests": done,
        "rps": done / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": sum(r["errors"] for r in runs),
    }


def histogram(port: int, method: str, route: str) -> list[tuple[float, float]]:
    """The service's latency histogram for ``route``: (bucket upper bound, count) pairs."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    buckets: list[tuple[float, float]] = []
    for line in data.decode().splitlines():
        if (
            line.startswith("consentry_http_request_duration_seconds_bucket{")
            and f'route="{route}"' in line
            and f'method="{method}"' in line
        ):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, float(line.rsplit(" ", 1)[1])))
    return sorted(buckets)


def inside_latency(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> dict[str, float]:
    """p50/p99 of the time the service itself spent per request between two histograms
    (bucket upper bounds): what the client sees minus the wait for a CPU and the network."""
    counts = dict(before)
    buckets = [(le, n - counts.get(le, 0.0)) for le, n in after]
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        for le, count in buckets:
            if total and count >= q * total:
                return le * 1000
        return float("nan")

    return {"p50_ms_at_most": quantile(0.50), "p99_ms_at_most": quantile(0.99)}


def _runner() -> Any:
    """``asyncio.run``, on uvloop when it is installed (the client needs to be cheaper than
    the server it measures)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run

    def run(coro: Any) -> Any:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)

    return run


def create_key(url: str) -> str:
    from consentry import Store
    from consentry.api.keys import ApiKeys

    with Store(url) as store:
        store.init()
        return ApiKeys(store).create("http-benchmark", "service").secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per figure")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of (1) and (2)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="server worker processes (default: one per CPU)",
    )
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    built = build_store(args.subjects)
    with tempfile.TemporaryDirectory(prefix="consentry-http-") as tmp:
        db = Path(tmp) / "store.db"
        shutil.copy(built.path, db)
        url = f"sqlite:///{db}"
        key = create_key(url)
        port = free_port()
        rng = random.Random(7)
        n = args.subjects

        def health() -> bytes:
            return HEALTH

        HEALTH = request("GET", "/healthz")

        def single() -> bytes:
            body = json.dumps(
                {
                    "subject": subject_id(rng.randrange(n)),
                    "purpose": "ai.training",
                    "category": "content.audio",
                }
            ).encode()
            return request("POST", "/v1/decisions", body, key)

        batches = []
        for _ in range(8):
            subjects = [subject_id(rng.randrange(n)) for _ in range(args.batch)]
            body = json.dumps(
                {"purpose": "ai.training", "category": "content.audio", "subjects": subjects}
            ).encode()
            batches.append(request("POST", "/v1/decisions/batch", body, key))

        def batch() -> bytes:
            return batches[rng.randrange(len(batches))]

        def decided(body: bytes) -> bool:
            return b'"reason"' in body

        print(
            f"consentry HTTP benchmark: {args.subjects:,} subjects, {args.workers} worker(s), "
            f"{args.connections} connections, {args.seconds:g} s per figure"
        )
        with Server(url, args.workers, port) as server:
            run = _runner()
            c, w, cpu = args.connections, args.warmup, server.cpu_seconds
            s = args.seconds / args.rounds
            # Rounds alternate the trivial and the decision endpoint, so that both meet the
            # same machine: the ratio then holds while other work comes and goes.
            # Every worker loads its snapshot on its first decision: not part of the figures.
            run(drive(port, single, c, 1.0, 0.0, decided))
            before = histogram(port, "POST", "/v1/decisions")
            trivial_runs, decision_runs = [], []
            for _ in range(args.rounds):
                trivial_runs.append(run(drive(port, health, c, s, w, server_cpu=cpu)))
                decision_runs.append(run(drive(port, single, c, s, w, decided, cpu)))
            trivial, decision = summarise(trivial_runs), summarise(decision_runs)
            inside = inside_latency(before, histogram(port, "POST", "/v1/decisions"))
            bulk = summarise([run(drive(port, batch, c, args.seconds, w, decided, cpu))])
    ratio = decision["rps"] / trivial["rps"] if trivial["rps"] else 0.0
    batch_rate = bulk["rps"] * args.batch
    rows = [
        Row("trivial GET /healthz: requests/s", f"{trivial['rps']:,.0f}"),
        Row("trivial: p50 / p99 latency", f"{trivial['p50_ms']:.1f} / {trivial['p99_ms']:.1f} ms"),
        Row("trivial: server CPU per request", f"{trivial['server_cpu_us_per_request']:.0f} µs"),
        Row("single decision: requests/s", f"{decision['rps']:,.0f}"),
        Row(
            "single decision: server CPU per request",
            f"{decision['server_cpu_us_per_request']:.0f} µs",
        ),
        Row(
            "single decision / trivial throughput",
            f"{ratio:.0%}",
            f">= {TARGET_RATIO:.0%}",
            ratio >= TARGET_RATIO,
        ),
        Row(
            "single decision, time inside the service: p50 / p99",
            f"<= {inside['p50_ms_at_most']:g} / <= {inside['p99_ms_at_most']:g} ms",
        ),
        Row(
            "single decision: p50 / p99 latency",
            f"{decision['p50_ms']:.1f} / {decision['p99_ms']:.1f} ms",
            f"p99 <= {TARGET_P99_MS:g} ms",
            decision["p99_ms"] <= TARGET_P99_MS,
        ),
        Row(
            f"batch ({args.batch:,} per request): decisions/s",
            f"{batch_rate:,.0f}",
            f">= {TARGET_BATCH:,}",
            batch_rate >= TARGET_BATCH,
        ),
        Row(
            "batch: p50 / p99 latency per request",
            f"{bulk['p50_ms']:.0f} / {bulk['p99_ms']:.0f} ms",
        ),
        Row(
            "errors (non-200 or no decision)",
            str(trivial["errors"] + decision["errors"] + bulk["errors"]),
            "0",
            trivial["errors"] + decision["errors"] + bulk["errors"] == 0,
        ),
    ]
    print_table("HTTP (loopback)", rows)
    results = {
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "trivial": trivial,
        "single": decision | {"ratio_to_trivial": ratio, "inside_service": inside},
        "batch": bulk | {"decisions_per_s": batch_rate},
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
