"""The CPU one consent write costs, without the disk: what a change to the write path adds.

    .venv/bin/python benchmarks/write_cpu.py
    .venv/bin/python benchmarks/write_cpu.py --src ../other-checkout/src --rounds 4

A durable write's wall time is mostly the disk's flush, which on a shared VM varies several
fold from one minute to the next; the CPU a write costs does not. This runs the same writes as
``ledger_writes.py`` (``Store.give_consent`` with two categories and an idempotency key) on an
in-memory SQLite store, timing each round with ``time.process_time``. With ``--src``, rounds of
that checkout's code alternate with this one's, each in a fresh process, so that the two are
measured under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEETINGS = ROOT / "policies" / "meetings.yaml"


def one_round(writes: int) -> float:
    """µs of CPU per write in this process (the code on ``sys.path``)."""
    from consentry import Store

    store = Store("sqlite:///:memory:")
    store.init(policies=[MEETINGS])
    for i in range(200):  # warm: compiled statements, the in-memory state
        store.give_consent(f"w{i}", "ai.training", ["content.audio"], idempotency_key=f"w{i}")
    started = time.process_time()
    for i in range(writes):
        store.give_consent(
            f"u{i}", "ai.training", ["content.audio", "content.video"], idempotency_key=f"k{i}"
        )
    return (time.process_time() - started) / writes * 1e6


def run(src: Path, writes: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, __file__, "--one", "--writes", str(writes)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(out.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--src", type=Path, help="another checkout's src/ to compare with")
    parser.add_argument(
        "--one",
        action="store_true",
        help="one round in this process, printing µs per write (e.g. under valgrind: the "
        "instructions of 400 writes minus those of 100, over 300, are one write's)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.one:
        print(f"{one_round(args.writes):.1f}")
        return 0
    sides = {"this": ROOT / "src"}
    if args.src is not None:
        sides = {"other": args.src.resolve(), **sides}
    figures: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, src in sides.items():
            figures[name].append(run(src, args.writes))
    load = os.getloadavg()
    for name, values in figures.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:>5}: {statistics.mean(values):7.1f} µs CPU per write (rounds: {shown})")
    if "other" in figures:
        change = statistics.mean(figures["this"]) / statistics.mean(figures["other"]) - 1
        print(f"change: {change:+.1%}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"figures": figures, "load": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
