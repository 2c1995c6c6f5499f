"""Events out: latency from a committed write to a webhook receiver, and delivery throughput.

    flock /tmp/consentry-bench.lock .venv/bin/python benchmarks/events_out.py
    flock /tmp/consentry-bench.lock .venv/bin/python benchmarks/events_out.py \\
        --db postgresql://postgres@127.0.0.1:5432/bench --json benchmarks/out/events-pg.json

*Latency*: a writer appends consents at a fixed rate (``--rate``, 1,000/s) for ``--seconds``;
a ``consentry deliver`` process sends them to a receiver on loopback; each message's latency
is the time it reached the receiver minus the time its write returned (the commit). The
writer and the receiver share this process; the receiver is a minimal asyncio HTTP server in
a process of its own, so that it is never the bottleneck.

*Throughput*: ``--messages`` events are written first, with one subscription; then an
in-process :class:`Deliverer` sends them all to the receiver; messages per second from the
first claim to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The receiver listens on loopback, which webhooks may reach only when the operator allows it.
os.environ.setdefault("CONSENTRY_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
MEETINGS = ROOT / "policies" / "meetings.yaml"


# -- a fast receiver, in its own process --------------------------------------------------------


def _receiver_main(port_out: Any, arrivals: Any, stop: Any) -> None:
    """Answer every POST with 204 at once; send (webhook-id, arrival time) pairs back."""

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                head_end = self.buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                head = self.buffer[:head_end].decode("latin-1")
                length = 0
                msg_id = ""
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    lname = name.strip().lower()
                    if lname == "content-length":
                        length = int(value)
                    elif lname == "webhook-id":
                        msg_id = value.strip()
                end = head_end + 4 + length
                if len(self.buffer) < end:
                    return
                self.buffer = self.buffer[end:]
                pending.append((msg_id, time.time()))
                self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")

    pending: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
            if pending:
                batch = pending[:]
                del pending[: len(batch)]
                arrivals.send(batch)
        server.close()

    asyncio.run(main())


class Receiver:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        port_rx, port_tx = ctx.Pipe(duplex=False)
        self._rx, tx = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self.process = ctx.Process(target=_receiver_main, args=(port_tx, tx, self._stop))
        self.process.start()
        if not port_rx.poll(30):
            raise RuntimeError("the receiver did not start")
        self.url = f"http://127.0.0.1:{port_rx.recv()}/hook"
        self.arrivals: dict[str, float] = {}

    def collect(self, want: int, timeout_s: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < want and time.monotonic() < deadline:
            if self._rx.poll(0.1):
                for msg_id, at in self._rx.recv():
                    self.arrivals.setdefault(msg_id, at)
        return self.arrivals

    def close(self) -> None:
        self._stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


# -- the measurements ---------------------------------------------------------------------------


def _store(url: str) -> Any:
    from consentry import Store

    store = Store(url)
    store.init(policies=[MEETINGS])
    return store


def latency(url: str, rate: int, seconds: float, src: Path) -> dict[str, Any]:
    from consentry.outbound import subscriptions

    receiver = Receiver()
    store = _store(url)
    subscriptions.create(store, receiver.url)
    env = dict(os.environ, PYTHONPATH=str(src), CONSENTRY_WEBHOOK_POLL_S="0.005")
    worker = subprocess.Popen(
        [sys.executable, "-c", "from consentry.cli import app; app()", "--db", url, "deliver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    committed: dict[str, float] = {}
    try:
        # The worker is ready once a first message has gone through.
        probe = store.give_consent("probe", "ai.training", ["content.audio"])
        if probe.id not in receiver.collect(1, 120):
            raise RuntimeError("the deliver process sent nothing in 120 s")
        total = int(rate * seconds)
        start = time.monotonic()
        for i in range(total):
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            event = store.give_consent(f"lat{i}", "ai.training", ["content.audio"])
            committed[event.id] = time.time()
        achieved = total / (time.monotonic() - start)
        arrivals = receiver.collect(total + 1, 60)
    finally:
        worker.terminate()
        worker.wait(20)
        receiver.close()
        store.close()
    lat = sorted((arrivals[i] - t) * 1000 for i, t in committed.items() if i in arrivals)
    return {
        "writes": len(committed),
        "write_rate_per_s": round(achieved),
        "delivered": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 1),
        "max_ms": round(lat[-1], 1),
    }


def throughput(url: str, messages: int, lanes: int) -> dict[str, Any]:
    from consentry.ledger.events import Draft, Kind
    from consentry.outbound import subscriptions
    from consentry.outbound.delivery import Deliverer, DeliveryConfig

    receiver = Receiver()
    store = _store(url)
    subscriptions.create(store, receiver.url)
    drafts = [
        Draft(
            kind=Kind.CONSENT_GIVEN,
            actor=f"t{i}",
            subject=f"t{i}",
            purpose="ai.training",
            categories=("content.audio",),
            method="api",
        )
        for i in range(messages)
    ]
    for i in range(0, messages, 5000):
        store.ledger.append(drafts[i : i + 5000], store.clock)
    deliverer = Deliverer(store, DeliveryConfig(batch=2000, lanes=lanes, poll_s=0.001))
    try:
        started, cpu0 = time.time(), time.process_time()
        deliverer.start()
        arrivals = receiver.collect(messages, 600)
        elapsed = max(arrivals.values()) - started
        cpu = time.process_time() - cpu0  # this process, every thread: the worker's CPU
    finally:
        deliverer.stop()
        receiver.close()
        store.close()
    return {
        "messages": messages,
        "delivered": len(arrivals),
        "lanes": lanes,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(len(arrivals) / elapsed),
        "worker_cpu_s": round(cpu, 2),
        "messages_per_cpu_s": round(len(arrivals) / cpu) if cpu > 0 else None,
        "load_after": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file per figure)")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--skip", choices=["latency", "throughput"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    src = ROOT / "src"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="consentry-events-") as tmp:
        for name in ("latency", "throughput"):
            if args.skip == name:
                continue
            url = args.db or f"sqlite:///{tmp}/{name}.db"
            if name == "latency":
                results[name] = latency(url, args.rate, args.seconds, src)
            else:
                results[name] = throughput(url, args.messages, args.lanes)
            print(name, json.dumps(results[name]), flush=True)
    results["load"] = os.getloadavg()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
