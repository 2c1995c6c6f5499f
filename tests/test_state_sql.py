"""The state audit in SQL (consentry.ledger.state_sql) against its reference, the Python
replay through ``events.state_changes``: over random histories of every kind of event that
changes state, the SQL's implied state (each key's row or removal, and the event behind it)
is the replay's, and any tampering of the state tables or the events is reported the same."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from consentry import Store
from consentry.ledger import audit, schema, state_sql
from consentry.ledger.events import STATE_KEYS, Draft, Kind
from support import TEST_POLICY, FakeClock, allow_tampering

#: Ids as people and tampering may write them: quotes, backslashes, control characters,
#: non-ASCII, empty; None (a NULL column: an erased subject, a kind without account).
IDS = st.sampled_from(["a", "b", 'q"t', "b\\s", "\x01c", "é", "😀", ""])
MAYBE_ID = st.one_of(st.none(), IDS)
CATEGORIES = st.lists(st.sampled_from(["content.audio", "content.video", "x\x1f", ""]), max_size=3)
STATUS = st.sampled_from(["off", "members_choose", "on", "enabled", ""])

SETS_ROWS = [
    Kind.CONSENT_GIVEN, Kind.CONSENT_REFUSED, Kind.CONSENT_WITHDRAWN, Kind.OBJECTION_RAISED,
    Kind.OBJECTION_LIFTED, Kind.MEMBER_ADDED, Kind.MEMBER_REMOVED, Kind.MEMBER_INVITED,
    Kind.MEMBER_ACCEPTED, Kind.MEMBER_DECLINED, Kind.ACCOUNT_SETTING, Kind.ACCOUNT_FEATURE,
]  # fmt: skip

#: A consent's payload: none, or an import's (``captured_at``, ``superseded``) as the append
#: path accepts it (state_changes refuses a captured_at that is not a time).
CAPTURED = st.sampled_from(
    ["2024-01-01T00:00:00Z", "2023-05-02T10:00:00.123456Z", "1969-12-31T23:59:59.500000Z"]
)
PAYLOADS = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"captured_at": CAPTURED}),
    st.fixed_dictionaries(
        {
            "captured_at": CAPTURED,
            "superseded": st.one_of(
                st.none(), st.lists(st.sampled_from(["content.audio", "content.video", ""]))
            ),
            "imported_from": st.just("x"),
        }
    ),
)
#: Payloads only tampering writes (or that the SQL leaves to the replay): a time with an
#: offset, a date that does not exist, not a time, not text; superseded not a list of strings.
ODD_PAYLOADS = st.fixed_dictionaries(
    {
        "captured_at": st.sampled_from(
            [
                "2024-01-01T02:00:00+02:00",
                "2023-02-30T00:00:00Z",
                "0000-01-01T00:00:00Z",
                "yesterday",
                5,
                None,
            ]
        ),
        "superseded": st.sampled_from([None, "content.audio", [1], {"content.audio": 1}, 0]),
    }
)

#: Links between ids (issue 16 §3): the alias in the payload.
LINKS = st.builds(
    Draft,
    kind=st.sampled_from([Kind.SUBJECT_LINKED, Kind.SUBJECT_UNLINKED]),
    subject=MAYBE_ID,
    payload=st.fixed_dictionaries({"alias": IDS}),
)

ROW_DRAFTS = st.builds(
    Draft,
    kind=st.sampled_from(SETS_ROWS),
    actor=MAYBE_ID,
    subject=MAYBE_ID,
    account=MAYBE_ID,
    purpose=st.one_of(st.none(), st.sampled_from(["ai.training", "improvement", ""])),
    categories=CATEGORIES.map(tuple),
    status=STATUS,
    notice_version=st.one_of(st.none(), st.just("n1")),
    policy_version=st.one_of(st.none(), st.just("v1")),
    payload=PAYLOADS,
)
DRAFTS = st.one_of(ROW_DRAFTS, LINKS)

_counter = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state_sql")


def _store(folder: Path, drafts: list[Draft]) -> Store:
    store = Store(f"sqlite:///{folder}/s{next(_counter)}.db", clock=FakeClock())
    store.init(policies=[TEST_POLICY])
    for i in range(0, len(drafts), 4):
        store.append(drafts[i : i + 4])
    return store


def _python(conn: Any, head: int) -> tuple[audit.Implied, dict[Any, int], list[Any]]:
    """The reference: every event replayed through state_changes, and the event behind each
    key (audit.replay, audit.sources)."""
    unreadable: list[tuple[int, str]] = []
    with audit._events_cursor(conn, head) as cursor:
        implied, _n = audit.replay(audit.events_of(cursor), unreadable)
    wanted = {t: set(rows) for t, rows in implied.items()}
    with audit._events_cursor(conn, head) as cursor:
        seqs = audit.sources(audit.events_of(cursor), wanted)
    return implied, seqs, unreadable


def _both(store: Store) -> tuple[Any, Any]:
    """(the SQL audit, the Python audit) of the store, each in its own snapshot."""
    found = []
    for use_sql in (True, False):
        with store.ledger.engine.connect() as conn, conn.begin():
            head = store.ledger.head()[0]
            result = state_sql.audit_sql(conn, head) if use_sql else audit._audit(conn, head)
            found.append(None if result is None else result.to_dict())
    return found[0], found[1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drafts=st.lists(DRAFTS, max_size=30))
def test_the_sql_implies_what_the_replay_implies(folder: Path, drafts: list[Draft]) -> None:
    with _store(folder, drafts) as store, store.ledger.engine.connect() as conn, conn.begin():
        head = store.ledger.head()[0]
        found = state_sql.implied(conn, head)
        assert found is not None
        implied, seqs, unreadable = found
        expected, expected_seqs, expected_unreadable = _python(conn, head)
        assert implied == expected
        assert seqs == expected_seqs
        assert unreadable == expected_unreadable == []
        # the tables the append path wrote are what both imply: the check says so too
        result = state_sql.audit_sql(conn, head)
        assert result is not None and result.ok and not result.divergences


def _rows(store: Store, table: str) -> list[tuple[Any, ...]]:
    with store.ledger.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT rowid, * FROM {table}")]


TAMPERING = st.tuples(
    st.sampled_from(["update", "delete", "insert", "event"]),
    st.sampled_from(list(schema.STATE_TABLES)),
    st.integers(0, 10**6),
    st.one_of(st.none(), IDS, st.integers(-3, 10**15), st.sampled_from(["given", "raised"])),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # (shrinking a store takes minutes)
)
@given(drafts=st.lists(DRAFTS, min_size=1, max_size=20), changes=st.lists(TAMPERING, max_size=3))
def test_tampering_is_reported_as_the_replay_reports_it(
    folder: Path, drafts: list[Draft], changes: list[tuple[Any, ...]]
) -> None:
    with _store(folder, drafts) as store:
        for op, table, pick, value in changes:
            _tamper(store, op, table, pick, value)
        sql, python = _both(store)
        if sql is None:  # the SQL cannot decide (an irregular event): the replay does
            with store.ledger.engine.connect() as conn, conn.begin():
                assert audit.audit_connection(conn).to_dict() == python
        else:
            assert sql == python, (changes, sql, python)
        if not changes:
            assert sql is not None and sql["ok"]


def _tamper(store: Store, op: str, table: str, pick: int, value: Any) -> None:
    rows = _rows(store, table)
    columns = [c.name for c in schema.STATE_TABLES[table].columns]
    with store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        try:
            with conn.begin_nested():
                if op == "event":  # an event's column that a state change reads
                    seq = 1 + pick % store.ledger.head()[0]
                    column = ["subject", "account", "purpose", "categories", "status", "kind",
                              "at_us", "actor", "notice_version"][pick % 9]  # fmt: skip
                    if column == "categories":
                        value = ['["a","a"]', "[]", "{}", '"x"', "[1]", "null", "[nope"][pick % 7]
                    if column == "kind":
                        value = str(SETS_ROWS[pick % len(SETS_ROWS)])
                    conn.execute(
                        text(f"UPDATE events SET {column} = :v WHERE seq = :s"),
                        {"v": value, "s": seq},
                    )
                elif not rows:
                    return
                elif op == "delete":
                    conn.execute(
                        text(f"DELETE FROM {table} WHERE rowid = {rows[pick % len(rows)][0]}")
                    )
                elif op == "update":
                    column = columns[pick % len(columns)]
                    conn.execute(
                        text(f"UPDATE {table} SET {column} = :v WHERE rowid = :r"),
                        {"v": value, "r": rows[pick % len(rows)][0]},
                    )
                else:  # a copy of a row under another key
                    row = dict(zip(columns, rows[pick % len(rows)][1:], strict=True))
                    row[STATE_KEYS[table][-1]] = f"forged{pick}"
                    conn.execute(
                        text(
                            f"INSERT INTO {table} ({', '.join(row)}) "
                            f"VALUES ({', '.join(':' + c for c in row)})"
                        ),
                        row,
                    )
        except Exception:
            pass


def test_an_irregular_event_goes_to_the_replay(tmp_path: Path) -> None:
    store = _store(tmp_path, [Draft(kind=Kind.CONSENT_GIVEN, subject="a", purpose="p",
                                    categories=("c",))])  # fmt: skip
    with store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        conn.execute(
            text("UPDATE events SET categories = '{\"c\": 1}' WHERE kind = 'consent.given'")
        )
    with store.ledger.engine.connect() as conn, conn.begin():
        head = store.ledger.head()[0]
        assert state_sql.implied(conn, head) is None
        assert state_sql.audit_sql(conn, head) is None
        # (the replay iterates the object's keys: the row it implies is the stored one)
        assert audit.audit_connection(conn).ok
    store.close()


def test_an_imported_consent_is_audited_in_sql(tmp_path: Path) -> None:
    # Its record counts from captured_at and skips the superseded categories
    # (events.state_changes): the SQL says so too, without the Python replay.
    payload = {"captured_at": "2024-01-01T00:00:00.250000Z", "superseded": ["d"]}
    store = _store(tmp_path, [Draft(kind=Kind.CONSENT_GIVEN, subject="a", purpose="p",
                                    categories=("c", "d"), payload=payload)])  # fmt: skip
    with store.ledger.engine.connect() as conn, conn.begin():
        head = store.ledger.head()[0]
        found = state_sql.implied(conn, head)
        assert found is not None
        assert found[0]["consents"] == {
            ("a", "p", "c"): ("a", "p", "c", "given", 1_704_067_200_250_000, head, None, None)
        }
        result = state_sql.audit_sql(conn, head)
        assert result is not None and result.ok
    with store.ledger.engine.begin() as conn:  # the record's time moved to the ledger's
        conn.execute(text("UPDATE consents SET at_us = at_us + 1"))
    with store.ledger.engine.connect() as conn, conn.begin():
        sql = state_sql.audit_sql(conn, store.ledger.head()[0])
        assert sql is not None and not sql.ok
        assert [d.table for d in sql.divergences] == ["consents"]
        assert sql.to_dict() == audit.audit_connection(conn).to_dict()
    store.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(payload=ODD_PAYLOADS)
def test_an_odd_payload_is_audited_as_the_replay_audits_it(folder: Path, payload: Any) -> None:
    store = _store(folder, [Draft(kind=Kind.CONSENT_GIVEN, subject="a", purpose="p",
                                  categories=("content.audio", "c"))])  # fmt: skip
    with store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        conn.execute(
            text("UPDATE events SET payload = :p WHERE kind = 'consent.given'"),
            {"p": json.dumps(payload)},
        )
    sql, python = _both(store)
    assert sql is None or sql == python, (payload, sql, python)
    store.close()


def test_an_odd_import_payload_goes_to_the_replay(tmp_path: Path) -> None:
    # A captured_at with an offset is a time state_changes reads, the SQL does not: the
    # replay decides (and the tables, written by state_changes, agree with it).
    payload = {"captured_at": "2024-01-01T02:00:00+02:00"}
    store = _store(tmp_path, [Draft(kind=Kind.CONSENT_GIVEN, subject="a", purpose="p",
                                    categories=("c",), payload=payload)])  # fmt: skip
    with store.ledger.engine.connect() as conn, conn.begin():
        head = store.ledger.head()[0]
        assert state_sql.implied(conn, head) is None
        assert state_sql.audit_sql(conn, head) is None
        assert audit.audit_connection(conn).ok
    store.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    real = state_sql.audit_sql

    def spy(conn: Any, head: int) -> Any:
        seen.append("sql")
        return real(conn, head)

    monkeypatch.setattr(state_sql, "audit_sql", spy)
    yield seen


def test_store_audits_use_the_sql_on_sqlite(tmp_path: Path, calls: list[str]) -> None:
    store = _store(tmp_path, [])
    assert store.audit_state().ok and store.verify().ok
    assert calls == ["sql", "sql"]
    store.close()


def test_imports_and_links_are_audited_without_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An imported file (captured_at, superseded) and a link between two ids: the SQL decides
    # the whole audit, and `ledger verify` does not fall back to the Python replay.
    store = _store(tmp_path, [])
    store.give_consent("u2", "ai.training", ["content.audio"])
    rows = ["subject,purpose,categories,status,captured_at,source_id"]
    cats = "content.audio;content.video"
    when = [f"2023-0{1 + i % 9}-02T03:04:05Z" for i in range(20)]
    rows += [f"u{i % 3},ai.training,{cats},given,{when[i]},s{i}" for i in range(20)]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    report = store.import_consents(tmp_path / "in.csv")
    assert report.recorded == 20 and report.superseded > 0
    store.link_subject("u1", "guest@example.com")

    def no_replay(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the Python replay was used")

    monkeypatch.setattr(audit, "_audit", no_replay)
    assert store.audit_state().ok
    result = store.verify()
    assert result.ok and not result.divergences
    store.close()
