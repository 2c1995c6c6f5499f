"""Ledger verification on SQLite: the chain, the state audit and ``Store.verify`` as a whole.

    .venv/bin/python benchmarks/verify.py
    .venv/bin/python benchmarks/verify.py --subjects 120000,600000 --runs 3
    .venv/bin/python benchmarks/verify.py --src /tmp/old/src   # another tree's consentry

The store is the synthetic meetings store of the other benchmarks (``_common.build_store``:
consents over two or three categories, a third of the subjects in accounts with settings and
features, a few objections; about 1.75 events per subject), so 120,000 subjects are ~210,000
events and 600,000 subjects ~1,050,000. Cached under ``benchmarks/out/`` (rebuilt when
``_common.GENERATOR`` changes: the v2 stores hashed the subject id, not its commitment).

Measured, each on a fresh ``Store``, best of ``--runs``:

* the chain: ``Ledger.verify(mac_key)`` (MACs checked), in one process;
* the state audit alone (``consentry.ledger.audit.audit_state``), in one process;
* ``Store.verify()``: whatever ``ledger verify`` does (keys, chain, MACs and the state audit),
  with its default number of processes, and with ``workers=1`` (when the code has the
  option: see ``consentry.ledger.verifying``).

Wall time and CPU time are both shown; CPU time is the process's and its children's (the
forked verifiers): on a shared machine the CPU time says what the code costs, the wall time
what a caller waited. The load average at the start and end of each size is recorded.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--src" in sys.argv:  # measure another tree's consentry (e.g. the code before a change)
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1])

import _common
from _common import Row, print_table

TARGET_VERIFY = 100_000  # events/s: `ledger verify` as a whole


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subjects", default="120000,600000", help="store sizes in subjects (comma-separated)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--no-verify", action="store_true", help="time only the state audit")
    parser.add_argument("--src", help="import consentry from this directory (see above)")
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

        events = built.events

        def measure(
            label: str,
            key: str,
            run: Any,
            target: int | None,
            events: int = events,
            size: dict[str, Any] = size,
        ) -> None:
            timings = []
            for _ in range(args.runs):
                timings.append(_timed(run))
            best = min(timings, key=lambda t: t[0])
            wall, cpu, events = best  # the events checked (the store's own first one too)
            size[key] = {
                "wall_s": [round(t[0], 3) for t in timings],
                "cpu_s": [round(t[1], 3) for t in timings],
                "events_per_s": round(events / wall),
                "events_per_cpu_s": round(events / min(t[1] for t in timings)),
            }
            print(
                f"  {label}: {wall:.2f} s wall, {cpu:.2f} s CPU: {events / wall:,.0f} events/s "
                f"({events / cpu:,.0f} per CPU-second)",
                flush=True,
            )
            if target is not None:
                rows.append(
                    Row(
                        f"{label}, {events:,} events",
                        f"{events / wall:,.0f}/s",
                        f">= {target:,}/s",
                        events / wall >= target,
                    )
                )

        parallel = "workers" in inspect.signature(Store.verify).parameters

        def chain(url: str = built.url) -> int:
            with Store(url) as store:
                mac_key = store._mac_key_for_verify()
                result = store.ledger.verify(mac_key)
            assert result.ok, result.problem
            return result.checked

        def state(url: str = built.url) -> int:
            engine = make_engine(url)
            try:
                result = audit_state(engine)
            finally:
                engine.dispose()
            assert result.ok, result.summary()
            return result.events

        def whole(url: str = built.url, **options: Any) -> int:
            with Store(url) as store:
                result = store.verify(**options)
            assert result.ok, result.problem
            return result.checked

        measure("chain (Ledger.verify, one process)", "chain", chain, None)
        measure("state audit (audit_state)", "audit", state, None)
        if not args.no_verify:
            measure("Store.verify()", "verify", whole, TARGET_VERIFY)
            if parallel:
                measure(
                    "Store.verify(workers=1)",
                    "verify_one_process",
                    lambda: whole(workers=1),
                    None,
                )
        size["load_average_end"] = os.getloadavg()
        results["sizes"].append(size)
    print_table("Ledger verification (SQLite)", rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _timed(run: Any) -> tuple[float, float, int]:
    """(wall, CPU of this process and its finished children, result) of ``run()``."""
    me, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    before = [resource.getrusage(who) for who in (me, kids)]
    wall = time.perf_counter()
    result = run()
    wall = time.perf_counter() - wall
    after = [resource.getrusage(who) for who in (me, kids)]
    cpu = sum(
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    return wall, cpu, result


def _loop_ns(steps: int = 5_000_000) -> float:
    """CPU time of one step of an empty ``for`` loop: how fast Python runs on this machine
    at the moment (other work on its two cores slows every figure)."""
    started = time.process_time()
    for _ in range(steps):
        pass
    return (time.process_time() - started) / steps * 1e9


if __name__ == "__main__":
    raise SystemExit(main())
