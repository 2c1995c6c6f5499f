"""The append-only, hash-chained event store."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ..canonical import canonical_json, sha256_hex
from ..errors import IdempotencyConflict, NotFound, NotInitialised
from ..ids import new_ids
from ..textcheck import refuse_bad_text
from ..times import Clock, format_time, from_us, parse_time, to_us
from . import schema, verifying
from .audit import Divergence
from .changes import committed, database_key
from .compiled import CompiledStatement
from .engine import WRITE, make_engine
from .events import (
    BODY_JSON,
    GENESIS_HASH,
    STATE_KEYS,
    Change,
    Draft,
    Event,
    Kind,
    commit_personal,
    event_mac,
    json_string,
    state_changes,
)
from .rows import at_us_of as _at_us  # noqa: F401 - the name chain_sql and tests use
from .rows import body_text


class _Pending:
    """One caller's append waiting for a group commit."""

    __slots__ = ("done", "drafts", "error", "now", "result", "wake")

    def __init__(self, drafts: Sequence[Draft], now: Clock) -> None:
        self.drafts = drafts
        self.now = now
        self.wake = threading.Lock()
        self.wake.acquire()
        self.done = False
        self.result: list[Event] | None = None
        self.error: Exception | None = None


class _WriterLost(Exception):
    """The writer connection was found dead before anything that could commit was sent."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


#: (consentry.ledger.compiled; the name the append path has always used)
_Compiled = CompiledStatement


def _head_for_update() -> Any:
    h = schema.ledger_head.c
    return select(h.seq, h.hash, h.at_us).where(h.id == bindparam("head_id")).with_for_update()


def _head_update() -> Any:
    h = schema.ledger_head.c
    return (
        update(schema.ledger_head)
        .where(h.id == bindparam("head_id"))
        .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), at_us=bindparam("new_at_us"))
    )


# PostgreSQL only: locks the head, and fails (division by zero, which aborts the transaction)
# unless it is at the seq, hash and time expected; the optimistic append's check, sent with its
# writes. The time is checked too: a gate's time fence (Ledger.fence) moves only ``at_us``, and
# an append that chained on the old time could give an event a time at or before the fence.
_PG_HEAD_GUARD = (
    "SELECT 1 / (seq = %(seq)s AND hash = %(hash)s AND at_us = %(at_us)s)::int "
    "FROM ledger_head WHERE id = 1 FOR UPDATE"
)
_DIVISION_BY_ZERO = "22012"  # the SQLSTATE of the guard's refusal


#: The events table's columns, in order: the rows of an append are tuples in this order.
_EVENT_COLUMNS = tuple(c.name for c in schema.events.columns)
_OUTBOX_COLUMNS = ("seq", "event_id", "kind", "at_us")


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    """A plain INSERT with positional parameters (``?`` for sqlite3, ``%s`` for psycopg):
    an append's rows go to ``executemany`` as tuples, with no per-row dict to map."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


@functools.cache
def _state_sql(table: str, value_names: tuple[str, ...] | None, mark: str) -> str:
    """The upsert (or, when ``value_names`` is None, the delete) of one current-state row,
    with positional parameters: the key columns, then the values. The same SQL on SQLite
    and PostgreSQL (``INSERT ... ON CONFLICT DO UPDATE``)."""
    keys = STATE_KEYS[table]
    if value_names is None:
        return f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = {mark}" for k in keys)
    names = (*keys, *value_names)
    updates = ", ".join(f"{v} = excluded.{v}" for v in value_names)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def _check_retry(stored: str, request_hash: str, draft: Draft) -> None:
    """Refuse a retried idempotency key whose request differs from the one recorded."""
    if stored == request_hash:
        return
    # (recorded before requests were hashed as asked)
    if draft.asked is not None and stored == sha256_hex(canonical_json(draft.content())):
        return
    key = draft.idempotency_key
    raise IdempotencyConflict(
        f"idempotency key {key!r} was already used for a different request",
        hint="use a new key for a new request; reuse a key only to retry the same one",
    )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of recomputing the chain (and, from ``Store.verify``, the current state:
    ``divergences`` are the state rows that differ from what the chain implies)."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    seq: int | None = None
    event_id: str | None = None
    #: What was not checked, and why (e.g. MACs without the log key).
    notes: tuple[str, ...] = ()
    #: The audit against a checkpoint (``ledger verify --since``), as JSON data.
    since: dict[str, Any] | None = None
    divergences: tuple[Divergence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON data: the fields, each divergence with its message."""
        data = {k: v for k, v in self.__dict__.items() if k != "divergences"}
        data["notes"] = list(self.notes)
        data["divergences"] = [d.to_dict() for d in self.divergences]
        return data


class Ledger:
    """Append-only log of every event, with the current-state tables derived from it."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        self.backend = self.engine.dialect.name
        # Group commit (see append): appends waiting for the one being committed.
        self._queue_lock = threading.Lock()
        self._queue_ready = threading.Condition(self._queue_lock)  # an append was queued
        self._last_batch = 1
        self._last_commit_s = 0.0
        self._queue: list[_Pending] = []
        self._committing = False
        self._writer_conn: Any = None  # see _writer
        self._writer_pid = 0  # the process that opened it
        self._reader_pid = os.getpid()  # the process whose pool reads use (see read_engine)
        self._writer_used = 0.0  # time.monotonic() of its last commit
        self._expected_head: tuple[int, str, int] | None = None  # its last commit's head
        self._guess_paused_until = 0.0  # see _transact: other writers keep moving the head
        #: The key that authenticates each new event (HMAC of its hash; see events.event_mac),
        #: derived from the store's log key. Set by the Store before it writes.
        self.mac_key: bytes | None = None
        #: Called by the committing thread with each group commit's new events, in ``seq``
        #: order, before any of its callers returns (the store keeps its state current).
        self.on_commit: Callable[[list[Event]], None] | None = None
        #: The database's name among this process's ledgers (see ``changes.committed``).
        self.watch_key = database_key(self.engine)

    # -- set-up ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema and the chain head (idempotent)."""
        from .migrate import upgrade  # Alembic: only the commands that migrate pay for it

        upgrade(self.engine)
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            if conn.execute(select(schema.ledger_head.c.id)).first() is None:
                conn.execute(
                    insert(schema.ledger_head).values(id=1, seq=0, hash=GENESIS_HASH, at_us=0)
                )

    def is_initialised(self) -> bool:
        # Connecting is outside the try: a server that does not answer is not "a store that
        # is not initialised" (the caller would tell the user to run `init`).
        with self.engine.connect() as conn:
            try:
                return conn.execute(select(schema.ledger_head.c.id)).first() is not None
            except (OperationalError, ProgrammingError):  # no ledger table
                return False

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()

    def set_meta_once(self, key: str, value: str) -> str:
        """Set ``key`` unless it is set; return the value that is stored."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            current = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()
            if current is not None:
                return str(current)
            conn.execute(insert(schema.meta).values(key=key, value=value))
            return value

    # -- writing --------------------------------------------------------------------------

    def append(self, drafts: Sequence[Draft], now: Clock | datetime) -> list[Event]:
        """Append events in one transaction; return them (or, for a retried idempotency key,
        the event first recorded under it).

        ``now`` is the clock the events' time is read from, called while the append holds
        the chain head (a fixed ``datetime`` is taken as a clock that always says it). An
        event's time is ``max(now(), the head's time)``: it never runs backwards along the
        chain, and never falls at or before a gate's time fence (see ``fence``), so ``seq``
        order and time order agree, whichever process or thread wrote.

        Group commit: appends that threads of this process ask for while another is being
        committed are committed together, in one transaction (one disk flush), when that one
        is done; each caller still gets its own events back once they are durable. Should the
        shared transaction fail, each append is retried alone, so one bad request never fails
        another. A lone caller goes straight through.

        When the last transaction carried several appends, their threads are likely to come
        back with more: the next one waits for them, at most as long as the last transaction
        took (as PostgreSQL's ``commit_delay`` does), so that they share one flush instead of
        one going alone and the rest after it.
        """
        request = _Pending(drafts, _as_clock(now))
        with self._queue_lock:
            if self._committing:
                self._queue.append(request)
                self._queue_ready.notify()
                lead = handed = False
            else:
                self._committing = lead = True
                handed = False
        if not lead:
            request.wake.acquire()  # released when done, or when handed the lead
            lead = handed = not request.done
        if lead:
            batch = [request]
            started = time.monotonic()
            try:
                with self._queue_lock:
                    if self._last_batch > 1:
                        wanted = self._last_batch - (0 if handed else 1)
                        deadline = started + self._last_commit_s
                        while len(self._queue) < wanted:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0 or not self._queue_ready.wait(remaining):
                                break
                    # The request handed the lead is still in the queue: it goes first, once.
                    batch = list(dict.fromkeys([request, *self._queue]))
                    self._queue = []
                started = time.monotonic()
                new_events: list[Event] = []
                self._commit(batch, new_events)
                if new_events:
                    # Other stores of this process on the same database see them next read.
                    committed(self.watch_key, max(e.seq for e in new_events))
                if new_events and self.on_commit is not None:
                    self.on_commit(sorted(new_events, key=lambda e: e.seq))
            finally:
                self._last_batch = len(batch)
                self._last_commit_s = min(time.monotonic() - started, 0.01)
                with self._queue_lock:
                    if request in self._queue:  # failed before taking the queue
                        self._queue.remove(request)
                    if self._queue:
                        self._queue[0].wake.release()  # the next leader takes the queue
                    else:
                        self._committing = False
                for r in batch:
                    if r is not request:
                        r.wake.release()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _commit(self, batch: list[_Pending], new_events: list[Event]) -> None:
        try:
            if len(batch) > 1:
                try:
                    results = self._append_retrying([(r.drafts, r.now) for r in batch], new_events)
                except Exception as exc:
                    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                        # The connection broke with the COMMIT possibly sent: the group may
                        # or may not be on disk, so none of it is retried (an append without
                        # an idempotency key could be recorded twice). Each caller gets the
                        # error; a retry under the same idempotency key is safe.
                        for r in batch:
                            r.error, r.done = exc, True
                    # Otherwise each append is retried alone below.
                else:
                    for r, events in zip(batch, results, strict=True):
                        r.result, r.done = events, True
            for r in batch:
                if not r.done:
                    try:
                        r.result = self._append_retrying([(r.drafts, r.now)], new_events)[0]
                    except Exception as exc:
                        r.error = exc
                    r.done = True
        finally:
            for r in batch:
                if not r.done:  # a BaseException (KeyboardInterrupt) in the leader
                    r.error, r.done = RuntimeError("the append was interrupted"), True

    def _append_retrying(
        self, groups: Sequence[tuple[Sequence[Draft], Clock]], new_events: list[Event]
    ) -> list[list[Event]]:
        for _attempt in range(5):
            try:
                return self._append_groups(groups, new_events)
            except IntegrityError as exc:
                # Only a concurrent write under the same idempotency key gets here; retrying
                # finds that write and returns it.
                if "idempotency" not in str(exc).lower():
                    raise
        raise IdempotencyConflict("idempotency key kept colliding", hint="retry the request")

    def _append(self, drafts: Sequence[Draft], now: Clock | datetime) -> list[Event]:
        return self._append_groups([(drafts, _as_clock(now))])[0]

    def _append_groups(
        self,
        groups: Sequence[tuple[Sequence[Draft], Clock]],
        new_events: list[Event] | None = None,
    ) -> list[list[Event]]:
        """Append each group's drafts (at its own ``now``), all in one transaction; add the
        events it recorded (not idempotent replays) to ``new_events`` once committed.

        Runs on the ledger's own writer connection (see ``_writer``), only ever used by the
        thread committing a group, so one connection serves every writer of this process.
        """
        for attempt in (1, 2):
            writer = self._writer()
            added: list[Event] = []
            try:
                results = self._transact(writer, groups, added)
            except _WriterLost as lost:
                # The kept connection died while idle (a server restart, an idle timeout)
                # and failed before anything that could commit was sent: take a fresh one
                # and go again, as the pool's pre-ping would have at checkout.
                self._release_writer(invalidate=True)
                if attempt == 2:
                    raise lost.error from lost.error.orig
                continue
            if new_events is not None:
                new_events.extend(added)
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    def read_engine(self) -> Engine:
        """The engine, for a read on the write path (a consent's notice lookup) that may run in
        a process forked from one that read before: its pooled connections are the parent's
        sockets, so the child leaves them to the parent and opens its own."""
        pid = os.getpid()
        if self._reader_pid != pid:
            self.engine.dispose(close=False)
            self._reader_pid = pid
        return self.engine

    def _writer(self) -> Any:
        """The connection appends run on, checked out of the pool once and kept.

        Checking a connection out per transaction cost a round trip on PostgreSQL (the
        pool's pre-ping) and SQLAlchemy's begin/commit machinery on both backends, for every
        transaction; a sequential writer paid it on every write.
        """
        writer: Any = self._writer_conn
        if writer is not None and self._writer_pid != os.getpid():
            # Forked after writing: the socket belongs to the parent. Leave it to the parent
            # (closing it here would end the parent's session), and the pool's connections
            # too, and open our own.
            writer = self._writer_conn = None
            self._expected_head = None
            self.engine.dispose(close=False)
        if (
            writer is not None
            and self.backend == "postgresql"
            and time.monotonic() - self._writer_used > 1.0
        ):
            # Idle for a second or more: the server may have dropped it (a restart, an idle
            # timeout). Ask before trusting it with a transaction, as the pool's pre-ping
            # did; a failure in the middle of an append could not be told from a lost
            # commit. Busy writers skip this round trip.
            try:
                writer.driver_connection.execute("SELECT 1")
            except self.engine.dialect.loaded_dbapi.Error:
                self._release_writer(invalidate=True)
                writer = None
        if writer is None:
            writer = self._writer_conn = self.engine.raw_connection()
            self._writer_pid = os.getpid()
            if self.backend == "postgresql":
                # BEGIN and COMMIT are sent as statements of the pipeline (see
                # _pg_transaction): psycopg's own BEGIN costs a round trip in pipeline mode.
                writer.driver_connection.autocommit = True
        return writer

    def _release_writer(self, *, invalidate: bool = False) -> None:
        writer, self._writer_conn = self._writer_conn, None
        self._expected_head = None
        if writer is None:
            return
        if not invalidate and self.backend == "postgresql":
            try:
                writer.driver_connection.autocommit = False  # as the pool handed it out
            except Exception:  # not idle: of no use to anyone else either
                invalidate = True
        if invalidate:
            writer.invalidate()
        else:
            writer.close()  # back to the pool, which rolls back anything left open

    def close(self) -> None:
        """Return the writer connection and close the engine's connections."""
        self._release_writer()
        self.engine.dispose()

    def _transact(
        self, writer: Any, groups: Sequence[tuple[Sequence[Draft], Clock]], added: list[Event]
    ) -> list[list[Event]]:
        """One append transaction on ``writer``, on the driver's cursor (see _Compiled).

        SQLite: BEGIN IMMEDIATE, the head and idempotency-key reads, the writes, COMMIT.

        PostgreSQL, in libpq pipeline mode (see _pg_transaction): two round trips, one to
        lock and read the head and the idempotency keys, one for every write and the COMMIT.
        When this connection committed the last append less than a second ago, the head it
        wrote is very likely still the head: then the writes go in the first round trip,
        behind a guard that locks the head and fails unless it is the one expected, and the
        unique idempotency-key index stands in for the key lookup. Should either fail
        (another process appended, a retried key), that transaction is rolled back and the
        append goes the two-round-trip way. When another process moved the head, the guess
        is paused for a second: with several writer processes taking turns, most guesses
        would miss, each costing a failed round trip and a rollback.
        """
        expected = self._expected_head
        self._expected_head = None  # until this transaction commits
        now = time.monotonic()
        if (
            self.backend != "postgresql"
            or now - self._writer_used > 1.0  # (*)
            or now < self._guess_paused_until
        ):
            # (*) An idle connection may have died: only the two-round-trip way can tell,
            # from a first round trip that commits nothing (see _WriterLost).
            expected = None
        dbapi = self.engine.dialect.loaded_dbapi
        driver = writer.driver_connection
        cur = driver.cursor()
        try:
            while True:
                try:
                    if self.backend == "postgresql":
                        results, new_head = self._pg_transaction(
                            driver, cur, groups, expected, added
                        )
                    else:
                        # isolation_level=None (see engine.py): BEGIN and COMMIT are ours.
                        # IMMEDIATE takes the write lock first: no two writers read one head.
                        cur.execute("BEGIN IMMEDIATE")
                        head, known = self._read_head(cur, groups)
                        results, new_head = self._write(cur, groups, head, known, added)
                        cur.execute("COMMIT")
                except dbapi.Error as exc:
                    if expected is None or driver.closed:
                        raise
                    # The optimistic try failed (head moved, key already used): nothing of
                    # it was committed. Roll back and take the two-round-trip way.
                    if getattr(exc, "sqlstate", None) == _DIVISION_BY_ZERO:  # the head moved
                        self._guess_paused_until = time.monotonic() + 1.0
                    added.clear()
                    self._rollback(writer)
                    expected = None
                    continue
                break
        except BaseException as exc:
            added.clear()
            lost = self.backend == "postgresql" and driver.closed
            self._rollback(writer)
            if isinstance(exc, dbapi.Error):
                # As SQLAlchemy would have raised it (IntegrityError, OperationalError, ...);
                # a broken connection is marked as SQLAlchemy marks a disconnect (see _commit).
                raise self._wrap(exc, lost=lost) from exc
            raise
        finally:
            cur.close()
        self._expected_head = new_head
        self._writer_used = time.monotonic()
        return results

    def _pg_transaction(
        self,
        driver: Any,
        cur: Any,
        groups: Sequence[tuple[Sequence[Draft], Clock]],
        expected: tuple[int, str, int] | None,
        added: list[Event],
    ) -> tuple[list[list[Event]], tuple[int, str, int]]:
        """The PostgreSQL transaction of ``_transact``, in one pipeline.

        The connection is in autocommit mode and the transaction's BEGIN and COMMIT are
        statements of the pipeline, so that the whole optimistic transaction is one round
        trip: leaving the pipeline sends the only Sync. (psycopg, left to begin the
        transaction itself, syncs after its BEGIN; and its commit() syncs before the
        pipeline's own closing Sync: three round trips.) Should a statement fail, the server
        skips the rest up to the Sync and leaves the transaction aborted: _rollback ends it.
        """
        dbapi = self.engine.dialect.loaded_dbapi
        failed: Exception | None = None
        try:
            with driver.pipeline():
                try:
                    known: dict[str, dict[str, Any]]
                    # The isolation level SQLAlchemy's connections use (the server default
                    # may differ): the head's row lock is what orders appends.
                    cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    if expected is not None:
                        cur.execute(
                            _PG_HEAD_GUARD,
                            {"seq": expected[0], "hash": expected[1], "at_us": expected[2]},
                        )
                        head, known = expected, {}  # the unique index checks the keys
                    else:
                        try:
                            head, known = self._read_head(cur, groups)
                        except dbapi.Error as exc:
                            if driver.closed:
                                raise _WriterLost(self._wrap(exc)) from exc
                            raise
                    out = self._write(cur, groups, head, known, added)
                    cur.execute("COMMIT")
                except dbapi.Error as exc:
                    # Leave the pipeline normally, so that it reads the results of the
                    # statements queued behind the failed one (they come back "aborted")
                    # rather than logging them as an error ignored; then raise this one.
                    failed = exc
        except dbapi.Error:
            if failed is None:
                raise
        if failed is not None:
            raise failed
        return out

    def _wrap(self, exc: Exception, *, lost: bool = False) -> DBAPIError:
        wrapped = DBAPIError.instance(
            None, None, exc, self.engine.dialect.loaded_dbapi.Error, connection_invalidated=lost
        )
        assert isinstance(wrapped, DBAPIError)
        return wrapped

    def _rollback(self, writer: Any) -> None:
        driver = writer.driver_connection
        try:
            if self.backend == "postgresql":
                if driver.closed:
                    self._release_writer(invalidate=True)
                else:
                    driver.rollback()
            elif driver.in_transaction:
                driver.execute("ROLLBACK")
        except Exception:
            # A connection that cannot even roll back is of no further use: the next append
            # takes a fresh one. The caller sees the original error.
            self._release_writer(invalidate=True)

    def _read_head(
        self, cur: Any, groups: Sequence[tuple[Sequence[Draft], Clock]]
    ) -> tuple[tuple[int, str, int], dict[str, dict[str, Any]]]:
        """Lock the chain head; read it and the events already recorded under the
        idempotency keys asked for (one query for all, on PostgreSQL in the same round
        trip)."""
        head_sql = self._compiled("head", _head_for_update)
        cur.execute(head_sql.sql, head_sql.params({"head_id": 1}))
        keys = [d.idempotency_key for ds, _ in groups for d in ds if d.idempotency_key]
        key_cur = self._query_keys(cur, keys) if keys else None
        head = cur.fetchone()
        if head is None:
            raise NotInitialised("the store has no ledger yet", hint="run `consentry init` first")
        known: dict[str, dict[str, Any]] = {}
        if key_cur is not None:
            found = key_cur.fetchall()
            if found:  # (psycopg builds the description lazily, a Column per column)
                names = [d[0] for d in key_cur.description]
                for values in found:
                    row = dict(zip(names, values, strict=True))
                    known[row["idempotency_key"]] = row
            key_cur.close()
        return (head[0], head[1], head[2]), known

    def _write(
        self,
        cur: Any,
        groups: Sequence[tuple[Sequence[Draft], Clock]],
        head: tuple[int, str, int],
        known: dict[str, dict[str, Any]],
        added: list[Event],
    ) -> tuple[list[list[Event]], tuple[int, str, int]]:
        """Chain the drafts onto ``head`` and send their rows, state changes and the new
        head (on PostgreSQL queued in the pipeline, to go with the COMMIT); return each
        group's events and the new head.

        Each group's clock is read here, once the head is held (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: the head's row lock, or on the optimistic path a guard that commits only
        if the head, its time included, is still the one these times were chained on)."""
        seq, prev_hash, last_us = head
        results: list[list[Event]] = []
        rows: list[tuple[Any, ...]] = []
        changes: list[Change] = []
        # Drawn once for the whole transaction (a bulk append writes thousands of events):
        # the ids, and the commitments' salts. Replayed drafts leave some unused.
        total = sum(len(drafts) for drafts, _clock in groups)
        event_ids = new_ids(total)
        salts = os.urandom(16 * total)
        categories_texts: dict[tuple[str, ...], str] = {}
        mac_key = self.mac_key
        index = -1
        for drafts, clock in groups:
            now_us = to_us(clock())
            # The group's time: read once its first event is recorded (a group of replays
            # only moves nothing), the same for each of its events.
            at_text = ""
            at: datetime | None = None
            out: list[Event] = []
            results.append(out)
            for draft in drafts:
                index += 1
                # The draft's content serves twice: hashed alone it is the request hash (what
                # idempotent retries compare); with the event's place added it is exactly
                # Event.hashed(), which the chain hash covers.
                request_hash = draft.request_hash()
                key = draft.idempotency_key
                if key is not None and key in known:
                    _check_retry(known[key]["request_hash"], request_hash, draft)
                    out.append(_from_row(known[key]))
                    continue
                if at is None:
                    last_us = max(now_us, last_us)  # time never runs backwards along the chain
                    at = from_us(last_us)
                    at_text = format_time(at)
                seq += 1
                event_id = event_ids[index]
                salt = salts[16 * index : 16 * index + 16]
                commitment = commit_personal(salt, draft.subject, draft.actor, key)
                # The body's canonical JSON spliced as verification splices it (body_text),
                # from the categories and payload texts the row stores: one small dump each
                # instead of a sorted dump of the whole body (see events.event_body).
                cats = draft.categories
                categories_text = categories_texts.get(cats)
                if categories_text is None:
                    categories_text = categories_texts[cats] = canonical_json(list(cats)).decode()
                payload = draft.payload
                payload_text = (
                    canonical_json(payload if payload.__class__ is dict else dict(payload)).decode()
                    if payload
                    else "{}"
                )
                kind = str(draft.kind)
                body = _BODY % (
                    _q(draft.account), _q(at_text), categories_text, _q(commitment),
                    _q(event_id), _q(kind), _q(draft.language), _q(draft.method),
                    _q(draft.notice_version), payload_text, _q(draft.policy_version),
                    _q(draft.purpose), seq, _q(draft.status),
                )  # fmt: skip
                event_hash = sha256(f"{prev_hash}\n{body}".encode()).hexdigest()
                mac = event_mac(mac_key, event_hash) if mac_key else None
                event = _event_from(
                    draft, seq, event_id, at, at_text, last_us, prev_hash, event_hash
                )
                fields = vars(event)
                nonce = salt.hex()
                fields.update(nonce=nonce, commitment=commitment, mac=mac)
                prev_hash = event_hash
                out.append(event)
                added.append(event)
                # (in the order of schema.events' columns: _EVENT_COLUMNS)
                rows.append(
                    (seq, event_id, at_text, last_us, kind, draft.actor, draft.subject,
                     draft.account, draft.purpose, categories_text, draft.status,
                     draft.policy_version, draft.notice_version, draft.language, draft.method,
                     payload_text, key, request_hash, event.prev_hash, event_hash, nonce,
                     commitment, mac)
                )  # fmt: skip
                if key is not None:
                    # a second draft under the key in this transaction
                    known[key] = dict(zip(_EVENT_COLUMNS, rows[-1], strict=True))
                changes.extend(state_changes(event))
        if rows:
            mark = "?" if self.backend == "sqlite" else "%s"
            cur.executemany(_insert_sql("events", _EVENT_COLUMNS, mark), rows)
            # The transactional outbox (issue 15): one message per event, committed with it.
            outbox = [(r[0], r[1], r[4], r[3]) for r in rows]  # (_OUTBOX_COLUMNS)
            cur.executemany(_insert_sql("outbox", _OUTBOX_COLUMNS, mark), outbox)
            self._apply(cur, changes)
            update_sql = self._compiled("head_update", _head_update)
            cur.execute(
                update_sql.sql,
                update_sql.params(
                    {"head_id": 1, "new_seq": seq, "new_hash": prev_hash, "new_at_us": last_us}
                ),
            )
        return results, (seq, prev_hash, last_us)

    def _query_keys(self, cur: Any, keys: list[str]) -> Any:
        """Start the query for the events recorded under ``keys`` on a cursor of its own."""
        columns = ", ".join(c.name for c in schema.events.columns)
        key_cur = cur.connection.cursor()
        if self.backend == "postgresql":
            key_cur.execute(
                f"SELECT {columns} FROM events WHERE idempotency_key = ANY(%(keys)s)",
                {"keys": keys},
            )
        else:
            key_cur.execute(
                f"SELECT {columns} FROM events "
                "WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            )
        return key_cur

    def _apply(self, cur: Any, changes: Iterable[Change]) -> None:
        # Runs of same-shaped upserts (or deletes) to one table go out as one executemany, in
        # order within each table (tables are independent). A run never holds one key twice:
        # a multi-row upsert may not touch a row twice. Each row's parameters are a tuple:
        # the key, then the values in the order of their dict (the run's shape).
        runs: list[tuple[tuple[str, tuple[str, ...] | None], list[tuple[Any, ...]]]] = []
        open_runs: dict[str, tuple[int, set[tuple[str, ...]]]] = {}
        for table, key, values in changes:
            if values is None:
                shape: tuple[str, tuple[str, ...] | None] = (table, None)
                params = key
            else:
                shape = (table, tuple(values))
                params = (*key, *values.values())
            current = open_runs.get(table)
            if current is not None and runs[current[0]][0] == shape and key not in current[1]:
                runs[current[0]][1].append(params)
                current[1].add(key)
            else:
                open_runs[table] = (len(runs), {key})
                runs.append((shape, [params]))
        mark = "?" if self.backend == "sqlite" else "%s"
        for (table, value_names), params_list in runs:
            cur.executemany(_state_sql(table, value_names, mark), params_list)

    def _compiled(self, key: Any, build: Any, *args: Any) -> _Compiled:
        """A statement of the append path, compiled once for this engine's dialect."""
        cache: dict[Any, _Compiled] = self.__dict__.setdefault("_compiled_cache", {})
        found = cache.get(key)
        if found is None:
            found = cache[key] = _Compiled(build(*args), self.engine.dialect)
        return found

    def fence(self, clock: Clock, at: datetime | None = None) -> tuple[int, str, int]:
        """Pin a time that no later event can reach back to; return ``(seq, hash, as_of_us)``.

        Holds the chain head (as an append does, so any append in flight has committed and
        none can start), reads ``clock`` there unless ``at`` is given, and raises the head's
        time to one microsecond past the time pinned, if it is not already past it. Every
        event appended afterwards, by any process, chains on that time (see ``append``), so
        its time is later than ``as_of_us``.

        With ``at`` None (now): ``as_of_us`` is the clock's reading, or the head's time if
        that is later, and the events up to ``seq`` are exactly those at or before it.
        With ``at`` given (a past time): ``as_of_us`` is ``at``; the events at or before it
        are a prefix of the ledger that no later append can change.
        """
        h = schema.ledger_head.c
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            row = conn.execute(
                select(h.seq, h.hash, h.at_us).where(h.id == 1).with_for_update()
            ).first()
            if row is None:
                raise NotInitialised(
                    "the store has no ledger yet", hint="run `consentry init` first"
                )
            seq, head_hash, head_us = int(row[0]), str(row[1]), int(row[2])
            as_of_us = max(to_us(clock()), head_us) if at is None else to_us(at)
            if head_us <= as_of_us:
                conn.execute(update(schema.ledger_head).where(h.id == 1).values(at_us=as_of_us + 1))
        if head_us <= as_of_us and self._expected_head == (seq, head_hash, head_us):
            # This process's own next append may still go the one-round-trip way (should
            # another fence or append come first, its guard fails and it takes the lock).
            self._expected_head = (seq, head_hash, as_of_us + 1)
        return seq, head_hash, as_of_us

    # -- reading --------------------------------------------------------------------------

    def head(self) -> tuple[int, str, int]:
        """(seq, hash, at_us) of the last event; ``at_us`` is the least time the next event
        can have: the last event's time, or later when a gate fenced the ledger (``fence``)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.ledger_head)).first()
        if row is None:
            raise NotInitialised("the store has no ledger yet", hint="run `consentry init` first")
        return row.seq, row.hash, row.at_us

    def events(
        self,
        *,
        after_seq: int = 0,
        until_us: int | None = None,
        upto_seq: int | None = None,
        subjects: Sequence[str] | None = None,
        accounts: Sequence[str] | None = None,
        kinds: Sequence[Kind] | None = None,
        conn: Connection | None = None,
    ) -> Iterator[Event]:
        """Events in ``seq`` order, filtered; subjects/accounts/kinds filters are OR-ed."""
        e = schema.events.c
        query = select(schema.events).where(e.seq > after_seq).order_by(e.seq)
        if until_us is not None:
            query = query.where(e.at_us <= until_us)
        if upto_seq is not None:
            query = query.where(e.seq <= upto_seq)
        ors = []
        if subjects is not None:
            ors.append(e.subject.in_(list(subjects)))
        if accounts is not None:
            ors.append(e.account.in_(list(accounts)))
        if kinds is not None:
            ors.append(e.kind.in_([str(k) for k in kinds]))
        if ors:
            query = query.where(or_(*ors))
        if conn is not None:
            for row in conn.execute(query):
                yield _from_row(row._mapping)
            return
        with self.engine.connect() as own:
            result = own.execution_options(yield_per=5000).execute(query)
            for row in result:
                yield _from_row(row._mapping)

    def payloads(self, kind: Kind, *, after: int = 0, until: int | None = None) -> list[Any]:
        """The stored payload text of every event of ``kind`` (with ``after`` < seq <=
        ``until``), in ``seq`` order, read without parsing anything else of the rows (so that
        a tampered time or id does not stop it)."""
        e = schema.events.c
        until = (1 << 62) if until is None else until
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # as bytes: SQLite keeps whatever was written to a TEXT column, UTF-8 or not
                rows = conn.exec_driver_sql(
                    "SELECT CAST(payload AS BLOB) FROM events WHERE kind = ? AND seq > ? "
                    "AND seq <= ? ORDER BY seq",
                    (str(kind), after, until),
                )
                return [None if r[0] is None else r[0].decode("utf-8", "replace") for r in rows]
            query = (
                select(e.payload)
                .where(e.kind == str(kind), e.seq > after, e.seq <= until)
                .order_by(e.seq)
            )
            return [row[0] for row in conn.execute(query)]

    def recent(
        self, *, limit: int, subject: str | None = None, account: str | None = None
    ) -> list[Event]:
        """The last ``limit`` events matching both filters (a None filter matches all),
        oldest first."""
        e = schema.events.c
        query = select(schema.events).order_by(e.seq.desc()).limit(limit)
        if subject is not None:
            query = query.where(e.subject == subject)
        if account is not None:
            query = query.where(e.account == account)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_from_row(row._mapping) for row in reversed(rows)]

    def event(self, ref: str | int) -> Event:
        """One event by id (UUID) or by ``seq``."""
        refuse_bad_text(str(ref), "event")
        e = schema.events.c
        where = e.seq == int(ref) if str(ref).isdigit() else e.id == str(ref)
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.events).where(where)).first()
        if row is None:
            raise NotFound(
                f"no event {ref!r} in the ledger", hint="`consentry log` lists the events"
            )
        return _from_row(row._mapping)

    def event_ids(self, seqs: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.events.c.seq, schema.events.c.id).where(
                    schema.events.c.seq.in_(wanted)
                )
            )
            return {r.seq: r.id for r in rows}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.events)).scalar_one())

    # -- verification ---------------------------------------------------------------------

    def verify(self, mac_key: bytes | None = None, *, workers: int | None = 1) -> VerifyResult:
        """Recompute the chain; name the first event that was changed, deleted, inserted,
        reordered or appended by anyone but the store's writers.

        With ``mac_key`` (derived from the log key), every event from the store's first
        ``keys.registered`` event on must carry a valid MAC: an event forged with direct
        database access, correctly hashed and chained, still fails here.

        The checks are :func:`consentry.ledger.verifying.verify`'s (``workers``: processes).
        """
        self.head()  # NotInitialised before anything else
        chain, _state = verifying.verify(self.engine, mac_key, state=False, workers=workers)
        return VerifyResult(
            chain.ok,
            chain.checked,
            chain.head_seq,
            chain.head_hash,
            chain.problem,
            chain.seq,
            chain.event_id,
        )

    def _raw_events(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Event rows as plain tuples (``_RAW_COLUMNS``), in ``seq`` order, streamed from the
        driver's own cursor: verification reads millions, so no per-row objects."""
        sql = f"SELECT {_RAW_COLUMNS} FROM events WHERE seq > {int(after_seq)}"
        if upto_seq is not None:
            sql += f" AND seq <= {int(upto_seq)}"
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            # PostgreSQL: a server-side cursor, so that millions of rows are not held at once.
            postgres = self.backend == "postgresql"
            cursor = driver.cursor(name="consentry_events") if postgres else driver.cursor()
            cursor.execute(sql + " ORDER BY seq")
            while True:
                rows = cursor.fetchmany(20_000)
                if not rows:
                    break
                yield from rows
            cursor.close()
        finally:
            raw.close()

    def leaf_data(
        self, after_seq: int = 0, upto_seq: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """(seq, id, canonical body) of each event as stored: what the transparency log's
        leaves hash. Read as verification reads them (see ``_raw_events``)."""
        for row in self._raw_events(after_seq, upto_seq):
            yield row[0], row[1], body_text(row).encode("utf-8")


_RAW_COLUMNS = (
    "seq, id, at, at_us, kind, actor, subject, account, purpose, categories, status, "
    "policy_version, notice_version, language, method, payload, idempotency_key, "
    "prev_hash, hash, nonce, commitment, mac"
)


# The body's canonical JSON (events.BODY_JSON); a row's categories and payload are spliced as
# stored (the ledger stores them in canonical form; any other form fails the hash).
_BODY = BODY_JSON
_q = json_string


def _as_clock(now: Clock | datetime) -> Clock:
    if isinstance(now, datetime):
        return lambda: now
    return now


def _event_from(
    draft: Draft,
    seq: int,
    event_id: str,
    at: datetime,
    at_text: str,
    at_us: int,
    prev_hash: str,
    event_hash: str,
) -> Event:
    """``Event(**draft fields, seq=..., ...)`` without the dataclass constructor, which took
    4 to 7 µs of an event's ~60 µs on the write path (the leader spends it holding the GIL
    while its group waits): the draft's fields are copied as they are (a frozen dataclass
    without slots keeps them in ``__dict__``)."""
    event = object.__new__(Event)
    fields = vars(event)
    fields.update(vars(draft))
    fields.update(
        seq=seq,
        id=event_id,
        at=at,
        at_text=at_text,
        at_us=at_us,
        prev_hash=prev_hash,
        hash=event_hash,
    )
    return event


def _from_row(row: Any) -> Event:
    return Event(
        kind=Kind(row["kind"]),
        actor=row["actor"],
        subject=row["subject"],
        account=row["account"],
        purpose=row["purpose"],
        categories=tuple(json.loads(row["categories"] or "[]")),
        status=row["status"],
        policy_version=row["policy_version"],
        notice_version=row["notice_version"],
        language=row["language"],
        method=row["method"],
        payload=json.loads(row["payload"]),
        idempotency_key=row["idempotency_key"],
        seq=row["seq"],
        id=row["id"],
        at=parse_time(row["at"]),
        at_text=row["at"],
        at_us=row["at_us"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        nonce=row["nonce"],
        commitment=row["commitment"] or "",
        mac=row["mac"],
    )
