"""``Store.check`` / ``check_many`` against ``Decider.check`` / ``codes``, in instructions.

    .venv/bin/python benchmarks/store_check_cpu.py --callgrind --src ../main/src --src src

The target of issue 13 is a ratio (``Store.check`` within 2× of ``Decider.check``;
``check_many`` at least half of ``Decider.codes``' throughput); on a shared VM wall times move
with the neighbours, instruction counts do not. This builds a small SQLite store (meetings
policy, ``--subjects`` members, 30% opted in to ``ai.training`` on content, 5% refused), loads
its snapshot, warms every plan, and then runs four phases over the same subjects (2% never
seen) and three (purpose, category) pairs: ``Decider.check`` with the time given, the
``Store.check`` the README shows (the store reads its clock, validates the id and looks for
new events), ``Decider.codes`` and ``Store.check_many`` (batches of 500). With
``--callgrind`` it runs itself under ``valgrind --tool=callgrind`` once per ``--src``, cut
into one count per phase (``--dump-before=zlib_crc32``), and prints instructions per answer.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEETINGS = ROOT / "policies" / "meetings.yaml"
PAIRS = (
    ("ai.training", "content.audio"),
    ("improvement", "content.chat"),
    ("improvement", "service_data.telemetry"),
)
PHASES = ("decider_check", "store_check", "decider_codes", "store_check_many")
BATCH = 500


def build(folder: Path, subjects: int) -> Any:
    from consentry import Store
    from consentry.ledger.events import Draft, Kind

    store = Store(f"sqlite:///{folder}/cpu.db")
    store.init(policies=[MEETINGS])
    version = store.policy().version
    rng = random.Random(3)
    drafts = []
    for i in range(subjects):
        s = f"u{i:05d}"
        drafts.append(Draft(kind=Kind.MEMBER_ADDED, subject=s, account=f"a{i % 50}"))
        r = rng.random()
        if r < 0.35:
            kind = Kind.CONSENT_GIVEN if r < 0.30 else Kind.CONSENT_REFUSED
            drafts.append(
                Draft(
                    kind=kind,
                    actor=s,
                    subject=s,
                    purpose="ai.training",
                    categories=("content",),
                    policy_version=version,
                    notice_version=version,
                    language="en",
                    method="benchmark",
                )
            )
    store.append(drafts)
    return store


def run(rounds: int, subjects: int, mark: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp), subjects)
        rng = random.Random(5)
        asked = [
            f"u{rng.randrange(subjects):05d}" if rng.random() > 0.02 else f"x{i}"
            for i in range(subjects)
        ]
        decider = store.decider()
        answered = 0
        for phase in PHASES:
            for label, times in ((f"warm-up {phase}", 1), (phase, rounds)):
                mark(label)
                for _ in range(times):
                    answered += one_round(phase, store, decider, asked)
        mark("end")
        store.close()
    return answered


def one_round(phase: str, store: Any, decider: Any, asked: list[str]) -> int:
    now = time.time_ns() // 1000
    for purpose, category in PAIRS:
        if phase == "decider_check":
            for s in asked:
                decider.check(s, purpose, category, (), now)
        elif phase == "store_check":
            for s in asked:
                store.check(s, purpose, category)
        elif phase == "decider_codes":
            for i in range(0, len(asked), BATCH):
                decider.codes(asked[i : i + BATCH], purpose, category, (), now)
        else:
            for i in range(0, len(asked), BATCH):
                store.check_many(asked[i : i + BATCH], purpose, category)
    return len(asked) * len(PAIRS)


def callgrind(sources: Sequence[Path], rounds: int, subjects: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per = rounds * subjects * len(PAIRS)
    table: dict[str, dict[str, float]] = {}
    for number, src in enumerate(sources):
        prefix = out / f"store-check-callgrind-{number}.out"
        for old in out.glob(f"{prefix.name}*"):
            old.unlink()
        env = dict(os.environ, PYTHONPATH=str(src.resolve()), PYTHONHASHSEED="0")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}",
                   "--dump-before=zlib_crc32", sys.executable, __file__,
                   "--rounds", str(rounds), "--subjects", str(subjects)]  # fmt: skip
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=7200)
        parts = [_instructions(Path(f"{prefix}.{i}")) for i in range(2, 2 + 2 * len(PHASES))]
        table[str(src)] = {phase: parts[2 * i + 1] / per for i, phase in enumerate(PHASES)}
    print("instructions per answer")
    print("phase".ljust(18) + "".join(f"{n[-30:]:>32}" for n in table))
    for phase in PHASES:
        print(phase.ljust(18) + "".join(f"{t[phase]:>32,.0f}" for t in table.values()))
    for name, t in table.items():
        print(
            f"{name}: Store.check ÷ Decider.check {t['store_check'] / t['decider_check']:.2f}×; "
            f"Decider.codes ÷ Store.check_many {t['decider_codes'] / t['store_check_many']:.0%} "
            "(check_many's throughput as a share of codes')"
        )


def _instructions(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"no summary line in {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=2_000)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--src", type=Path, action="append", help="a checkout's src/")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args(argv)
    if args.callgrind:
        callgrind(args.src or [ROOT / "src"], args.rounds, args.subjects, args.out)
        return 0
    print(run(args.rounds, args.subjects, lambda label: zlib.crc32(label.encode())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
