"""The ledger on SQLite and PostgreSQL: chain, tamper detection, idempotency, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from consentry import Store
from consentry.errors import IdempotencyConflict, NotInitialised
from consentry.ledger.events import GENESIS_HASH, Kind
from support import TEST_POLICY, FakeClock, allow_tampering

T, AUDIO = "ai.training", "content.audio"


def test_events_chain_and_verify(any_store: Store) -> None:
    a = any_store.give_consent("u1", T, [AUDIO, "content.video"], method="web", language="en")
    b = any_store.withdraw_consent("u1", T, [AUDIO])
    first, second = any_store.event(1), any_store.event(2)
    # A new store first records its public keys, then publishes its policy.
    assert first.prev_hash == GENESIS_HASH and first.kind is Kind.KEYS_REGISTERED
    keys = any_store.public_keys()
    assert first.payload == {k: keys[k] for k in ("receipt_public_key", "log_verifier_key")}
    assert second.prev_hash == first.hash and second.kind is Kind.POLICY_PUBLISHED
    assert b.prev_hash == a.hash and b.seq == a.seq + 1
    assert a.categories == ("content.audio", "content.video")
    assert a.policy_version == "v1" and a.notice_version == "v1" and a.method == "web"
    result = any_store.verify()
    assert result.ok and result.checked == b.seq == result.head_seq


def test_current_state_tables_follow_the_ledger(any_store: Store) -> None:
    any_store.give_consent("u1", T, [AUDIO])
    any_store.withdraw_consent("u1", T, [AUDIO])
    with any_store.ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT subject, category, status FROM consents")).all()
    assert [tuple(r) for r in rows] == [("u1", AUDIO, "withdrawn")]


def _tamper(store: Store, sql: str) -> None:
    with store.ledger.engine.begin() as conn:
        allow_tampering(conn)  # the events table refuses UPDATE and DELETE by trigger
        conn.execute(text(sql))


@pytest.mark.parametrize(
    ("sql", "seq", "words"),
    [
        ("UPDATE events SET subject = 'mallory' WHERE seq = 4", 4, "was changed"),
        ("UPDATE events SET at_us = at_us - 1000000 WHERE seq = 4", 4, "was changed"),
        ("DELETE FROM events WHERE seq = 4", 4, "missing"),
        ("DELETE FROM events WHERE seq = 6", 6, "deleted"),
        # Reordering: swap the contents of two events, keeping their positions.
        (
            "UPDATE events SET seq = -seq WHERE seq IN (4, 5);"
            "UPDATE events SET seq = CASE seq WHEN -4 THEN 5 ELSE 4 END WHERE seq < 0",
            4,
            "does not chain",
        ),
    ],
)
def test_verify_names_the_first_tampered_event(
    any_store: Store, sql: str, seq: int, words: str
) -> None:
    for i in range(5):
        any_store.give_consent(f"u{i}", T, [AUDIO])
    assert any_store.verify().ok
    for statement in sql.split(";"):
        _tamper(any_store, statement)
    result = any_store.verify()
    assert not result.ok
    assert result.seq == seq, result.problem
    assert words in (result.problem or "")


def test_verify_catches_an_inserted_event(any_store: Store) -> None:
    for i in range(3):
        any_store.give_consent(f"u{i}", T, [AUDIO])
    # Shift the tail up and insert a forged event at #3 that claims to follow #2.
    _tamper(any_store, "UPDATE events SET seq = seq + 100 WHERE seq >= 3")
    _tamper(any_store, "UPDATE events SET seq = seq - 99 WHERE seq >= 103")
    _tamper(
        any_store,
        "INSERT INTO events (seq, id, at, at_us, kind, subject, purpose, categories, payload, "
        "prev_hash, hash) SELECT 3, 'forged', at, at_us, kind, 'mallory', purpose, categories, "
        "payload, hash, hash FROM events WHERE seq = 2",
    )
    result = any_store.verify()
    assert not result.ok and result.seq == 3


def test_idempotent_write_returns_the_first_result(any_store: Store) -> None:
    first = any_store.give_consent("u1", T, [AUDIO], idempotency_key="k1")
    again = any_store.give_consent("u1", T, [AUDIO], idempotency_key="k1")
    assert again.id == first.id and again.seq == first.seq
    assert any_store.ledger.count() == first.seq
    with pytest.raises(IdempotencyConflict, match="different request"):
        any_store.withdraw_consent("u1", T, [AUDIO], idempotency_key="k1")
    assert any_store.ledger.count() == first.seq  # nothing written


def test_writes_need_an_initialised_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(NotInitialised, match="consentry init"):
        store.add_member("u1", "acme")


def test_bad_input_writes_nothing(any_store: Store) -> None:
    before = any_store.ledger.count()
    for call in (
        lambda: any_store.give_consent("u1", "ai.trainig", [AUDIO]),
        lambda: any_store.give_consent("u1", T, ["content.audoi"]),
        lambda: any_store.give_consent("u1", T, []),
        lambda: any_store.give_consent("", T, [AUDIO]),
        lambda: any_store.set_account("acme", T, "maybe"),
        lambda: any_store.remove_member("u1", "acme"),
    ):
        with pytest.raises(Exception) as info:
            call()
        assert type(info.value).__module__ == "consentry.errors"
    assert any_store.ledger.count() == before


def _threads(store_url: str, n_threads: int, per_thread: int, key: str | None) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        s = Store(store_url, clock=FakeClock())
        try:
            for i in range(per_thread):
                s.give_consent(f"t{t}-{i}", T, [AUDIO], idempotency_key=key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def test_concurrent_threads_never_fork_the_chain(any_store: Store) -> None:
    base = any_store.ledger.count()
    _threads(any_store.url, 6, 25, None)
    result = any_store.verify()
    assert result.ok, result.problem
    assert result.head_seq == base + 150 == any_store.ledger.count()


def test_concurrent_idempotent_writes_happen_once(any_store: Store) -> None:
    base = any_store.ledger.count()

    errors: list[BaseException] = []
    ids: list[str] = []

    def work() -> None:
        s = Store(any_store.url, clock=FakeClock())
        try:
            ids.append(s.give_consent("same", T, [AUDIO], idempotency_key="once").id)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(set(ids)) == 1 and any_store.ledger.count() == base + 1


def _process_writer(url: str, worker: int, n: int) -> None:
    s = Store(url)
    for i in range(n):
        s.give_consent(f"p{worker}-{i}", T, [AUDIO], idempotency_key=f"p{worker}-{i}")
        if i % 5 == 0:  # retries of the same request must not double
            s.give_consent(f"p{worker}-{i}", T, [AUDIO], idempotency_key=f"p{worker}-{i}")
    s.close()


def test_concurrent_processes_never_fork_the_chain(backend_url: str) -> None:
    store = Store(backend_url)
    store.init(policies=[TEST_POLICY])
    base = store.ledger.count()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(backend_url, w, 20)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    result = store.verify()
    assert result.ok, result.problem
    assert result.head_seq == base + 80 == store.ledger.count()
    store.close()


_FORKED_STORE: Store | None = None


def _forked_writer() -> None:
    assert _FORKED_STORE is not None
    for i in range(5):
        _FORKED_STORE.give_consent(f"child-{i}", T, [AUDIO], idempotency_key=f"child-{i}")


def test_a_store_forked_after_writing_writes_on_its_own_connection(any_store: Store) -> None:
    """A worker forked from a process that has written (a pre-fork server, a pipeline's
    pool) must not write on its parent's connection: both go on writing, one chain."""
    global _FORKED_STORE
    any_store.give_consent("parent-0", T, [AUDIO])
    base = any_store.ledger.count()
    _FORKED_STORE = any_store
    try:
        child = multiprocessing.get_context("fork").Process(target=_forked_writer)
        child.start()
        any_store.give_consent("parent-1", T, [AUDIO])  # the parent's connection still works
        child.join(60)
        assert child.exitcode == 0
    finally:
        _FORKED_STORE = None
    any_store.give_consent("parent-2", T, [AUDIO])
    result = any_store.verify()
    assert result.ok, result.problem
    assert any_store.ledger.count() == base + 7


def test_init_is_idempotent(any_store: Store) -> None:
    head = any_store.ledger.head()
    results = any_store.init(policies=[TEST_POLICY])
    assert [r.published for r in results] == [False, False]
    assert any_store.ledger.head() == head


def test_threads_sharing_one_store_group_commit_safely(any_store: Store) -> None:
    """Appends from threads of one store are committed in groups; a bad request in a group
    fails alone, and the in-memory state sees every event in order."""
    any_store.give_consent("dup", T, [AUDIO], idempotency_key="taken")
    base = any_store.ledger.count()
    errors: list[BaseException] = []
    conflicts: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                any_store.give_consent(f"g{t}-{i}", T, [AUDIO])
                if i == 10 and t % 2 == 0:
                    try:  # same key, different request: refused, and nothing else fails
                        any_store.withdraw_consent("dup", T, [AUDIO], idempotency_key="taken")
                    except IdempotencyConflict as exc:
                        conflicts.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(conflicts) == 3
    result = any_store.verify()
    assert result.ok, result.problem
    assert result.head_seq == base + 120 == any_store.ledger.count()
    # The shared store's state saw every event, exactly as a freshly loaded one does.
    fresh = Store(any_store.url, clock=any_store.clock)
    for t in range(6):
        for i in (0, 19):
            subject = f"g{t}-{i}"
            assert any_store.decider(refresh=False).reason(subject, T, AUDIO) == (
                fresh.decider().reason(subject, T, AUDIO)
            )
    assert any_store.state().seq == fresh.state().seq == result.head_seq
    fresh.close()


def _poison_subject(store: Store, subject: str) -> None:
    """Make the database itself refuse any event about ``subject`` (a trigger), so that the
    failure happens inside the shared transaction, not in consentry's own checks."""
    with store.ledger.engine.begin() as conn:
        if store.ledger.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON events "
                    f"WHEN NEW.subject = '{subject}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.subject = '{subject}' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON events "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )


def test_a_database_error_in_a_group_fails_only_its_own_caller(any_store: Store) -> None:
    """A write the database refuses, committed in a group with others, fails its own caller
    only: every other write in that group still commits, and the chain stays whole."""
    import time

    _poison_subject(any_store, "poison")
    base = any_store.ledger.count()
    ledger = any_store.ledger
    inner = ledger._append_groups
    release = threading.Event()
    failed_groups: list[int] = []

    def gated(groups, new_events=None):  # type: ignore[no-untyped-def]
        # The first transaction (the blocker's) waits until the others have queued behind
        # it: they are then committed together, as one group, when it is done.
        if not release.is_set():
            release.wait(30)
        try:
            return inner(groups, new_events)
        except Exception:
            failed_groups.append(len(groups))
            raise

    ledger._append_groups = gated  # type: ignore[method-assign]
    done: list[str] = []
    refused: list[BaseException] = []
    errors: list[BaseException] = []

    def write(subject: str) -> None:
        try:
            any_store.give_consent(subject, T, [AUDIO], idempotency_key=f"key-{subject}")
            done.append(subject)
        except Exception as exc:
            refused.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    blocker = threading.Thread(target=write, args=("blocker",))
    blocker.start()
    while not ledger._committing:
        time.sleep(0.001)
    subjects = ["h1", "h2", "poison", "h3", "h4"]
    threads = [threading.Thread(target=write, args=(s,)) for s in subjects]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 120
    while len(ledger._queue) < len(subjects) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for th in [blocker, *threads]:
        th.join()
    assert not errors, errors
    assert sorted(done) == ["blocker", "h1", "h2", "h3", "h4"]
    assert len(refused) == 1 and "poisoned" in str(refused[0])
    assert failed_groups[0] == len(subjects), failed_groups  # the group, then "poison" alone
    result = any_store.verify()
    assert result.ok, result.problem
    assert result.head_seq == base + 5 == any_store.ledger.count()
    # The in-memory state saw every committed event and nothing of the refused one.
    assert any_store.state().seq == result.head_seq
    fresh = Store(any_store.url, clock=any_store.clock)
    for subject in [*subjects, "blocker"]:
        assert fresh.decider().reason(subject, T, AUDIO) == (
            any_store.decider(refresh=False).reason(subject, T, AUDIO)
        )
    fresh.close()


def test_two_stores_taking_turns_keep_one_chain(any_store: Store) -> None:
    """Each store's writer expects the head it last wrote (the optimistic PostgreSQL append);
    when the other store moved it, the append must notice and chain onto the real head."""
    other = Store(any_store.url, clock=any_store.clock)
    base = any_store.ledger.count()
    first: dict[str, str] = {}
    for i in range(6):
        for name, s in (("a", any_store), ("b", other)):
            event = s.give_consent(f"{name}{i}", T, [AUDIO], idempotency_key=f"{name}{i}")
            first[f"{name}{i}"] = event.id
            # A retry through the other store: the key is taken, the first event comes back.
            again = (other if s is any_store else any_store).give_consent(
                f"{name}{i}", T, [AUDIO], idempotency_key=f"{name}{i}"
            )
            assert again.id == event.id
    result = any_store.verify()
    assert result.ok, result.problem
    assert result.head_seq == base + 12 == any_store.ledger.count()
    if any_store.ledger.backend == "postgresql":
        # The other store kept moving the head: guessing it is paused, not retried in vain.
        assert any_store.ledger._guess_paused_until > 0
    other.close()


def test_a_writer_connection_lost_while_idle_is_replaced(any_store: Store) -> None:
    """The ledger keeps one writer connection; should the server drop it while idle, the
    next append takes a fresh one (as the pool's pre-ping did at each checkout)."""
    if any_store.ledger.backend != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    any_store.give_consent("before", T, [AUDIO])
    writer = any_store.ledger._writer_conn
    assert writer is not None
    pid = writer.driver_connection.info.backend_pid
    with any_store.ledger.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    # pg_terminate_backend only signals: wait until the backend is gone, so that the
    # connection is lost *while idle* (not in the middle of the next append).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with any_store.ledger.engine.connect() as conn:
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
        if not alive:
            break
        time.sleep(0.02)
    any_store.ledger._writer_used = 0.0  # as after a second or more of idleness
    event = any_store.give_consent("after", T, [AUDIO])
    assert any_store.event(event.id).subject == "after"
    assert any_store.verify().ok
    # The writer runs in autocommit mode (BEGIN/COMMIT are its own statements); the pool
    # gets it back as it handed it out.
    driver = any_store.ledger._writer_conn.driver_connection
    assert driver.autocommit
    any_store.ledger._release_writer()
    assert not driver.autocommit


def test_an_over_long_value_is_refused_never_cut(any_store: Store) -> None:
    """PostgreSQL's sized columns refuse an over-long value (the hash covers all of it);
    SQLite stores it whole. Neither may store a shortened copy."""
    from sqlalchemy.exc import DBAPIError

    from consentry.ledger.events import Draft

    status = "x" * 60  # events.status is VARCHAR(40)
    draft = Draft(kind=Kind.ACCOUNT_FEATURE, account="acme", purpose=T, status=status)
    if any_store.ledger.backend == "postgresql":
        with pytest.raises(DBAPIError, match="too long"):
            any_store.append([draft])
    else:
        (event,) = any_store.append([draft])
        assert any_store.event(event.id).status == status
    assert any_store.verify().ok


def test_state_tables_match_a_replay_of_grouped_appends(any_store: Store) -> None:
    """Many events of every kind in one transaction (so several rows per table and a key
    touched more than once): the current-state tables hold what replaying the ledger gives."""
    from consentry.ledger import schema
    from consentry.ledger.events import STATE_KEYS, Draft, state_changes

    v = any_store.ledger.event(1).policy_version
    drafts = []
    for i in range(4):
        s = f"s{i % 2}"  # two subjects, each touched twice
        drafts += [
            Draft(kind=Kind.CONSENT_GIVEN, subject=s, purpose=T, categories=(AUDIO, "content"),
                  policy_version=v, notice_version=v),
            Draft(kind=Kind.CONSENT_WITHDRAWN, subject=s, purpose=T, categories=(AUDIO,),
                  policy_version=v, notice_version=v),
            Draft(kind=Kind.OBJECTION_RAISED, subject=s, purpose=T),
            Draft(kind=Kind.MEMBER_ADDED, subject=s, account="acme"),
            Draft(kind=Kind.MEMBER_ADDED, subject=f"m{i}", account="acme"),
            Draft(kind=Kind.MEMBER_REMOVED, subject=s, account="acme"),
            Draft(kind=Kind.MEMBER_INVITED, actor="a", subject=s, account="globex"),
            Draft(kind=Kind.MEMBER_INVITED, actor="a", subject=f"m{i}", account="globex"),
            Draft(kind=Kind.MEMBER_ACCEPTED, subject=s, account="globex"),
            Draft(kind=Kind.MEMBER_INVITED, actor="b", subject=s, account="initech"),
            Draft(kind=Kind.MEMBER_DECLINED, subject=f"m{i}", account="globex"),
            Draft(kind=Kind.ACCOUNT_SETTING, account="acme", purpose=T, status="on"),
            Draft(kind=Kind.ACCOUNT_FEATURE, account="acme", purpose=T, status="enabled"),
        ]  # fmt: skip
    any_store.append(drafts)
    any_store.append(drafts[:3])
    want: dict[str, dict[tuple[str, ...], dict[str, object]]] = {t: {} for t in STATE_KEYS}
    for event in any_store.ledger.events():
        for change in state_changes(event):
            if change.values is None:
                want[change.table].pop(change.key, None)
            else:
                want[change.table][change.key] = change.values
    with any_store.ledger.engine.connect() as conn:
        for table, keys in STATE_KEYS.items():
            got = {}
            for row in conn.execute(schema.STATE_TABLES[table].select()).mappings():
                got[tuple(row[k] for k in keys)] = {k: row[k] for k in row if k not in keys}
            assert got == want[table], table
    assert any_store.verify().ok


def test_a_connection_lost_mid_group_fails_its_callers_never_doubles(any_store: Store) -> None:
    """Should the writer's connection break while a group commits, the outcome is unknown:
    the group is not retried (a write without an idempotency key could land twice); its
    callers get the error, every write reported as done is in the ledger exactly once, and
    the next appends take a fresh connection."""
    if any_store.ledger.backend != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    with any_store.ledger.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION kill_writer() RETURNS trigger AS $$ BEGIN "
                "IF NEW.subject = 'kill' THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER kill_writer BEFORE INSERT ON events "
                "FOR EACH ROW EXECUTE FUNCTION kill_writer()"
            )
        )
    base = any_store.ledger.count()
    done: list[str] = []
    failed: list[BaseException] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                subject = "kill" if t == 0 and i == 5 else f"k{t}-{i}"
                try:
                    any_store.give_consent(subject, T, [AUDIO])  # no idempotency key
                    done.append(subject)
                except Exception as exc:
                    failed.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert "kill" not in done and failed
    result = any_store.verify()
    assert result.ok, result.problem
    subjects = [e.subject for e in any_store.ledger.events(after_seq=base)]
    assert sorted(subjects) == sorted(done)  # each reported write once, nothing else
    assert any_store.give_consent("after", T, [AUDIO]).seq == result.head_seq + 1


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET at = 'not a time' WHERE seq = 1",
        "UPDATE events SET at = NULL WHERE seq = 1",
        "UPDATE events SET payload = 'not json' WHERE seq = 1",
        # (SQLite: bytes that are not UTF-8 in a TEXT column)
        "UPDATE events SET payload = CAST(X'7bff7d' AS TEXT) WHERE seq = 1",
    ],
)
def test_a_tampered_keys_event_is_a_verify_failure_not_a_crash(any_store: Store, sql: str) -> None:
    # The store reads the keys its ledger registered before checking the chain: a tampered
    # keys.registered event must come back as the chain's finding, not as an InvalidInput.
    assert any_store.event(1).kind is Kind.KEYS_REGISTERED
    try:
        _tamper(any_store, sql)
    except Exception:  # (NOT NULL on PostgreSQL: the attacker cannot store that one)
        pytest.skip("the backend refuses this value")
    result = any_store.verify()
    assert not result.ok and result.seq == 1
    assert "was changed" in (result.problem or "") or "key" in (result.problem or "")


def test_sqlite_durability_is_full_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FULL by default (every commit on disk); CONSENTRY_SQLITE_SYNCHRONOUS relaxes it for
    stores one can lose, and a value SQLite would not take is refused by name."""
    from consentry.errors import InvalidInput
    from consentry.ledger.engine import make_engine

    def synchronous() -> int:
        engine = make_engine(f"sqlite:///{tmp_path}/d.db")
        try:
            with engine.connect() as conn:
                return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
        finally:
            engine.dispose()

    monkeypatch.delenv("CONSENTRY_SQLITE_SYNCHRONOUS", raising=False)
    assert synchronous() == 2  # FULL
    monkeypatch.setenv("CONSENTRY_SQLITE_SYNCHRONOUS", "normal")
    assert synchronous() == 1
    monkeypatch.setenv("CONSENTRY_SQLITE_SYNCHRONOUS", "OFF")
    assert synchronous() == 0
    monkeypatch.setenv("CONSENTRY_SQLITE_SYNCHRONOUS", "extra; DROP TABLE events")
    with pytest.raises(InvalidInput, match="CONSENTRY_SQLITE_SYNCHRONOUS"):
        synchronous()


def test_init_migrates_an_older_store_and_skips_a_current_one(tmp_path: Path) -> None:
    """An older schema is brought up to the head; one already at the head is left alone
    without running Alembic at all (Store.init runs on every `consentry serve`)."""
    from consentry.ledger import migrate
    from consentry.ledger.engine import make_engine

    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, "0006")
        assert not migrate.is_current(engine)
    finally:
        engine.dispose()
    with Store(url) as store:
        store.init(policies=[TEST_POLICY])
        assert migrate.is_current(store.ledger.engine)
        with store.ledger.engine.connect() as conn:
            tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
        assert "outbox" in tables  # made by 0007
        store.give_consent("u1", "ai.training", ["content"])
    assert migrate.head_revisions() and all(isinstance(r, str) for r in migrate.head_revisions())
