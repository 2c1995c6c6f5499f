"""How fresh ``Store.check`` is without a query per call (issue 13 §1).

Writes through the same store, or any store of the same process, are seen by the next check;
writes by another process within ``max_staleness``; and a check that has nothing new to
learn sends the database nothing at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from consentry import Reason, Store
from consentry.errors import InvalidInput
from consentry.ledger.changes import MAX_STALENESS_ENV
from support import MEETINGS, ROOT

T = "ai.training"
AUDIO = "content.audio"
HOUR = 3600.0


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store's engine sends while the block runs."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    event.listen(store.ledger.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(store.ledger.engine, "before_cursor_execute", record)


def open_store(url: str, **options: float) -> Store:
    store = Store(url, **options)
    store.init(policies=[MEETINGS])
    return store


def test_own_writes_are_seen_by_the_next_check(backend_url: str) -> None:
    store = open_store(backend_url, max_staleness=HOUR)
    try:
        assert store.check("u1", T, AUDIO).reason is Reason.NO_CONSENT
        store.give_consent("u1", T, [AUDIO])
        assert store.check("u1", T, AUDIO).reason is Reason.CONSENT
        store.withdraw_consent("u1", T, [AUDIO])
        assert store.check_many(["u1", "u2"], T, AUDIO) == [Reason.WITHDRAWN, Reason.NO_CONSENT]
    finally:
        store.close()


def test_another_store_in_this_process_is_seen_by_the_next_check(backend_url: str) -> None:
    reader = open_store(backend_url, max_staleness=HOUR)
    writer = Store(backend_url)
    try:
        assert reader.check("u1", T, AUDIO).reason is Reason.NO_CONSENT
        writer.give_consent("u1", T, [AUDIO])
        assert reader.check("u1", T, AUDIO).reason is Reason.CONSENT
        assert reader.check_many(["u1"], T, AUDIO) == [Reason.CONSENT]
    finally:
        writer.close()
        reader.close()


def test_a_check_with_nothing_new_sends_no_query(backend_url: str) -> None:
    store = open_store(backend_url, max_staleness=HOUR)
    try:
        store.give_consent("u1", T, [AUDIO])
        store.check("u1", T, AUDIO)
        with statements(store) as sent:
            for _ in range(200):
                assert store.check("u1", T, AUDIO).allowed
                store.check_many(["u1", "u2"], T, AUDIO)
        assert sent == []
    finally:
        store.close()


def give_in_another_process(url: str, subject: str) -> None:
    code = (
        "import sys; from consentry import Store; "
        "s = Store(sys.argv[1]); s.give_consent(sys.argv[2], 'ai.training', ['content.audio'])"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code, url, subject], check=True, env=env, timeout=120)


def test_another_process_is_seen_within_max_staleness(backend_url: str) -> None:
    late = open_store(backend_url, max_staleness=HOUR)
    every = open_store(backend_url, max_staleness=0)
    soon = open_store(backend_url, max_staleness=0.01)
    try:
        for store in (late, every, soon):
            assert store.check("u1", T, AUDIO).reason is Reason.NO_CONSENT
        give_in_another_process(backend_url, "u1")
        # Looked at the database less than an hour ago: not seen yet (bounded-stale).
        assert late.check("u1", T, AUDIO).reason is Reason.NO_CONSENT
        # Looks every time: seen.
        assert every.check("u1", T, AUDIO).reason is Reason.CONSENT
        # Looks every 10 ms: seen once that has passed (the subprocess alone took longer).
        time.sleep(0.02)
        assert soon.check("u1", T, AUDIO).reason is Reason.CONSENT
        assert soon.check_many(["u1"], T, AUDIO) == [Reason.CONSENT]
        # state() still reads the head every time.
        assert late.state().seq == every.state().seq
    finally:
        for store in (late, every, soon):
            store.close()


def test_max_staleness_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv(MAX_STALENESS_ENV, "250")
    assert Store(url)._changes.max_staleness == 0.25
    assert Store(url, max_staleness=0)._changes.max_staleness == 0
    monkeypatch.setenv(MAX_STALENESS_ENV, "soon")
    with pytest.raises(InvalidInput, match=MAX_STALENESS_ENV):
        Store(url)
    monkeypatch.setenv(MAX_STALENESS_ENV, "-1")
    with pytest.raises(InvalidInput, match="milliseconds"):
        Store(url)


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "x" * 513, "\udcff"])
def test_the_fast_path_still_refuses_bad_subject_ids(store: Store, bad: str) -> None:
    with pytest.raises(InvalidInput, match="subject"):
        store.check(bad, T, AUDIO)


def test_a_non_ascii_subject_id_takes_the_careful_path(store: Store) -> None:
    store.give_consent("zoë", "ai.training", ["content.audio"])
    assert store.check("zoë", "ai.training", "content.audio").reason is Reason.CONSENT
