"""The CPU the decision hot paths cost: instructions counted with callgrind, per phase.

    .venv/bin/python benchmarks/decide_cpu.py --callgrind            # this checkout
    .venv/bin/python benchmarks/decide_cpu.py --callgrind --src ../main/src --src src

A decision takes a microsecond or two, so on a shared VM its wall time moves with the
neighbours more than with a change to the code; the instructions it executes do not. This
builds one small in-memory state per example policy (meetings and music: every basis, account
switches and features, re-consent, consents that expire, objections) without a ledger, and
asks about the same subjects (2% never seen) under nine (purpose, category) pairs, phase by
phase, each once to warm up and then ``--rounds`` times:

* ``compile``: ``compile_plan`` (the kernels made for each plan included);
* ``check``: ``Decider.check`` for one subject, answers not remembered (the per-plan kernel
  ``plan.decide`` on every call);
* ``check_warm``: ``Decider.check`` with remembered answers (the reason cache);
* ``items``: ``Decider.check`` on items of four subjects, answers not remembered;
* ``codes``: the batch kernel ``plan.codes`` on every plan;
* ``codes_first``: ``Decider.codes`` with a new decider each round (every subject's first ask:
  the kernels fill the reason caches).

``--account NAME`` asks every question in the context of that account (the item's account:
``Decider.check(..., account=…)``, ``Decider.codes(..., account=…)``, ``compile_plan(...,
account)``); ``--account-src PATH`` (with ``--callgrind``, repeatable) adds a run of that
checkout with the account context ``a1`` to the table, beside the runs without one.

With ``--callgrind`` it runs itself under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``,
so two runs of one checkout count the same) once per ``--src``, cut into one count per phase
by ``--dump-before=zlib_crc32`` (the phase markers), and prints instructions per answer.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = 2_000
COMPILES = 20  # compile_plan calls per (purpose, category) in a round
#: The account context every question is asked in (None: none; ``--account``).
ACCOUNT: str | None = None
#: The account context of an ``--account-src`` run (an account of every built state).
BENCH_ACCOUNT = "a1"

#: (policy file, (purpose, category) pairs asked).
ASKED = {
    "meetings": (
        ("ai.training", "content.audio"),  # consent, account consent, stale
        ("ai.training.generative", "content.video"),
        ("improvement", "content.chat"),
        ("improvement", "service_data.telemetry"),  # legitimate interest, account off
        ("ai.feature.meeting_summary", "content.transcript"),  # contract behind a switch
        ("ai.training.third_party", "content.recording"),  # prohibited
        ("service.delivery", "content.recording"),  # contract
    ),
    "music": (
        ("ai.training.generative", "content.music"),  # consent that expires, re-consent
        ("ai.training.feature.search", "content.music"),  # legitimate interest, objections
    ),
}


def build(name: str, subjects: int) -> tuple[Any, int]:
    """A state for ``policies/<name>.yaml`` and the time to decide at."""
    from consentry.policy import load_policies
    from consentry.state import State
    from consentry.times import to_us

    rng = random.Random(name)
    policies = load_policies(ROOT / "policies" / f"{name}.yaml")
    state = State()
    for i, policy in enumerate(policies, start=1):
        state.add_policy(dict(policy.document), i, to_us(policy.effective) - 10**9)
    latest = to_us(policies[-1].effective)
    now = latest + 200 * 86_400 * 10**6
    seq = 10
    accounts = [f"a{i}" for i in range(subjects // 40)]
    consents = (
        ("ai.training", "content"),
        ("ai.training.generative", "content.video"),
        ("improvement", "content"),
        ("ai.training.generative", "content.music"),
        ("ai", "content"),
    )
    for i in range(subjects):
        subject = f"u{i}"
        if rng.random() < 0.4:
            state.set_membership(subject, rng.choice(accounts), True)
        for purpose, category in rng.sample(consents, rng.randint(0, 3)):
            seq += 1
            status = rng.choice(("given", "given", "given", "refused", "withdrawn"))
            # Some before the latest version (stale under re-consent), some expired by now.
            at = latest + rng.randint(-60, 190) * 86_400 * 10**6
            state.set_consent(subject, purpose, category, status, at, seq)
        if rng.random() < 0.1:
            seq += 1
            status = rng.choice(("raised", "lifted"))
            state.set_objection(subject, "ai.training.feature", "content", status, latest, seq)
    for account in accounts:
        for purpose, status in (("ai.training", "on"), ("improvement", "off")):
            if rng.random() < 0.2:
                seq += 1
                at = latest + rng.randint(-60, 190) * 86_400 * 10**6
                state.set_account(state.settings, account, purpose, status, seq, at)
        if rng.random() < 0.5:
            seq += 1
            feature = "ai.feature.meeting_summary"
            state.set_account(state.features, account, feature, "enabled", seq, latest)
    return state, now


def requests(subjects: int, count: int, seed: int = 1) -> list[str]:
    """Subjects to ask about: known ones and a few the state has never seen."""
    rng = random.Random(seed)
    return [f"u{rng.randrange(subjects * 51 // 50)}" for _ in range(count)]


PHASES = ("compile", "check", "check_warm", "items", "codes", "codes_first")


def run(phases: Sequence[str], rounds: int, subjects: int, mark: Any = None) -> int:
    """Run each phase once to warm up, then ``rounds`` times; ``mark(name)`` is called before
    each (callgrind's ``--dump-before`` cuts its counts there). The number of answers."""
    from consentry.decide import Decider

    worlds = {name: build(name, subjects) for name in ASKED}
    asked = requests(subjects, subjects)
    answered = 0
    for phase in phases:
        deciders = {
            name: Decider(state, remember=phase == "check_warm")
            for name, (state, _) in worlds.items()
        }
        for label, times in ((f"warm-up {phase}", 1), (phase, rounds)):
            if mark is not None:
                mark(label)
            for _ in range(times):
                answered += one_round(phase, worlds, deciders, asked)
    if mark is not None:
        mark("end")
    return answered


def one_round(
    phase: str, worlds: dict[str, tuple[Any, int]], deciders: dict[str, Any], asked: list[str]
) -> int:
    from consentry.decide import Decider, compile_plan

    answered = 0
    items = [asked[i : i + 4] for i in range(0, len(asked), 4)]
    # Only with a context: a checkout from before issue 12 takes no account.
    ctx: dict[str, str] = {} if ACCOUNT is None else {"account": ACCOUNT}
    for name, pairs in ASKED.items():
        state, now = worlds[name]
        if phase == "codes_first":
            deciders[name] = Decider(state)  # a new decider: every subject asked first
        decider = deciders[name]
        for purpose, category in pairs:
            if phase == "compile":
                for _ in range(COMPILES):
                    compile_plan(state, purpose, category, now, **ctx)
            elif phase in ("check", "check_warm"):
                for subject in asked:
                    decider.check(subject, purpose, category, (), now, **ctx)
            elif phase == "items":
                for item in items:
                    decider.check(item, purpose, category, (), now, **ctx)
            elif phase == "codes":
                plan = decider.plan(purpose, category, now, **ctx)
                plan.codes(state, asked, now)
            elif phase == "codes_first":
                decider.codes(asked, purpose, category, (), now, **ctx)
            answered += len(asked)
    return answered


def callgrind(
    sources: Sequence[Path],
    rounds: int,
    subjects: int,
    out: Path,
    account_sources: Sequence[Path] = (),
) -> None:
    """Count each phase's instructions per answer under each ``src`` (and each of
    ``account_sources`` with the account context :data:`BENCH_ACCOUNT`) and print a table."""
    out.mkdir(parents=True, exist_ok=True)
    pairs = sum(len(asked) for asked in ASKED.values())
    # Per answer; compile: per compile_plan call.
    per = {
        phase: pairs * rounds * (COMPILES if phase == "compile" else subjects) for phase in PHASES
    }
    table: dict[str, dict[str, float]] = {}
    runs = [(src, None) for src in sources] + [(src, BENCH_ACCOUNT) for src in account_sources]
    for number, (src, account) in enumerate(runs):
        prefix = out / f"callgrind-{number}.out"
        for old in out.glob(f"{prefix.name}*"):
            old.unlink()
        env = dict(os.environ, PYTHONPATH=str(src.resolve()), PYTHONHASHSEED="0")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}",
                   "--dump-before=zlib_crc32", sys.executable, __file__, "--phase", "all",
                   "--rounds", str(rounds), "--subjects", str(subjects)]  # fmt: skip
        if account is not None:
            command += ["--account", account]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=3600)
        # Part 1 is everything before the first marker; then warm-up and phase alternate.
        parts = [_instructions(Path(f"{prefix}.{i}")) for i in range(2, 2 + 2 * len(PHASES))]
        name = str(src) if account is None else f"{src} (account {account})"
        table[name] = {phase: parts[2 * i + 1] / per[phase] for i, phase in enumerate(PHASES)}
    names = list(table)
    print("phase".ljust(12) + "".join(f"{n[-30:]:>32}" for n in names))
    for phase in PHASES:
        row = [table[n][phase] for n in names]
        change = f"  {row[-1] / row[0] - 1:+.1%}" if len(row) > 1 else ""
        print(phase.ljust(12) + "".join(f"{v:>32,.0f}" for v in row) + change)


def _instructions(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"no summary line in {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=(*PHASES, "all"), default="all")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=SUBJECTS)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument(
        "--src", type=Path, action="append", help="a checkout's src/ (repeat to compare)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--account", help="ask every question in this account's context")
    parser.add_argument(
        "--account-src", type=Path, action="append", default=[],
        help=f"with --callgrind: also run this src/ in the account context {BENCH_ACCOUNT}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global ACCOUNT
    ACCOUNT = args.account
    if args.callgrind:
        callgrind(
            args.src or [ROOT / "src"], args.rounds, args.subjects, args.out, args.account_src
        )
        return 0
    phases = PHASES if args.phase == "all" else (args.phase,)
    # Markers only for a run of every phase: zlib.crc32 runs nowhere else in a decision, so
    # ``valgrind --tool=callgrind --dump-before=zlib_crc32`` writes one file per phase.
    mark = (lambda label: zlib.crc32(label.encode())) if args.phase == "all" else None
    print(run(phases, args.rounds, args.subjects, mark))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
