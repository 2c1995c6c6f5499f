"""Ledger verification: the current-state audit and ``Store.verify`` as a whole, on SQLite.

    .venv/bin/python benchmarks/verify.py
    .venv/bin/python benchmarks/verify.py --subjects 120000,600000 --runs 3

The store is the synthetic meetings store of the other benchmarks (``_common.build_store``:
consents over two or three categories, a third of the subjects in accounts with settings and
features, a few objections; about 1.75 events per subject), so 120,000 subjects are ~210,000
events and 600,000 subjects ~1,050,000.

Measured, each in a fresh connection, best of ``--runs``:

* the state audit (``consentry.ledger.audit.audit_state``): every event replayed through
  ``events.state_changes`` and the six current-state tables compared with the result;
* ``Store.verify()``: whatever it does when run (today the chain's recomputation and then the
  state audit), on a fresh ``Store``.

Wall time and the process's CPU time are both shown: on a shared machine the CPU time says
what the code costs, the wall time what a caller waited.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import Row, print_table

TARGET_AUDIT = 300_000  # events/s: the state audit
TARGET_VERIFY = 100_000  # events/s: `ledger verify` as a whole


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subjects", default="120000,600000", help="store sizes in subjects (comma-separated)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--no-verify", action="store_true", help="time only the state audit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to drop below 1",
    )
    args = parser.parse_args(argv)

    from consentry import Store
    from consentry.ledger.audit import audit_state
    from consentry.ledger.engine import make_engine

    results: dict[str, Any] = {
        "command": "benchmarks/verify.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _common.machine(),
        "sizes": [],
    }
    rows: list[Row] = []
    for subjects in (int(s) for s in args.subjects.split(",")):
        built = _common.build_store(subjects)
        print(
            f"store: {subjects:,} subjects, {built.events:,} events, "
            f"{built.consent_records:,} consent records ({'cached' if built.cached else 'built'})"
        )
        _common.wait_idle(args.wait_idle)
        size: dict[str, Any] = {"subjects": subjects, "events": built.events}
        size["load_average_start"] = os.getloadavg()
        size["python_loop_ns"] = _loop_ns()
        print(
            f"  load average {size['load_average_start'][0]:.2f}; an empty Python loop step "
            f"costs {size['python_loop_ns']:.0f} ns of CPU now (for scale between runs)"
        )

        def audit_once(url: str = built.url) -> tuple[float, float, int, int]:
            engine = make_engine(url)
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                result = audit_state(engine)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            finally:
                engine.dispose()
            assert result.ok, result.summary()
            return wall, cpu, result.events, result.rows

        runs = [audit_once() for _ in range(args.runs)]
        wall, cpu, events, state_rows = min(runs)
        size["audit"] = {
            "wall_s": [round(r[0], 3) for r in runs],
            "cpu_s": [round(r[1], 3) for r in runs],
            "events": events,
            "state_rows": state_rows,
            "events_per_s": round(events / wall),
            "events_per_cpu_s": round(events / min(r[1] for r in runs)),
        }
        print(
            f"  state audit: {wall:.2f} s wall, {cpu:.2f} s CPU for {events:,} events and "
            f"{state_rows:,} state rows: {events / wall:,.0f} events/s"
        )
        rows.append(
            Row(
                f"state audit, {events:,} events",
                f"{events / wall:,.0f}/s",
                f">= {TARGET_AUDIT:,}/s",
                events / wall >= TARGET_AUDIT,
            )
        )
        if not args.no_verify:
            timings = []
            for _ in range(args.runs):
                store = Store(built.url)
                try:
                    w, c = time.perf_counter(), time.process_time()
                    verified = store.verify()
                    timings.append((time.perf_counter() - w, time.process_time() - c))
                finally:
                    store.close()
                assert verified.ok, verified.problem
            wall, cpu = min(timings)
            size["verify"] = {
                "wall_s": [round(t[0], 3) for t in timings],
                "cpu_s": [round(t[1], 3) for t in timings],
                "events_per_s": round(events / wall),
            }
            print(
                f"  Store.verify(): {wall:.2f} s wall, {cpu:.2f} s CPU: "
                f"{events / wall:,.0f} events/s"
            )
            rows.append(
                Row(
                    f"ledger verify, {events:,} events",
                    f"{events / wall:,.0f}/s",
                    f">= {TARGET_VERIFY:,}/s",
                    events / wall >= TARGET_VERIFY,
                )
            )
        size["load_average_end"] = os.getloadavg()
        results["sizes"].append(size)
    print_table("Ledger verification (SQLite)", rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _loop_ns(steps: int = 5_000_000) -> float:
    """CPU time of one step of an empty ``for`` loop: how fast Python runs on this machine
    at the moment (other work on its two cores slows every figure)."""
    started = time.process_time()
    for _ in range(steps):
        pass
    return (time.process_time() - started) / steps * 1e9


if __name__ == "__main__":
    raise SystemExit(main())
