"""The chain's checks with SQLite building the texts (consentry.ledger.chain_sql) are the
Python checks: the same JSON byte for byte, the same times, MACs and commitments, and
``ledger verify`` gives the same verdict, place and words for any tampered event column."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from consentry import Store
from consentry.ledger import chain_sql, verifying
from consentry.ledger.events import PERSONAL_JSON, commit_personal, event_mac, json_string
from consentry.ledger.store import _RAW_COLUMNS, _at_us, body_text
from consentry.times import format_time
from support import TEST_POLICY, FakeClock, allow_tampering

T, AUDIO, VIDEO = "ai.training", "content.audio", "content.video"

#: Strings with every character class JSON treats apart: quotes, backslashes, control
#: characters, DEL, non-ASCII, non-BMP (a NUL cannot be stored: the write path refuses it).
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "\\", "\x01", "\x1f", "\n", "\t", "\x7f", "é", "\u2028", "😀"]),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=12,
)
MAYBE = st.one_of(st.none(), TEXT)


def test_sqlite_writes_every_code_point_as_python_does() -> None:
    conn = sqlite3.connect(":memory:")
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    differ = []
    for i in range(0, len(points), 500):
        part = points[i : i + 500]
        row = conn.execute(
            "SELECT " + ", ".join("json_quote(?), json_object('k', ?)" for _ in part),
            [x for p in part for x in (p, p)],
        ).fetchone()
        for j, p in enumerate(part):
            if row[2 * j] != encode_basestring(p) or row[2 * j + 1] != (
                '{"k":' + encode_basestring(p) + "}"
            ):
                differ.append(hex(ord(p)))
    assert not differ
    assert chain_sql.usable(conn)


def _sql_texts(conn: sqlite3.Connection, row: dict[str, Any]) -> tuple[str, str]:
    conn.execute("DELETE FROM events")
    conn.execute(
        f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        list(row.values()),
    )
    body, personal = conn.execute(
        f"SELECT {chain_sql.BODY_SQL}, {chain_sql.PERSONAL_SQL} FROM events"
    ).fetchone()
    return body, personal


@pytest.fixture(scope="module")
def scratch() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE events (seq INTEGER PRIMARY KEY, {_RAW_COLUMNS.split(', ', 1)[1]})")
    yield conn
    conn.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seq=st.integers(1, 2**62),
    texts=st.fixed_dictionaries(
        {
            "id": TEXT,
            "at": TEXT,
            "kind": TEXT,
            "actor": MAYBE,
            "subject": MAYBE,
            "account": MAYBE,
            "purpose": MAYBE,
            "status": MAYBE,
            "policy_version": MAYBE,
            "notice_version": MAYBE,
            "language": MAYBE,
            "method": MAYBE,
            "idempotency_key": MAYBE,
            "commitment": MAYBE,
        }
    ),
    categories=st.sampled_from([None, "", "[]", '["content.audio","x\\"y"]']),
    payload=st.sampled_from(["{}", '{"a":[1,"\\u00e9"]}']),
)
def test_the_sql_texts_are_the_python_texts(
    scratch: sqlite3.Connection,
    seq: int,
    texts: dict[str, Any],
    categories: str | None,
    payload: str,
) -> None:
    row = {"seq": seq, **texts, "categories": categories, "payload": payload}
    body, personal = _sql_texts(scratch, row)
    raw = scratch.execute(f"SELECT {_RAW_COLUMNS} FROM events").fetchone()
    assert body == body_text(raw)
    q = json_string
    assert personal == PERSONAL_JSON % (
        q(texts["actor"]),
        q(texts["idempotency_key"]),
        q(texts["subject"]),
    )


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_times_are_read_as_the_ledger_reads_them(moment: datetime) -> None:
    texts = [format_time(moment), moment.isoformat()]
    assert chain_sql.times_of(texts) == [_at_us(t) for t in texts]


@pytest.mark.parametrize("bad", ["yesterday", "2023-02-30T00:00:00.000000Z", ""])
def test_a_time_that_does_not_parse_is_left_to_python(bad: str) -> None:
    assert _at_us(bad) == -1
    with pytest.raises(ValueError):
        chain_sql.times_of([bad])


@given(key=st.binary(min_size=1, max_size=100), hashes=st.lists(st.text("0123456789abcdef")))
def test_the_macs_are_hmacs(key: bytes, hashes: list[str]) -> None:
    assert chain_sql.macs_of(key, hashes) == [event_mac(key, h) for h in hashes]


@given(rows=st.lists(st.tuples(st.binary(min_size=16, max_size=16), MAYBE, MAYBE, MAYBE)))
def test_the_commitments_are_the_write_paths(
    rows: list[tuple[bytes, str | None, str | None, str | None]],
) -> None:
    q = json_string
    nonces = [salt.hex() for salt, *_ in rows]
    personal = [(PERSONAL_JSON % (q(a), q(k), q(s))).encode() for _salt, s, a, k in rows]
    assert chain_sql.commitments_of(nonces, personal) == [
        commit_personal(salt, s, a, k) for salt, s, a, k in rows
    ]


# -- ledger verify: the same verdict either way -------------------------------------------------


COLUMNS = (
    "id", "at", "at_us", "kind", "actor", "subject", "account", "purpose", "categories",
    "status", "policy_version", "notice_version", "language", "method", "payload",
    "idempotency_key", "prev_hash", "hash", "nonce", "commitment", "mac",
)  # fmt: skip
VALUES = st.one_of(
    st.none(),
    TEXT,
    st.integers(-5, 2**40),
    st.sampled_from(["[]", "{}", "[1]", "00", "zz", "2023-07-01T00:00:00.000000Z", "0" * 64]),
)


@pytest.fixture
def base_store(tmp_path: Path) -> Path:
    """A store of about 20 events (keys, policies, consents, members, an invitation), on file."""
    store = Store(f"sqlite:///{tmp_path}/base.db", clock=FakeClock())
    store.init(policies=[TEST_POLICY])
    for i in range(6):
        store.give_consent(f"u{i}", T, [AUDIO, VIDEO], idempotency_key=f"k{i}")
        store.add_member(f"u{i}", "acme")
    store.withdraw_consent("u0", T, [VIDEO])
    store.invite_member('q"uo\\te\x01', "acme")
    store.close()
    return tmp_path / "base.db"


def _verdicts(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """(Store.verify, the chain with leaves) with the SQL checks, then with Python's."""
    found: list[Any] = []
    for use_sql in (True, False):
        monkeypatch.setattr(verifying, "USE_SQL", use_sql)
        with Store(url) as store:
            try:
                result: Any = store.verify(workers=1).to_dict()
            except Exception as exc:
                result = (type(exc), str(exc))
            try:
                chain: Any = verifying.verify(
                    store.ledger.engine, store._mac_key_for_verify(), state=False, leaves=True
                )[0]
                chain = (chain, chain.leaves)
            except Exception as exc:
                chain = (type(exc), str(exc))
        found.append((result, chain))
    return tuple(found)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_tampered_column_gets_the_same_verdict(
    base_store: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("tampered") / "t.db"
    path.write_bytes(base_store.read_bytes())
    url = f"sqlite:///{path}"
    changes = data.draw(
        st.lists(st.tuples(st.integers(1, 26), st.sampled_from(COLUMNS), VALUES), max_size=3)
    )
    with Store(url) as store, store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        for seq, column, value in changes:
            try:
                with conn.begin_nested():
                    conn.execute(
                        text(f"UPDATE events SET {column} = :v WHERE seq = :s"),
                        {"v": value, "s": seq},
                    )
            except Exception:
                pass
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(chain_sql, "BATCH", data.draw(st.sampled_from([3, 7, 10_000])))
        sql, python = _verdicts(url, monkeypatch)
    assert sql == python
    if not changes:
        assert sql[0]["ok"]


def test_an_honest_store_verifies_with_the_sql_checks(
    base_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = chain_sql.check_batch

    def spy(*args: Any, **kwargs: Any) -> chain_sql.Batch:
        batch = real(*args, **kwargs)
        calls.append(int(batch.ok))
        return batch

    monkeypatch.setattr(chain_sql, "check_batch", spy)
    monkeypatch.setattr(chain_sql, "BATCH", 4)
    sql, python = _verdicts(f"sqlite:///{base_store}", monkeypatch)
    assert sql == python and sql[0]["ok"]
    assert len(calls) >= 8 and all(calls), "a batch of an honest store went to Python"


def _rehash_last(path: Path, column: str, raw: bytes) -> None:
    """Write ``raw`` (not UTF-8) into ``column`` of the last event as text, then give the event
    the hash, commitment and MAC of the bytes as SQLite now holds them, and move the head: an
    attacker with the file and the log key, who hashes what SQLite hands back."""
    with Store(f"sqlite:///{path}") as store:
        key = store._mac_key_for_verify()
        with store.ledger.engine.begin() as conn:
            allow_tampering(conn)
    conn = sqlite3.connect(path)
    head = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    conn.execute(f"UPDATE events SET {column} = CAST(? AS TEXT) WHERE seq = ?", (raw, head))
    body, personal, prev, nonce = conn.execute(
        f"SELECT CAST({chain_sql.BODY_SQL} AS BLOB), CAST({chain_sql.PERSONAL_SQL} AS BLOB), "
        "prev_hash, nonce FROM events WHERE seq = ?",
        (head,),
    ).fetchone()
    digest = hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()
    commitment = hashlib.sha256(
        b"consentry-personal-v1\n" + bytes.fromhex(nonce) + personal
    ).hexdigest()
    # (the commitment is in the body: hash the body again with it)
    conn.execute("UPDATE events SET commitment = ? WHERE seq = ?", (commitment, head))
    body = conn.execute(
        f"SELECT CAST({chain_sql.BODY_SQL} AS BLOB) FROM events WHERE seq = ?", (head,)
    ).fetchone()[0]
    digest = hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()
    mac = event_mac(key, digest) if key else None
    conn.execute("UPDATE events SET hash = ?, mac = ? WHERE seq = ?", (digest, mac, head))
    conn.execute("UPDATE ledger_head SET hash = ?", (digest,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("column", "words"), [("method", "content"), ("subject", "subject")])
def test_text_that_is_not_utf8_is_detected_either_way(
    base_store: Path, monkeypatch: pytest.MonkeyPatch, column: str, words: str
) -> None:
    # SQLite keeps any bytes in a TEXT column; hashed as raw bytes they matched on the SQL
    # path while the Python path could not even read the row. Both now name the event.
    _rehash_last(base_store, column, b"w\xff\xfe")
    sql, python = _verdicts(f"sqlite:///{base_store}", monkeypatch)
    assert sql == python
    result = sql[0]
    assert not result["ok"] and result["seq"] == result["head_seq"], result
    assert "was changed" in result["problem"] and words in result["problem"]


def test_the_aggregate_check_passes_an_honest_batch_whole(base_store: Path) -> None:
    # one batch of the whole store, checked by the joined texts alone (no Python fallback)
    with Store(f"sqlite:///{base_store}") as store:
        key = store._mac_key_for_verify()
    conn = sqlite3.connect(base_store)
    head = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    batch = chain_sql.check_batch(
        conn.cursor(), 0, head, expected=(1, "0" * 64), mac_key=key, leaves=True
    )
    assert batch.ok and batch.rows == head == len(batch.ids) == len(batch.bodies)
    assert batch.keys_seq == 1
    rows = conn.execute(f"SELECT {_RAW_COLUMNS} FROM events ORDER BY seq").fetchall()
    assert batch.bodies == [body_text(row).encode() for row in rows]
    assert batch.last_hash == rows[-1][18]
    # a different expected start, or a wrong key, is not passed
    assert not chain_sql.check_batch(
        conn.cursor(), 0, head, expected=(1, "1" * 64), mac_key=key, leaves=False
    ).ok
    assert not chain_sql.check_batch(
        conn.cursor(), 0, head, expected=None, mac_key=b"other", leaves=False
    ).ok


def test_erased_identifiers_keep_the_sql_checks(
    base_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An event whose identifiers and nonce were erased commits to nothing anyone can check:
    # the chain still verifies, on the SQL path (no batch handed to Python), as in Python.
    with Store(f"sqlite:///{base_store}") as store, store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        conn.execute(
            text(
                "UPDATE events SET subject = NULL, actor = NULL, idempotency_key = NULL, "
                "nonce = NULL WHERE subject = 'u1'"
            )
        )
    calls: list[int] = []
    real = chain_sql.check_batch

    def spy(*args: Any, **kwargs: Any) -> chain_sql.Batch:
        batch = real(*args, **kwargs)
        calls.append(int(batch.ok))
        return batch

    monkeypatch.setattr(chain_sql, "check_batch", spy)
    monkeypatch.setattr(chain_sql, "BATCH", 4)
    sql, python = _verdicts(f"sqlite:///{base_store}", monkeypatch)
    assert sql[1] == python[1] and sql[1][0].ok
    assert calls and all(calls), "a batch with erased identifiers went to Python"
