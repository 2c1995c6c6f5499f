"""The current state checked against the chain (`ledger verify`, `ledger rebuild-state`) and
the append-only events table, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app
from consentry.errors import LedgerCorrupt
from consentry.ledger import audit, schema
from consentry.ledger.events import STATE_KEYS, state_changes
from support import TEST_POLICY, FakeClock, allow_tampering

T, AUDIO, VIDEO = "ai.training", "content.audio", "content.video"
runner = CliRunner()


def _sql(store: Store, *statements: str) -> None:
    with store.ledger.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _fresh(store: Store) -> Store:
    """Another store on the same database: it loads its state from the tables as they are
    now (as a service started after the tampering would)."""
    return Store(store.url, clock=store.clock)


def _decision(store: Store, subject: str) -> str:
    with _fresh(store) as other:
        return str(other.check(subject, T, AUDIO).reason)


# -- an edited current-state row ----------------------------------------------------------------


def test_an_edited_consent_row_is_named_and_rebuilt(any_store: Store) -> None:
    any_store.give_consent("u0", T, [AUDIO])
    withdrawn = any_store.withdraw_consent("u0", T, [AUDIO])
    assert any_store.verify().ok and _decision(any_store, "u0") == "withdrawn"

    _sql(any_store, "update consents set status='given' where subject='u0'")
    assert _decision(any_store, "u0") == "consent"  # what the attacker was after

    result = any_store.verify()
    assert not result.ok
    assert result.checked == result.head_seq  # the chain itself is intact
    [d] = result.divergences
    assert (d.table, d.key, d.problem, d.fields) == (
        "consents",
        ("u0", T, AUDIO),
        "changed",
        ("status",),
    )
    assert d.stored is not None and d.implied is not None
    assert (d.stored["status"], d.implied["status"], d.seq) == ("given", "withdrawn", withdrawn.seq)
    message = (
        f"consents[u0, {T}, {AUDIO}]: status is 'given' in the table, the chain says "
        f"'withdrawn' (event #{withdrawn.seq})"
    )
    assert d.message() == message
    assert result.problem is not None and message in result.problem
    assert result.to_dict()["divergences"][0]["message"] == message

    rebuilt = any_store.rebuild_state()
    assert [c.key for c in rebuilt.changed] == [("u0", T, AUDIO)]
    assert any_store.verify().ok and not any_store.rebuild_state().changed
    assert _decision(any_store, "u0") == "withdrawn"
    assert str(any_store.check("u0", T, AUDIO).reason) == "withdrawn"  # this store reloaded


IMPROVE, SERVICE = "improvement", "service_data"
M1, M2, X1, O1 = (("m1", T, AUDIO), ("m2", T, AUDIO), ("x1", T, AUDIO), ("o1", IMPROVE, SERVICE))

# sql, then the row it breaks (table, key, problem), then a decision it changes (or None)
TAMPERING: dict[str, tuple[str, str, tuple[str, ...], str, tuple[str, str, str] | None]] = {
    "deleted membership": (
        "DELETE FROM memberships WHERE subject = 'm1' AND account = 'acme'",
        "memberships",
        ("m1", "acme"),
        "missing",
        M1,
    ),
    "extra consent": (
        "INSERT INTO consents (subject, purpose, category, status, at_us, seq) "
        f"VALUES ('x1', '{T}', '{AUDIO}', 'given', 1, 3)",
        "consents",
        ("x1", T, AUDIO),
        "extra",
        X1,
    ),
    "edited account setting": (
        f"UPDATE account_settings SET status = 'off' WHERE account = 'acme' AND purpose = '{T}'",
        "account_settings",
        ("acme", T),
        "changed",
        M1,
    ),
    "edited policy": (
        "UPDATE policies SET digest = 'f00d' WHERE version = 'v1'",
        "policies",
        ("v1",),
        "changed",
        None,
    ),
    "removed membership brought back": (
        "INSERT INTO memberships (subject, account, at_us, seq) VALUES ('m2', 'acme', 1, 3)",
        "memberships",
        ("m2", "acme"),
        "extra",
        M2,
    ),
    "lifted objection raised again": (
        "UPDATE objections SET status = 'raised' WHERE subject = 'o1'",
        "objections",
        ("o1", IMPROVE, SERVICE),
        "changed",
        O1,
    ),
}


def _history(store: Store) -> None:
    store.add_member("m1", "acme")
    store.add_member("m2", "acme")
    store.remove_member("m2", "acme")
    store.set_account("acme", T, "on")
    store.object("o1", IMPROVE, [SERVICE])
    store.object("o1", IMPROVE, [SERVICE], lift=True)


def _decide(store: Store, who: tuple[str, str, str]) -> str:
    with _fresh(store) as other:
        return str(other.check(*who).reason)


@pytest.mark.parametrize("case", list(TAMPERING))
def test_every_kind_of_state_tampering_is_named_and_rebuilt(any_store: Store, case: str) -> None:
    sql, table, key, problem, who = TAMPERING[case]
    _history(any_store)
    assert any_store.verify().ok
    honest = _decide(any_store, who) if who else None
    _sql(any_store, sql)
    if who is not None:
        assert _decide(any_store, who) != honest  # the tampering changes a decision
    result = any_store.verify()
    assert not result.ok
    assert [(d.table, d.key, d.problem) for d in result.divergences] == [(table, key, problem)]
    assert result.divergences[0].place in (result.problem or "")

    rebuilt = any_store.rebuild_state()
    assert [(d.table, d.key) for d in rebuilt.changed] == [(table, key)]
    assert any_store.verify().ok
    if who is not None:
        assert _decide(any_store, who) == honest
        assert str(any_store.check(*who).reason) == honest  # the rebuilding store reloaded


def test_divergences_name_every_row(any_store: Store) -> None:
    for i in range(3):
        any_store.give_consent(f"u{i}", T, [AUDIO, VIDEO])
    _sql(any_store, "DELETE FROM consents", "DELETE FROM account_settings")
    result = any_store.audit_state()
    assert not result.ok and len(result.divergences) == 6
    assert {d.problem for d in result.divergences} == {"missing"}
    assert len(any_store.rebuild_state().changed) == 6
    assert any_store.audit_state().ok


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_store(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", any_store.url)
    return any_store


def test_cli_verify_names_the_row_and_rebuild_state_repairs_it(cli_store: Store) -> None:
    cli_store.give_consent("u0", T, [AUDIO])
    withdrawn = cli_store.withdraw_consent("u0", T, [AUDIO])
    _sql(cli_store, "update consents set status='given' where subject='u0'")
    result = runner.invoke(app, ["ledger", "verify"])
    assert result.exit_code == 1, result.output
    assert (
        f"consents[u0, {T}, {AUDIO}]: status is 'given' in the table, the chain says "
        f"'withdrawn' (event #{withdrawn.seq})"
    ) in result.output
    assert "rebuild-state" in result.output and "ledger broken" not in result.output
    as_json = runner.invoke(app, ["ledger", "verify", "--json"])
    assert as_json.exit_code == 1 and '"table": "consents"' in as_json.output

    rebuilt = runner.invoke(app, ["ledger", "rebuild-state"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "1 row changed" in rebuilt.output and "fixed: consents[u0" in rebuilt.output
    again = runner.invoke(app, ["ledger", "verify"])
    assert again.exit_code == 0 and "matches the chain" in again.output
    assert "nothing to change" in runner.invoke(app, ["ledger", "rebuild-state"]).output
    decided = runner.invoke(app, ["check", T, AUDIO, "-s", "u0"])
    assert decided.exit_code == 1  # deny


def test_rebuild_is_refused_from_a_broken_chain(cli_store: Store) -> None:
    cli_store.give_consent("u0", T, [AUDIO])
    with cli_store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        conn.execute(text("UPDATE events SET status = 'x' WHERE seq = 3"))
        conn.execute(text("UPDATE consents SET status = 'withdrawn'"))
    with pytest.raises(LedgerCorrupt, match="does not verify"):
        cli_store.rebuild_state()
    result = runner.invoke(app, ["ledger", "rebuild-state"])
    assert result.exit_code == 2 and "does not verify" in result.output
    assert "backup" in result.output and "Traceback" not in result.output
    with cli_store.ledger.engine.connect() as conn:  # nothing was rebuilt
        assert conn.execute(text("SELECT status FROM consents")).scalar_one() == "withdrawn"
    verified = runner.invoke(app, ["ledger", "verify"])
    assert verified.exit_code == 1
    assert "ledger broken" in verified.output and "#3" in verified.output
    assert "current state differs" in verified.output  # both halves reported


def test_rebuild_is_one_transaction(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure half-way leaves the tables as they were."""
    any_store.give_consent("u0", T, [AUDIO])
    any_store.add_member("u0", "acme")
    _sql(any_store, "DELETE FROM consents", "DELETE FROM memberships")
    calls: list[str] = []
    real = audit._upsert

    def failing(dialect: str, table: str, names: tuple[str, ...]) -> Any:
        calls.append(table)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(dialect, table, names)

    monkeypatch.setattr(audit, "_upsert", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        any_store.rebuild_state()
    assert len(any_store.audit_state().divergences) == 2  # the first upsert was rolled back
    monkeypatch.undo()
    assert len(any_store.rebuild_state().changed) == 2 and any_store.verify().ok


# -- honest ledgers never diverge (property) ----------------------------------------------------

SUBJECTS = st.sampled_from(["a", "b", "c"])
ACCOUNTS = st.sampled_from(["acme", "globex"])
CATEGORIES = st.lists(
    st.sampled_from([AUDIO, VIDEO, "service_data"]), min_size=1, max_size=2, unique=True
)
PURPOSES = st.sampled_from([T, "improvement", "ai.training.generative"])
OPS = st.one_of(
    st.tuples(
        st.just("consent"),
        SUBJECTS,
        PURPOSES,
        CATEGORIES,
        st.sampled_from(["give", "refuse", "withdraw"]),
    ),
    st.tuples(st.just("object"), SUBJECTS, PURPOSES, CATEGORIES, st.booleans()),
    st.tuples(st.just("member"), SUBJECTS, ACCOUNTS, st.booleans()),
    st.tuples(
        st.just("setting"), ACCOUNTS, PURPOSES, st.sampled_from(["off", "members_choose", "on"])
    ),
    st.tuples(st.just("feature"), ACCOUNTS, st.booleans()),
)


def _apply(store: Store, op: tuple[Any, ...]) -> None:
    try:
        if op[0] == "consent":
            _, s, p, cats, action = op
            getattr(store, f"{action}_consent")(s, p, cats)
        elif op[0] == "object":
            _, s, p, cats, lift = op
            store.object(s, p, cats, lift=lift)
        elif op[0] == "member":
            _, s, a, add = op
            (store.add_member if add else store.remove_member)(s, a)
        elif op[0] == "setting":
            _, a, p, status = op
            store.set_account(a, p, status)
        else:
            _, a, enabled = op
            store.set_feature(a, "ai.feature.summary", enabled)
    except Exception as exc:  # refused by the policy or the state: nothing was recorded
        assert type(exc).__module__ == "consentry.errors", exc


def _tables(store: Store) -> dict[str, set[tuple[Any, ...]]]:
    with store.ledger.engine.connect() as conn:
        return {
            name: {tuple(r) for r in conn.execute(table.select())}
            for name, table in schema.STATE_TABLES.items()
        }


@pytest.fixture
def fresh_stores(backend_url: str) -> Iterator[Callable[[], Store]]:
    made: list[Store] = []
    url = make_url(backend_url)
    counter = iter(range(10**6))

    def make() -> Store:
        if url.get_backend_name() == "sqlite":
            assert url.database is not None
            target = f"sqlite:///{url.database}.{next(counter)}"
        else:
            target = backend_url
        store = Store(target, clock=FakeClock())
        store.init(policies=[TEST_POLICY])
        if url.get_backend_name() != "sqlite":  # one schema per test: start each example empty
            base = 3  # init's events: the store's keys and the test policy's two versions
            with store.ledger.engine.begin() as conn:
                allow_tampering(conn)
                conn.execute(text(f"DELETE FROM events WHERE seq > {base}"))
                conn.execute(text(f"DELETE FROM outbox WHERE seq > {base}"))  # their messages
                for name in schema.STATE_TABLES:
                    if name != "policies":
                        conn.execute(text(f"DELETE FROM {name}"))
                conn.execute(text("DELETE FROM tlog_nodes"))
                conn.execute(text("DELETE FROM checkpoints"))
                conn.execute(
                    text(
                        f"UPDATE ledger_head SET seq = {base}, hash = (SELECT hash FROM events "
                        f"WHERE seq = {base}), at_us = (SELECT at_us FROM events "
                        f"WHERE seq = {base})"
                    )
                )
                conn.execute(text("ALTER TABLE events ENABLE TRIGGER USER"))
            store.close()
            store = Store(target, clock=FakeClock())
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OPS, max_size=25))
def test_an_honest_ledger_never_diverges(
    fresh_stores: Callable[[], Store], ops: list[tuple[Any, ...]]
) -> None:
    store = fresh_stores()
    assert store.verify().ok
    for op in ops:
        _apply(store, op)
    # The state the append path wrote equals the events' state_changes, applied in order...
    final: dict[str, dict[tuple[str, ...], dict[str, Any] | None]] = {}
    for event in store.ledger.events():
        for change in state_changes(event):
            final.setdefault(change.table, {})[change.key] = change.values
    tables = _tables(store)
    for name in schema.STATE_TABLES:
        columns = [c.name for c in schema.STATE_TABLES[name].columns]
        keys = STATE_KEYS[name]
        expected = {
            tuple({**dict(zip(keys, key, strict=True)), **values}[c] for c in columns)
            for key, values in final.get(name, {}).items()
            if values is not None
        }
        assert tables[name] == expected, name
    # ... the audit's fast replay (raw rows, one refilled Event) equals the plain one ...
    implied, n = _replay(store)
    assert n == store.ledger.head()[0]
    assert (implied, n) == audit.replay(store.ledger.events())
    # ... and neither verify nor rebuild finds anything to say.
    result = store.verify()
    assert result.ok and not result.divergences, result.problem
    assert not store.rebuild_state().changed


def _replay(store: Store) -> tuple[audit.Implied, int]:
    """The events through the audit's own replay (the raw cursor path)."""
    with store.ledger.engine.connect() as conn, conn.begin():
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"SELECT {', '.join(audit.EVENT_COLUMNS)} FROM events ORDER BY seq")
        try:
            return audit.replay(audit.events_of(cursor))
        finally:
            cursor.close()


# -- append-only events -------------------------------------------------------------------------


def _plain_connection(store: Store) -> Any:
    """A connection that has nothing to do with consentry (the sqlite3 module, psycopg)."""
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return sqlite3.connect(url.database, isolation_level=None)
    import psycopg

    return psycopg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET status = 'given' WHERE seq = 3",
        "UPDATE events SET hash = hash",
        "DELETE FROM events WHERE seq = 3",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
def test_events_refuse_update_delete_and_truncate(any_store: Store, statement: str) -> None:
    any_store.give_consent("u0", T, [AUDIO])
    count = any_store.ledger.count()
    sqlite_backend = any_store.ledger.backend == "sqlite"
    if sqlite_backend and statement.startswith("TRUNCATE"):
        statement = "DELETE FROM events"  # SQLite's truncate is an unqualified DELETE
    with pytest.raises(Exception, match="append-only") as app_error:
        _sql(any_store, statement)
    assert "events cannot be" in str(app_error.value)
    plain = _plain_connection(any_store)
    try:
        with pytest.raises(Exception, match="append-only"):
            plain.execute(statement)
    finally:
        plain.close()
    assert any_store.ledger.count() == count and any_store.verify().ok
    any_store.withdraw_consent("u0", T, [AUDIO])  # appending still works
    assert any_store.verify().ok


def test_the_triggers_come_with_the_schema(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/new.db")
    store.init()
    with store.ledger.engine.connect() as conn:
        names = {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
                )
            )
        }
    assert names == {"events_append_only_update", "events_append_only_delete"}
    store.close()


@pytest.mark.parametrize(
    "change", ["kind = 'consent.forged'", "categories = '[not json'", "payload = '{'"]
)
def test_an_unreadable_event_is_reported_not_a_crash(any_store: Store, change: str) -> None:
    any_store.give_consent("u0", T, [AUDIO])
    # #2 publishes a policy (its payload is read), the consent is the last event
    seq = 2 if change.startswith("payload") else any_store.ledger.head()[0]
    with any_store.ledger.engine.begin() as conn:
        allow_tampering(conn)
        conn.execute(text(f"UPDATE events SET {change} WHERE seq = {seq}"))
    state = any_store.audit_state()
    assert not state.ok and [s for s, _why in state.unreadable] == [seq]
    assert f"event #{seq} cannot be replayed" in (state.summary() or "")
    # (the chain's check names the event too: its hash no longer matches)
