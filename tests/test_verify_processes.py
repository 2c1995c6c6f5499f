"""``ledger verify`` split over processes finds what one process finds, with the same words:
tampered events in any chunk (at a boundary or inside), across chunks the MAC rule, and the
same current-state divergences. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from consentry import Store
from consentry.errors import ConsentryError
from consentry.ledger import verifying
from support import TEST_POLICY, FakeClock, allow_tampering

T, AUDIO, VIDEO = "ai.training", "content.audio", "content.video"
CHUNK = 5  # events per chunk: #1-5 in this process, #6-10, #11-15, ... in forked ones


@pytest.fixture
def ledger_store(backend_url: str) -> Iterator[Store]:
    """A store of 27 events: keys, policy, then consents, withdrawals, memberships."""
    store = Store(backend_url, clock=FakeClock())
    store.init(policies=[TEST_POLICY])
    for i in range(8):
        store.give_consent(f"u{i}", T, [AUDIO, VIDEO])
        store.add_member(f"u{i}", "acme")
    for i in range(0, 8, 3):
        store.withdraw_consent(f"u{i}", T, [VIDEO])
    store.set_account("acme", T, "off")
    store.remove_member("u1", "acme")
    yield store
    store.close()


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the forked processes whose results the parent received."""
    seen: list[str] = []
    receive = verifying._receive

    def spy(process: Any, pipe: Any, deadline: float) -> verifying.Chunk:
        seen.append(process.name)
        return receive(process, pipe, deadline)

    monkeypatch.setattr(verifying, "_receive", spy)
    return seen


def _both(store: Store, forks: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    one = store.verify(workers=1).to_dict()
    assert not forks
    many = store.verify(workers=2, chunk_events=CHUNK).to_dict()
    assert len(forks) >= 2, "the ledger was not split over processes"
    return one, many


def _tamper(store: Store, *statements: str) -> None:
    with store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        for statement in statements:
            conn.execute(text(statement))


def test_an_honest_ledger_verifies_in_chunks(ledger_store: Store, forks: list[str]) -> None:
    head = ledger_store.ledger.head()[0]
    assert head > 4 * CHUNK
    one, many = _both(ledger_store, forks)
    assert one["ok"] and one == many
    assert many["checked"] == head and not many["divergences"]


@pytest.mark.parametrize(
    ("statements", "seq", "words"),
    [
        # inside the second chunk
        (["UPDATE events SET subject = 'mallory' WHERE seq = 8"], 8, "no longer matches its"),
        (["UPDATE events SET status = 'given' WHERE seq = 9"], 9, "content no longer matches"),
        (["UPDATE events SET at_us = at_us - 1000000 WHERE seq = 7"], 7, "was changed"),
        (["UPDATE events SET mac = NULL WHERE seq = 8"], 8, "no valid MAC"),
        (["DELETE FROM events WHERE seq = 8"], 8, "missing"),
        # the first event of a chunk: only the boundary check sees these
        (["DELETE FROM events WHERE seq = 6"], 6, "missing"),
        (["DELETE FROM events WHERE seq IN (6, 7, 8, 9, 10, 11)"], 6, "missing"),
        (["UPDATE events SET prev_hash = hash WHERE seq = 11"], 11, "does not chain"),
        (
            [
                "UPDATE events SET seq = -seq WHERE seq IN (10, 11)",
                "UPDATE events SET seq = CASE seq WHEN -10 THEN 11 ELSE 10 END WHERE seq < 0",
            ],
            10,
            "does not chain",
        ),
        # two tampered events in different chunks: the first is named
        (
            [
                "UPDATE events SET status = 'given' WHERE seq = 17",
                "UPDATE events SET status = 'given' WHERE seq = 12",
            ],
            12,
            "content no longer matches",
        ),
        # the tail: truncated with the head moved back, or a forged event appended
        (["DELETE FROM events WHERE seq > 20", "UPDATE ledger_head SET seq = 20"], 20, "head"),
        (
            [
                "INSERT INTO events (seq, id, at, at_us, kind, subject, purpose, categories, "
                "payload, prev_hash, hash) SELECT seq + 1, 'forged', at, at_us, kind, subject, "
                "purpose, categories, payload, hash, hash FROM events "
                "WHERE seq = (SELECT max(seq) FROM events)"
            ],
            None,
            "(forged) was changed",
        ),
    ],
)
def test_a_tampered_event_is_named_as_one_process_names_it(
    ledger_store: Store,
    forks: list[str],
    statements: list[str],
    seq: int | None,
    words: str,
) -> None:
    _tamper(ledger_store, *statements)
    one, many = _both(ledger_store, forks)
    assert not one["ok"]
    assert words in one["problem"], one["problem"]
    if seq is not None:
        assert one["seq"] == seq, one["problem"]
    assert many == one


@pytest.mark.parametrize(
    "statements",
    [
        ["UPDATE consents SET status = 'given' WHERE subject = 'u0'"],
        ["DELETE FROM memberships WHERE subject = 'u7'"],
        ["INSERT INTO memberships (subject, account, at_us, seq) VALUES ('u1', 'acme', 1, 1)"],
        [
            "UPDATE account_settings SET status = 'on'",
            "DELETE FROM consents WHERE subject = 'u3' AND category = 'content.video'",
            "INSERT INTO objections (subject, purpose, category, status, at_us, seq) "
            "VALUES ('u2', 'ai.training', '', 'raised', 5, 5)",
        ],
    ],
)
def test_state_divergences_are_the_same_in_chunks(
    ledger_store: Store, forks: list[str], statements: list[str]
) -> None:
    _tamper(ledger_store, *statements)
    one, many = _both(ledger_store, forks)
    assert one["divergences"] and not one["ok"]
    assert many == one


def test_a_change_in_an_early_chunk_overridden_later_is_no_divergence(
    ledger_store: Store, forks: list[str]
) -> None:
    # u1 joined acme in the first chunk and left it in the last one: no row, and none
    # expected; u0's video consent was given early and withdrawn in a later chunk.
    one, many = _both(ledger_store, forks)
    assert one["ok"] and many == one
    with ledger_store.ledger.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status FROM consents WHERE subject = 'u0' AND category = :c"),
            {"c": VIDEO},
        ).all()
    assert [r[0] for r in rows] == ["withdrawn"]


@pytest.mark.parametrize(
    "statements",
    [
        [],  # an honest extension: the same consistency proof
        ["DELETE FROM events WHERE seq > 20", "UPDATE ledger_head SET seq = 20"],
        ["UPDATE events SET status = 'given' WHERE seq = 9"],
    ],
)
def test_since_a_checkpoint_in_chunks_is_what_one_process_finds(
    ledger_store: Store, forks: list[str], statements: list[str]
) -> None:
    checkpoint = ledger_store.checkpoint()
    for i in range(3):
        ledger_store.give_consent(f"v{i}", T, [AUDIO])
    _tamper(ledger_store, *statements)
    one = ledger_store.verify(since=checkpoint, workers=1).to_dict()
    many = ledger_store.verify(since=checkpoint, workers=2, chunk_events=CHUNK).to_dict()
    assert len(forks) >= 2
    assert one["since"] is not None and many == one
    assert one["ok"] is (not statements)


def test_a_forked_process_that_fails_is_an_error_not_a_hang(
    ledger_store: Store, forks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = verifying._scan_range

    def broken(*args: Any, **kwargs: Any) -> verifying.Chunk:
        if args[1] > 0:  # a forked process (the parent's chunk starts at 0)
            raise RuntimeError("the disk is on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(verifying, "_scan_range", broken)
    with pytest.raises(ConsentryError, match="failed: RuntimeError: the disk is on fire"):
        ledger_store.verify(workers=2, chunk_events=CHUNK)


def test_a_forked_process_that_does_not_answer_in_time_is_killed(
    ledger_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    real = verifying._scan_range

    def slow(*args: Any, **kwargs: Any) -> verifying.Chunk:
        if args[1] > 0:
            time.sleep(60)  # a forked process (the parent's chunk starts at 0)
        return real(*args, **kwargs)

    monkeypatch.setattr(verifying, "_scan_range", slow)
    started = time.monotonic()
    with pytest.raises(verifying.VerifyFailed, match="did not answer in time"):
        verifying.verify(ledger_store.ledger.engine, None, workers=2, chunk_events=CHUNK, timeout=2)
    assert time.monotonic() - started < 30


def test_the_fast_mac_is_the_hmac() -> None:
    from consentry.ledger.events import event_mac

    for key in (b"k", b"x" * 32, b"y" * 64, b"z" * 100):
        mac = verifying.mac_function(key)
        for h in ("", "ab" * 32, "0" * 64):
            assert mac(h) == event_mac(key, h)
