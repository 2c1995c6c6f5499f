"""Time and order agree (issue 9, section 4).

An event's time is read while its append holds the chain head, and a gate run pins its
``as_of`` and ledger position together with a time fence in the head: so ``seq`` order and time
order agree across processes, and a dataset re-gated ``as_of`` its recorded time reproduces its
digests exactly, whatever other processes wrote during the first run.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from consentry import Store
from consentry.ledger.engine import make_engine
from consentry.ledger.events import Draft, Kind
from consentry.times import to_us
from support import TEST_POLICY, FakeClock, sqlite_store_url

ROOT = Path(__file__).resolve().parents[1]
MEETINGS = ROOT / "policies" / "meetings.yaml"
SUBJECTS = [f"s{i}" for i in range(40)]
DEADLINE_S = 240.0  # for the whole multi-process run; every wait below is bounded by it


def _events(store: Store) -> list[Any]:
    return list(store.ledger.events())


def _assert_time_follows_seq(store: Store) -> None:
    events = _events(store)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for a, b in itertools.pairwise(events):
        assert a.at_us <= b.at_us, f"#{b.seq} ({b.at_text}) is earlier than #{a.seq}"


def _assert_prefix(store: Store, seq: int, as_of_us: int) -> None:
    """The events up to ``seq`` are exactly the events at or before ``as_of_us``."""
    for e in _events(store):
        if e.seq <= seq:
            assert e.at_us <= as_of_us, f"#{e.seq} is after the as_of of a run at #{seq}"
        else:
            assert e.at_us > as_of_us, f"#{e.seq} falls at or before the as_of of a run at #{seq}"


# -- the fence and the clock, in one process (two stores stand for two processes) ---------------


def _head_is_held(url: str) -> bool:
    """True when another connection cannot take the chain head now."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            con.close()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE NOWAIT"))
            return False
    except OperationalError:
        return True
    finally:
        engine.dispose()


def test_an_append_reads_its_clock_while_it_holds_the_head(backend_url: str) -> None:
    """The clock is called inside the append's transaction, with the head locked: no other
    append can commit between the clock's reading and this event."""
    store = Store(backend_url, clock=FakeClock())
    store.init(policies=[TEST_POLICY])
    try:
        held: list[bool] = []

        def clock() -> datetime:
            held.append(_head_is_held(backend_url))
            return datetime(2024, 3, 1, tzinfo=UTC)

        draft = Draft(
            kind=Kind.CONSENT_GIVEN,
            subject="a",
            purpose="ai.training",
            categories=("content.audio",),
            status="given",
        )
        store.ledger.append([draft], clock)
        assert held == [True]
        assert not _head_is_held(backend_url)  # (and the probe itself can tell)
    finally:
        store.close()


def test_a_fence_puts_every_later_event_after_it(backend_url: str) -> None:
    """A gate's fence at T: a writer whose clock is an hour behind (another process, another
    clock), even one on PostgreSQL's optimistic path (it wrote the head just before), gives
    its next event a time after T, and the events up to the fenced seq are those at or before T."""
    ahead, behind = FakeClock(), FakeClock()
    gate = Store(backend_url, clock=ahead)
    gate.init(policies=[TEST_POLICY])
    writer = Store(backend_url, clock=behind)
    try:
        behind.set(datetime(2024, 3, 1, tzinfo=UTC))
        writer.give_consent("a", "ai.training", ["content.audio"])
        writer.give_consent("b", "ai.training", ["content.audio"])  # the head is this writer's
        ahead.set(datetime(2024, 3, 1, 1, tzinfo=UTC))
        seq, head_hash, as_of_us = gate.ledger.fence(gate.clock)
        assert as_of_us == to_us(ahead())
        assert gate.ledger.head()[:2] == (seq, head_hash)
        assert gate.ledger.head()[2] == as_of_us + 1
        event = writer.give_consent("c", "ai.training", ["content.audio"])  # within the second
        assert event.seq == seq + 1 and event.at_us == as_of_us + 1
        _assert_prefix(gate, seq, as_of_us)
        _assert_time_follows_seq(gate)
        # A fence at a past time moves nothing.
        head = gate.ledger.head()
        gate.ledger.fence(gate.clock, datetime(2024, 3, 1, tzinfo=UTC))
        assert gate.ledger.head() == head
    finally:
        writer.close()
        gate.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["write0", "write1", "write2", "fence"]),
            st.integers(min_value=-3_600_000_000, max_value=3_600_000_000),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_seq_order_and_time_order_agree_whatever_the_clocks_say(
    tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path, steps: list[tuple[str, int]]
) -> None:
    """Three writers with clocks that jump around (each a store of its own, as separate
    processes are) and fences in between: times never decrease along the chain, and each
    fence's (seq, as_of) splits the ledger exactly at its time."""
    url = sqlite_store_url(migrated_sqlite, tmp_path_factory.mktemp("order") / "store.db")
    base = datetime(2024, 3, 1, tzinfo=UTC)
    clocks = [FakeClock(base) for _ in range(4)]
    stores = [Store(url, clock=c) for c in clocks]
    stores[0].init(policies=[TEST_POLICY])
    fences: list[tuple[int, int]] = []
    try:
        for i, (what, jitter_us) in enumerate(steps):
            n = 3 if what == "fence" else int(what[-1])
            clocks[n].set(base + timedelta(microseconds=jitter_us))
            if what == "fence":
                seq, _, as_of_us = stores[3].ledger.fence(stores[3].clock)
                fences.append((seq, as_of_us))
            else:
                stores[n].give_consent(f"s{i}", "ai.training", ["content.audio"])
        _assert_time_follows_seq(stores[0])
        for seq, as_of_us in fences:
            _assert_prefix(stores[0], seq, as_of_us)
    finally:
        for s in stores:
            s.close()


# -- the whole thing, across processes -----------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import random, sys, time
    from pathlib import Path
    from consentry import Store
    url, seed, stop = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    rng = random.Random(seed)
    store = Store(url)
    n = 0
    deadline = time.monotonic() + 200
    while not stop.exists() and time.monotonic() < deadline:
        subject = f"s{rng.randrange(40)}"
        if rng.random() < 0.5:
            store.give_consent(subject, "ai.training", ["content"])
        else:
            store.withdraw_consent(subject, "ai.training", ["content"])
        n += 1
    store.close()
    print(n)
    """
)

_GATE = textwrap.dedent(
    """
    import json, sys
    from consentry import Store
    url, manifest, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = Store(url)
    results = []
    for i in range(runs):
        r = store.gate(manifest, purpose="ai.training", out=f"{out}-{i}", digest="sorted")
        d = r.lineage.data
        results.append({"as_of": d["as_of"], "seq": d["ledger"]["seq"],
                        "digests": d["digests"], "allowed": r.allowed})
    store.close()
    print(json.dumps(results))
    """
)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes, killed (by their own id) if the test leaves any running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def _spawn(children: list[subprocess.Popen[str]], script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    p = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    children.append(p)
    return p


def _finish(p: subprocess.Popen[str], deadline: float) -> str:
    try:
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        pytest.fail(f"child {p.args[3:]} did not finish in time")
    assert p.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_a_dataset_regated_as_of_its_recorded_time_reproduces_its_digests(
    backend_url: str, tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """Writer processes append while gate processes run; then every dataset, gated again with
    ``as_of`` its recorded time, has the same ledger position and digests. (Before the fence,
    6 of 12 such runs differed.)"""
    deadline = time.monotonic() + DEADLINE_S
    store = Store(backend_url)
    store.init(policies=[MEETINGS])
    try:
        for s in SUBJECTS:  # every subject is known: each item's answer depends on its subject
            store.give_consent(s, "ai.training", ["content"])
        manifest = tmp_path / "m.csv"
        lines = ["item_id,subject_ids,category"]
        lines += [f'i{s}-{k},"[""{s}""]",content.audio' for s in SUBJECTS for k in range(3)]
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stop = tmp_path / "stop"
        writers = [
            _spawn(children, _WRITER, backend_url, str(seed), str(stop)) for seed in range(3)
        ]
        time.sleep(1.0)  # the writers are writing
        gates = [
            _spawn(children, _GATE, backend_url, str(manifest), str(tmp_path / f"g{g}"), "4")
            for g in range(3)
        ]
        runs: list[dict[str, Any]] = []
        for g in gates:
            runs.extend(json.loads(_finish(g, deadline)))
        stop.touch()
        written = sum(int(_finish(w, deadline)) for w in writers)
        assert written > 50, "the writers hardly wrote: the test proves little"
        assert len({r["seq"] for r in runs}) > 1, "every run saw the same ledger"

        _assert_time_follows_seq(store)
        for i, run in enumerate(runs):
            again = store.gate(
                manifest, purpose="ai.training", out=tmp_path / f"again-{i}", as_of=run["as_of"],
                digest="sorted",
            )  # fmt: skip
            d = again.lineage.data
            assert (d["as_of"], d["ledger"]["seq"]) == (run["as_of"], run["seq"])
            assert d["digests"] == run["digests"], f"run {i} at #{run['seq']} differs"
            assert again.allowed == run["allowed"]
            _assert_prefix(store, run["seq"], to_us(datetime.fromisoformat(run["as_of"])))
    finally:
        stop_file = tmp_path / "stop"
        stop_file.touch()
        store.close()
