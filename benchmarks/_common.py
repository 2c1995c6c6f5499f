"""Shared pieces of the benchmarks: output directory, machine description, a settable clock,
the synthetic meetings store, percentiles and the results table.

The synthetic store is built through the ledger (``Store.append`` in large transactions), so
that it is exactly what a real store with that history would hold, and cached under
``benchmarks/out/`` keyed by its size and the generator's version.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
MEETINGS = ROOT / "policies" / "meetings.yaml"

#: Bump when the synthetic data or the stored format changes, so that cached stores are
#: rebuilt (v3: events hash a commitment to the personal fields, not the subject id).
GENERATOR = "meetings-v3"

#: When the decisions are made: under the 2023-08 terms, well after every recorded choice.
NOW = datetime(2024, 6, 1, tzinfo=UTC)

CONTENT = ("content.audio", "content.video", "content.chat", "content.transcript")
CONTENT_MORE = (*CONTENT, "content.recording", "content.screen_share")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import psutil

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


class Clock:
    """A clock the builder sets by hand (events get the times we choose)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def subject_id(i: int) -> str:
    return f"u{i:07d}"


def account_id(i: int) -> str:
    return f"acct{i:05d}"


# -- the synthetic store --------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    url: str
    path: Path
    subjects: int
    accounts: int
    events: int
    consent_records: int
    build_seconds: float
    cached: bool


def store_path(subjects: int) -> Path:
    return OUT / f"meetings-{GENERATOR}-{subjects}.db"


def build_store(subjects: int, *, rebuild: bool = False, log: Any = print) -> Built:
    """The synthetic meetings store with ``subjects`` subjects (built once, then cached).

    Per subject, about three consent records: everyone has one consent event over two or
    three content categories (for ``ai.training``, ``ai.training.generative``, ``improvement``
    or all of ``ai``; given, refused or withdrawn), a third also a second one; a tenth of them
    predate the 2023-08 terms (stale under its re-consent rule). A third of the subjects
    belong to one of ``subjects // 250`` accounts (a few in two); accounts switch training or
    improvement off or on (some of the ``on`` also before 2023-08) and enable the AI features;
    a few subjects object to uses of their service data or content (some lifted again).
    """

    path = store_path(subjects)
    meta_path = path.with_suffix(".json")
    if not rebuild and path.exists() and meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        meta.pop("url", None)
        meta.pop("path", None)
        return Built(f"sqlite:///{path}", path, **meta, cached=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    started = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of long-lived drafts: collections would only walk them
    try:
        return _build(subjects, path, meta_path, url, started, log)
    finally:
        if gc_was_enabled:
            gc.enable()


def _build(subjects: int, path: Path, meta_path: Path, url: str, started: float, log: Any) -> Built:
    from consentry import Store

    clock = Clock(datetime(2023, 7, 1, tzinfo=UTC))
    setup = Store(url, clock=clock)
    setup.init(policies=[MEETINGS])
    setup.close()
    # A second store object: it never loads its in-memory state, so appends do not replay.
    store = Store(url, clock=clock)
    rng = random.Random(20230807)
    n_accounts = max(20, subjects // 250)
    counts = {"events": 2, "records": 0}

    def append(drafts: list[Any], at: datetime) -> None:
        clock.now = at
        for i in range(0, len(drafts), 20_000):
            store.append(drafts[i : i + 20_000])
        counts["events"] += len(drafts)

    # Accounts: settings before the 2023-08 terms (some "on": stale account consent), then
    # the current ones, and features.
    early, current = [], []
    for a in range(n_accounts):
        acct = account_id(a)
        r = rng.random()
        if r < 0.04:
            early.append(_setting(acct, "ai.training", "on"))
        elif r < 0.12:
            current.append(_setting(acct, "ai.training", "on"))
        elif r < 0.20:
            current.append(_setting(acct, "ai.training", "off"))
        elif r < 0.28:
            current.append(_setting(acct, "ai.training", "members_choose"))
        r = rng.random()
        if r < 0.06:
            current.append(_setting(acct, "improvement", "off"))
        elif r < 0.12:
            current.append(_setting(acct, "improvement", "on"))
        r = rng.random()
        if r < 0.5:
            current.append(_feature(acct, "ai.feature.meeting_summary", True))
        elif r < 0.6:
            current.append(_feature(acct, "ai.feature.meeting_summary", False))
        if rng.random() < 0.3:
            current.append(_feature(acct, "ai.feature.chat_compose", True))
    append(early, datetime(2023, 7, 28, tzinfo=UTC))

    # Subjects, in blocks: stale consents (before 2023-08-07) go first, the rest in 2024.
    block = 10_000
    stale_start = datetime(2023, 7, 29, tzinfo=UTC)
    fresh_start = datetime(2024, 1, 8, tzinfo=UTC)
    span = (datetime(2024, 5, 25, tzinfo=UTC) - fresh_start) / max(1, subjects // block + 1)
    plans = [_subject_plan(rng, i, n_accounts) for i in range(subjects)]
    stale_drafts = [d for p in plans if p.stale for d in p.first]
    for i in range(0, len(stale_drafts), block):
        append(stale_drafts[i : i + block], stale_start + timedelta(minutes=i // block))
    append(current, datetime(2024, 1, 5, tzinfo=UTC))
    for b, lo in enumerate(range(0, subjects, block)):
        drafts: list[Any] = []
        for p in plans[lo : lo + block]:
            drafts.extend(p.memberships)
            if not p.stale:
                drafts.extend(p.first)
            drafts.extend(p.second)
            drafts.extend(p.objections)
        append(drafts, fresh_start + b * span)
        if b % 10 == 0:
            log(f"  built {min(lo + block, subjects):,} / {subjects:,} subjects")
    counts["records"] = sum(p.records for p in plans)
    store.close()
    meta: dict[str, Any] = {
        "url": url,
        "path": str(path),
        "subjects": subjects,
        "accounts": n_accounts,
        "events": counts["events"],
        "consent_records": counts["records"],
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    meta.pop("url")
    meta.pop("path")
    return Built(url, path, **meta, cached=False)


@dataclass
class _Plan:
    stale: bool
    first: list[Any]
    second: list[Any]
    memberships: list[Any]
    objections: list[Any]
    records: int


def _subject_plan(rng: random.Random, i: int, n_accounts: int) -> _Plan:
    from consentry.ledger.events import Draft, Kind

    subject = subject_id(i)
    stale = rng.random() < 0.10

    def consent(purpose: str, categories: Sequence[str], version: str) -> Draft:
        r = rng.random()
        kind = (
            Kind.CONSENT_GIVEN
            if r < 0.65
            else Kind.CONSENT_REFUSED
            if r < 0.80
            else Kind.CONSENT_WITHDRAWN
        )
        return Draft(
            kind=kind,
            actor=subject,
            subject=subject,
            purpose=purpose,
            categories=tuple(sorted(set(categories))),
            policy_version=version,
            notice_version=version,
            language="en",
            method="benchmark",
        )

    r = rng.random()
    purpose = (
        "ai.training"
        if r < 0.60
        else "ai.training.generative"
        if r < 0.70
        else "improvement"
        if r < 0.95
        else "ai"
    )
    cats = rng.sample(CONTENT, 3 if rng.random() < 0.6 else 2)
    first = [consent(purpose, cats, "2023-07" if stale else "2023-08")]
    records = len(cats)
    second = []
    if rng.random() < 0.35:
        other = "improvement" if purpose.startswith("ai") else "ai.training"
        more = rng.sample(CONTENT_MORE, 1 if rng.random() < 0.5 else 2)
        if rng.random() < 0.15:
            more = ["content"]  # the whole category tree
        second.append(consent(other, more, "2023-08"))
        records += len(more)
    memberships = []
    r = rng.random()
    if r < 0.33:
        memberships.append(
            Draft(
                kind=Kind.MEMBER_ADDED,
                subject=subject,
                account=account_id(rng.randrange(n_accounts)),
            )
        )
        if r < 0.03:
            memberships.append(
                Draft(
                    kind=Kind.MEMBER_ADDED,
                    subject=subject,
                    account=account_id(rng.randrange(n_accounts)),
                )
            )
    objections = []
    r = rng.random()
    if r < 0.04:
        # Service data (no effect under 2023-08: individuals cannot object there), or content
        # (which the 2023-07 terms used on legitimate interest); some lifted again.
        if r < 0.02:
            purpose = rng.choice(("improvement", "ai.training.feature"))
            objected: tuple[str, ...] = ("service_data",)
        else:
            purpose = rng.choice(("ai.training", "improvement"))
            objected = () if r < 0.025 else tuple(sorted(rng.sample(CONTENT, 2)))
        objections.append(
            Draft(
                kind=Kind.OBJECTION_LIFTED if rng.random() < 0.2 else Kind.OBJECTION_RAISED,
                actor=subject,
                subject=subject,
                purpose=purpose,
                categories=objected,
            )
        )
    return _Plan(stale, first, second, memberships, objections, records)


def _setting(account: str, purpose: str, status: str) -> Any:
    from consentry.ledger.events import Draft, Kind

    return Draft(
        kind=Kind.ACCOUNT_SETTING, actor="admin", account=account, purpose=purpose, status=status
    )


def _feature(account: str, purpose: str, enabled: bool) -> Any:
    from consentry.ledger.events import Draft, Kind

    return Draft(
        kind=Kind.ACCOUNT_FEATURE,
        actor="admin",
        account=account,
        purpose=purpose,
        status="enabled" if enabled else "disabled",
    )


# -- reporting -------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def print_table(title: str, rows: Sequence[Row], file: Any = None) -> None:
    file = file or sys.stdout
    widths = [
        max(len("figure"), *(len(r.name) for r in rows)),
        max(len("value"), *(len(r.value) for r in rows)),
        max(len("target"), *(len(r.target) for r in rows)),
    ]
    print(f"\n{title}", file=file)
    header = f"{'figure':<{widths[0]}}  {'value':>{widths[1]}}  {'target':<{widths[2]}}  result"
    print(header, file=file)
    print("-" * len(header), file=file)
    for r in rows:
        print(
            f"{r.name:<{widths[0]}}  {r.value:>{widths[1]}}  {r.target:<{widths[2]}}  {r.verdict}",
            file=file,
        )


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_CHASE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
  size_t n = mib * 1024 * 1024 / sizeof(size_t), steps = 4000000, j;
  size_t *next = malloc(n * sizeof(size_t)), *perm = malloc(n * sizeof(size_t));
  unsigned long long x = 88172645463325252ULL;
  struct timespec t0, t1;
  for (size_t i = 0; i < n; i++) perm[i] = i;
  for (size_t i = n - 1; i > 0; i--) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    size_t k = x % (i + 1), t = perm[i]; perm[i] = perm[k]; perm[k] = t;
  }
  for (size_t i = 0; i + 1 < n; i++) next[perm[i]] = perm[i + 1];
  next[perm[n - 1]] = perm[0];
  j = perm[0];
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (size_t s = 0; s < steps; s++) j = next[j];
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.1f %zu\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / steps, j & 1);
  return 0;
}
"""


def memory_latency_ns(mib: int = 256) -> float | None:
    """Nanoseconds per dependent random load over ``mib`` MiB (a pointer chase in C), or
    None without a C compiler. A decision over a big snapshot is a chain of such loads."""
    import shutil
    import subprocess
    import tempfile

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "chase.c", Path(tmp) / "chase"
        src.write_text(_CHASE_C)
        try:
            subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
            out = subprocess.run([str(exe), str(mib)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError):
            return None
    return float(out.stdout.split()[0])


def wait_idle(max_seconds: float, threshold: float = 1.0, log: Any = print) -> tuple[float, ...]:
    """Wait (up to ``max_seconds``) for the 1-minute load average to drop below
    ``threshold``: other work on a two-core machine shows up in every figure."""
    deadline = time.monotonic() + max_seconds
    load = os.getloadavg()
    if load[0] >= threshold and max_seconds > 0:
        log(f"waiting up to {max_seconds:.0f} s for load average < {threshold} (now {load[0]:.2f})")
    while load[0] >= threshold and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()
    return load
