"""``ledger verify`` in one pass over the events, split over processes.

Each event row is read once and checked for everything at once: its place in the chain
(``seq`` continuity, ``prev_hash``), the commitment to its personal fields, its body hash, its
time (``at`` against ``at_us``) and its MAC; and it is replayed through
:func:`consentry.ledger.events.state_changes` for the state audit (the last change of each
state key). Before, the chain's check and the state audit each read and decoded every event.

On SQLite, with more than one CPU and enough events, the ``seq`` range is split into chunks,
one per process (the caller's process takes the first; the others are forked and read through
their own connections: WAL readers do not block each other). Each chunk's checks need nothing
from the others but the stored ``prev_hash`` of its first event, so the parent checks the
boundaries (continuity and chaining) and takes the smallest failing ``seq`` over the chunks:
the same event, with the same message, that one process going through in order would name.
The MAC rule (required from the first ``keys.registered`` event on) spans chunks: a chunk
reports the first bad MAC before its own first ``keys.registered`` event separately, and it
counts only when an earlier chunk registered the keys. The state replay is a map-reduce: each
chunk returns the last change per key, the parent applies them in chunk order (a later change,
a removal included, wins) and compares with the tables as :mod:`~consentry.ledger.audit`
does. PostgreSQL, and a process with other threads running (forking one is unsafe), use the
same pass in one process.

On SQLite (whose JSON functions write exactly what the ledger writes: ``sql_checks``), the
per-row work moves into C: :mod:`~consentry.ledger.chain_sql` has SQLite build each event's
canonical texts and Python only hash and compare whole columns (:func:`scan_sql`; a batch
that does not pass whole is scanned again by :func:`scan`, for the same verdict and words),
and the state audit is SQL over the events (:mod:`~consentry.ledger.state_sql`, with the
Python replay as its reference and fallback), run by the caller in its final snapshot while
the forked processes check their chunks. PostgreSQL keeps the Python pass described above.

Every forked process has a deadline: the parent waits for its result at most ``timeout``
seconds in all, kills it on failure, and raises :class:`VerifyFailed` (a
:class:`~consentry.errors.ConsentryError`) saying what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import marshal
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import Engine

from ..errors import ConsentryError
from ..times import format_time, from_us
from . import audit, chain_sql, schema
from .events import (
    _COMMITMENT_PREFIX,
    BODY_JSON,
    GENESIS_HASH,
    PERSONAL_JSON,
    Event,
    Kind,
    state_changes,
)

#: Below this many events one process does it all (forking and merging cost more).
MIN_EVENTS_PER_PROCESS = 50_000
#: The caller's chunk, as a share of an equal split (see ``plan``). On SQLite the caller also
#: runs the state audit in SQL (about 0.7 of the chain's CPU per event, measured at 210,572
#: events: 1.6 s against 2.3 s for the chain), so with two processes it balances when the
#: caller takes about 15% of the chain: x*C + S = (1-x)*C gives x = (1 - S/C) / 2. (It was
#: 0.6 when the state was a Python replay in every chunk; then the caller waited.)
PARENT_SHARE = 0.3
#: How long the parent waits for a forked process's result, by default (seconds).
DEFAULT_TIMEOUT = 3600.0

_FETCH = 10_000
_KEYS_KIND = str(Kind.KEYS_REGISTERED)

#: The event columns read, in this order (the ``Ledger._raw_events`` columns).
COLUMNS = (
    "seq, id, at, at_us, kind, actor, subject, account, purpose, categories, status, "
    "policy_version, notice_version, language, method, payload, idempotency_key, "
    "prev_hash, hash, nonce, commitment, mac"
)


class VerifyFailed(ConsentryError):
    """A process verifying part of the ledger failed or did not answer in time."""


# -- one chunk --------------------------------------------------------------------------------


@dataclass
class Failure:
    """The first event of a chunk that fails a check (``position``: rows read up to it)."""

    position: int
    seq: int
    event_id: str | None
    problem: str


@dataclass
class Chunk:
    """What one pass over a run of events found."""

    rows: int = 0
    first: tuple[int, str, str] | None = None  # seq, id, prev_hash of its first event
    last: tuple[int, str] | None = None  # seq, hash of its last event
    failure: Failure | None = None  # the first failure that counts whatever came before
    #: the first bad MAC before the chunk's first keys.registered event: it counts only if an
    #: earlier chunk registered the keys
    mac_if_keyed: Failure | None = None
    keys_seq: int | None = None  # the chunk's first keys.registered event
    implied: audit.Implied = field(default_factory=dict)
    replayed: int = 0
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    #: (seq, id, Merkle leaf hash) of every row, when asked for (``ledger verify --since``)
    leaves: list[tuple[int, str, bytes]] | None = None

    def to_bytes(self) -> bytes:
        def f(x: Failure | None) -> Any:
            return None if x is None else (x.position, x.seq, x.event_id, x.problem)

        return marshal.dumps(
            (
                self.rows,
                self.first,
                self.last,
                f(self.failure),
                f(self.mac_if_keyed),
                self.keys_seq,
                self.implied,
                self.replayed,
                self.unreadable,
                self.leaves,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Chunk:
        (rows, first, last, failure, mac, keys_seq, implied, replayed, unreadable, leaves) = (
            marshal.loads(data)
        )
        return cls(
            rows,
            first,
            last,
            None if failure is None else Failure(*failure),
            None if mac is None else Failure(*mac),
            keys_seq,
            implied,
            replayed,
            unreadable,
            leaves,
        )


def mac_function(key: bytes) -> Any:
    """``lambda h: events.event_mac(key, h)``, faster: HMAC-SHA-256 from the key's inner and
    outer states, hashed once (RFC 2104), instead of setting up an HMAC per event."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    inner_copy, outer_copy = inner.copy, outer.copy

    def mac(event_hash: str) -> str:
        i = inner_copy()
        i.update(event_hash.encode("ascii"))
        o = outer_copy()
        o.update(i.digest())
        return o.hexdigest()

    return mac


def _at_us_slow(at: Any) -> int:
    from .rows import at_us_of as _at_us

    try:
        return _at_us(at)
    except (TypeError, AttributeError):
        return -1


def scan(
    batches: Iterator[Sequence[tuple[Any, ...]]],
    *,
    mac_key: bytes | None,
    state_upto: int | None,
    state: bool = True,
    expected: tuple[int, str] | None = None,
    leaves: bool = False,
    keyed: bool = False,
) -> Chunk:
    """Check and replay the event rows of ``batches`` (``COLUMNS``, in ``seq`` order).

    ``expected``: (seq, prev_hash) the first row must have; None for a chunk whose start the
    caller checks (then the first row is taken as it is). Only events up to ``state_upto``
    (all when None) are replayed for the state. ``leaves``: also the transparency log's leaf
    of every row (``merkle.leaf_hash`` of the body bytes the chain hash covers). After the
    first failure the chain is no longer checked, but the replay goes on (the state audit
    reports what it finds regardless), and so do the leaves. ``keyed``: an earlier event
    registered the keys (a bad MAC fails at once).
    """
    from .rows import body_text

    chunk = Chunk()
    leaf_list: list[tuple[int, str, bytes]] | None = [] if leaves else None
    chunk.leaves = leaf_list
    implied: audit.Implied = {name: {} for name in schema.STATE_TABLES}
    chunk.implied = implied
    columns = {name: audit.value_columns(name) for name in schema.STATE_TABLES}
    unreadable = chunk.unreadable
    kinds = audit._KINDS
    categories_seen: dict[Any, Any] = {}
    empty = audit._EMPTY
    event = object.__new__(Event)
    fields = vars(event)
    # No state depends on these (nor can: a replayed event has no time but at_us, no place in
    # the chain but seq): not parsed, not copied.
    fields.update(at=None, prev_hash="", hash="")
    fill = fields.update
    enc = encode_basestring
    body_template = _BODY
    personal_template = _PERSONAL
    prefix = _COMMITMENT_PREFIX
    fromhex = bytes.fromhex
    sha256 = hashlib.sha256
    compare_digest = hmac.compare_digest
    mac_of = mac_function(mac_key) if mac_key is not None else None
    seconds: dict[int, str | None] = {}  # the text of each second seen: "YYYY-MM-DDTHH:MM:SS."
    keys_kind = _KEYS_KIND
    limit = state_upto if state_upto is not None else 1 << 62

    chain = True  # still checking the chain (no failure yet)
    # keyed: a keys.registered event was seen (in this chunk, or before it: the argument)
    rows = 0
    if expected is not None:
        expected_seq, prev_hash = expected
    else:
        expected_seq, prev_hash = -1, ""
    seq = 0
    row_hash = ""

    def fail(problem: str, seq: int, event_id: str | None) -> None:
        nonlocal chain
        chunk.failure = Failure(rows, seq, event_id, problem)
        chain = False

    for batch in batches:
        for row in batch:
            (
                seq,
                event_id,
                at,
                at_us,
                kind,
                actor,
                subject,
                account,
                purpose,
                categories,
                status,
                policy_version,
                notice_version,
                language,
                method,
                payload,
                idempotency_key,
                row_prev,
                row_hash,
                nonce,
                commitment,
                mac,
            ) = row
            rows += 1
            body = None
            if chain:
                if rows == 1:
                    chunk.first = (seq, event_id, row_prev)
                    if expected is None:
                        expected_seq, prev_hash = seq, row_prev
                if seq != expected_seq:
                    if seq > expected_seq:
                        fail(
                            f"event #{expected_seq} is missing: the ledger jumps from "
                            f"#{expected_seq - 1} to #{seq} ({event_id}) — an event was deleted",
                            expected_seq,
                            event_id,
                        )
                    else:  # pragma: no cover - seq is the primary key
                        fail(f"event #{seq} ({event_id}) appears twice", seq, event_id)
                elif row_prev != prev_hash:
                    fail(
                        f"event #{seq} ({event_id}) does not chain to event #{seq - 1}: an "
                        "event was inserted, reordered, or changed and re-hashed here",
                        seq,
                        event_id,
                    )
                else:
                    if nonce is not None:
                        try:
                            committed = sha256(
                                prefix
                                + fromhex(nonce)
                                + (
                                    personal_template
                                    % (
                                        "null" if actor is None else enc(actor),
                                        "null" if idempotency_key is None else enc(idempotency_key),
                                        "null" if subject is None else enc(subject),
                                    )
                                ).encode("utf-8")
                            ).hexdigest()
                        except ValueError:
                            committed = ""  # a nonce that is not hex commits to nothing
                        if committed != commitment:
                            fail(
                                f"event #{seq} ({event_id}) was changed: its subject, actor or "
                                "idempotency key no longer matches its commitment",
                                seq,
                                event_id,
                            )
                    if chain:
                        body = body_template % (
                            "null" if account is None else enc(account),
                            enc(at),
                            categories or "[]",
                            "null" if commitment is None else enc(commitment),
                            enc(event_id),
                            enc(kind),
                            "null" if language is None else enc(language),
                            "null" if method is None else enc(method),
                            "null" if notice_version is None else enc(notice_version),
                            payload,
                            "null" if policy_version is None else enc(policy_version),
                            "null" if purpose is None else enc(purpose),
                            seq,
                            "null" if status is None else enc(status),
                        )
                        try:
                            same = (
                                sha256(f"{row_prev}\n{body}".encode()).hexdigest() == row_hash
                                and row_prev.isascii()
                            )
                        except UnicodeEncodeError:  # text that was not UTF-8 in the database
                            same = False
                        if same and type(at_us) is not int:
                            same = False  # (a time that is no number: not the ledger's)
                        if same:
                            # at_us is the time at says: cheap when at is written as the
                            # ledger writes it; else parsed, as the ledger would read it
                            second, micros = divmod(at_us, 1_000_000)
                            text = seconds.get(second, "")
                            if text == "":
                                if len(seconds) > 100_000:
                                    seconds.clear()
                                text = format_time(from_us(second * 1_000_000))[:20]
                                seconds[second] = text = text if len(text) == 20 else None
                            if text is None or at != f"{text}{micros:06d}Z":
                                same = _at_us_slow(at) == at_us
                        if not same:
                            fail(
                                f"event #{seq} ({event_id}) was changed: its content no longer "
                                "matches its hash",
                                seq,
                                event_id,
                            )
                    if chain and mac_of is not None:
                        if kind == keys_kind and not keyed:
                            keyed = True
                            chunk.keys_seq = seq
                        try:
                            good = mac is not None and compare_digest(mac, mac_of(row_hash))
                        except (TypeError, UnicodeEncodeError):
                            good = False
                        if not good:
                            failure = (
                                f"event #{seq} ({event_id}) is correctly chained but carries "
                                "no valid MAC: it was not written by this store (forged with "
                                "database access), or the log key was replaced"
                            )
                            if keyed:
                                fail(failure, seq, event_id)
                            elif chunk.mac_if_keyed is None:
                                chunk.mac_if_keyed = Failure(rows, seq, event_id, failure)
                    elif chain and kind == keys_kind and not keyed:
                        keyed = True
                        chunk.keys_seq = seq
                    if chain:
                        prev_hash, expected_seq = row_hash, expected_seq + 1
                        chunk.last = (seq, row_hash)
            if leaf_list is not None:
                text = body if body is not None else body_text(row)
                data = text.encode("utf-8", "surrogateescape")  # the bytes as stored
                leaf_list.append((seq, event_id, sha256(b"\x00" + data).digest()))
            if state and seq <= limit:
                chunk.replayed += 1
                cats = categories_seen.get(categories)
                if cats is None:
                    cats = audit.decode_categories(categories, categories_seen)
                fill(
                    seq=seq,
                    id=event_id,
                    at_text=at,
                    at_us=at_us,
                    kind=kinds.get(kind, kind),  # an unknown kind: state_changes says so
                    actor=actor,
                    subject=subject,
                    account=account,
                    purpose=purpose,
                    categories=cats,
                    status=status,
                    policy_version=policy_version,
                    notice_version=notice_version,
                    language=language,
                    method=method,
                    payload=empty if payload == "{}" else audit._loads(payload),
                    idempotency_key=idempotency_key,
                )
                try:
                    changes = state_changes(event)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    unreadable.append((seq, str(exc) or type(exc).__name__))
                    continue
                for table, key, values in changes:
                    implied[table][key] = (
                        None if values is None else key + tuple(map(values.get, columns[table]))
                    )
    chunk.rows = rows
    return chunk


# The canonical JSON of an event body and of the personal fields, spliced (events.py).
_BODY = BODY_JSON
_PERSONAL = PERSONAL_JSON


# -- reading ----------------------------------------------------------------------------------


def _batches(cursor: Any) -> Iterator[Sequence[tuple[Any, ...]]]:
    while True:
        rows = cursor.fetchmany(_FETCH)
        if not rows:
            return
        yield rows


def _sqlite_batches(cursor: Any, lo: int, hi: int | None) -> Iterator[Sequence[tuple[Any, ...]]]:
    """The rows ``lo < seq <= hi`` on SQLite, ``_FETCH`` seqs at a time. SQLite keeps whatever
    bytes were written to a TEXT column: a range holding text that is not UTF-8 (written
    around the store: the ledger writes only ``str``) is read again with such bytes decoded
    as lone surrogates (``surrogateescape``), which no JSON text the ledger hashed can hold,
    so that :func:`scan` names the event as changed instead of the driver raising."""
    if hi is None:
        row = cursor.execute("SELECT max(seq) FROM events").fetchone()
        hi = max(lo, int(row[0] or 0))
    for a in range(lo, hi, _FETCH):
        yield _sqlite_rows(cursor, _select(a, min(a + _FETCH, hi)))


def _sqlite_rows(cursor: Any, sql: str) -> list[tuple[Any, ...]]:
    """``cursor.execute(sql).fetchall()``, reading text that is not UTF-8 (see
    :func:`_sqlite_batches`)."""
    try:
        return list(cursor.execute(sql).fetchall())
    except sqlite3.OperationalError:
        conn = cursor.connection
        factory = conn.text_factory
        conn.text_factory = _lenient_text
        try:
            return list(cursor.execute(sql).fetchall())
        finally:
            conn.text_factory = factory


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _select(lo: int, hi: int | None) -> str:
    sql = f"SELECT {COLUMNS} FROM events WHERE seq > {int(lo)}"
    if hi is not None:
        sql += f" AND seq <= {int(hi)}"
    return sql + " ORDER BY seq"


def _scan_range(
    conn: Any,
    lo: int,
    hi: int | None,
    *,
    postgres: bool,
    name: str,
    fast: bool = False,
    **options: Any,
) -> Chunk:
    """Scan the events ``lo < seq <= hi`` through a driver connection (a server-side cursor
    on PostgreSQL, so that millions of rows are not held at once; ``fast``: :func:`scan_sql`,
    without the state)."""
    if fast:
        return scan_sql(conn, lo, hi, **options)
    if postgres:
        cursor = conn.cursor(name=name)
        cursor.itersize = _FETCH
    else:
        cursor = conn.cursor()
    try:
        if not postgres:
            return scan(_sqlite_batches(cursor, lo, hi), **options)
        cursor.execute(_select(lo, hi))
        return scan(_batches(cursor), **options)
    finally:
        cursor.close()


def scan_sql(
    conn: Any,
    lo: int,
    hi: int | None,
    *,
    mac_key: bytes | None,
    expected: tuple[int, str] | None = None,
    leaves: bool = False,
    **_ignored: Any,
) -> Chunk:
    """:func:`scan` without the state replay, on SQLite, a batch at a time through
    :mod:`~consentry.ledger.chain_sql` (the texts built by SQLite, hashed and compared in C).
    A batch that does not pass there whole is scanned again by :func:`scan` from the raw
    columns, carrying on from where the batches before it ended: the same failure, at the
    same place, in the same words. After the first failure only the leaves are made."""
    cursor = conn.cursor()
    try:
        if hi is None:  # everything after lo (the caller's snapshot holds the head)
            row = cursor.execute("SELECT max(seq) FROM events").fetchone()
            hi = max(lo, int(row[0] or 0))
        chunk = Chunk(leaves=[] if leaves else None)
        keyed = False
        for a in range(lo, hi, chain_sql.BATCH):
            b = min(a + chain_sql.BATCH, hi)
            if chunk.failure is not None:  # the chain is decided: the rows, and the leaves
                if leaves:
                    data = cursor.execute(chain_sql.SELECT_LEAVES, (a, b)).fetchall()
                    _add_leaves(chunk, *zip(*data, strict=True)) if data else None
                    chunk.rows += len(data)
                else:
                    row = cursor.execute(
                        "SELECT count(*) FROM events WHERE seq > ? AND seq <= ?", (a, b)
                    ).fetchone()
                    chunk.rows += int(row[0])
                continue
            batch = chain_sql.check_batch(
                cursor, a, b, expected=expected, mac_key=mac_key, leaves=leaves
            )
            if batch.rows == 0:
                continue  # (-1: SQLite could not build the texts: scanned below)
            if batch.ok:
                part = Chunk(rows=batch.rows, last=(b, batch.last_hash), keys_seq=batch.keys_seq)
                if chunk.first is None:
                    first_id = cursor.execute(
                        "SELECT id FROM events WHERE seq = ?", (a + 1,)
                    ).fetchone()[0]
                    part.first = (a + 1, first_id, batch.first_prev)
                if leaves:
                    part.leaves = []
                    _add_leaves(part, range(a + 1, b + 1), batch.ids, batch.bodies)
            else:
                part = scan(
                    iter([_sqlite_rows(cursor, _select(a, b))]),
                    mac_key=mac_key,
                    state_upto=None,
                    state=False,
                    expected=expected,
                    leaves=leaves,
                    keyed=keyed,
                )
            _append(chunk, part)
            keyed = chunk.keys_seq is not None
            if chunk.last is not None:
                expected = (chunk.last[0] + 1, chunk.last[1])
        return chunk
    finally:
        cursor.close()


def _add_leaves(chunk: Chunk, seqs: Any, ids: Any, bodies: Any) -> None:
    assert chunk.leaves is not None
    chunk.leaves.extend(zip(seqs, ids, chain_sql.leaf_hashes(bodies), strict=True))


def _append(chunk: Chunk, part: Chunk) -> None:
    """Add the verdict on the rows that follow ``chunk``'s (``part``, scanned with the
    expected start and ``keyed`` state that ``chunk`` ended with)."""
    shift = chunk.rows

    def moved(f: Failure | None) -> Failure | None:
        return None if f is None else replace(f, position=f.position + shift)

    if chunk.first is None:
        chunk.first = part.first
    if chunk.failure is None and part.failure is not None:
        chunk.failure = moved(part.failure)
    if chunk.mac_if_keyed is None and chunk.keys_seq is None:
        chunk.mac_if_keyed = moved(part.mac_if_keyed)
    if chunk.keys_seq is None:
        chunk.keys_seq = part.keys_seq
    if part.last is not None and chunk.failure is None:
        chunk.last = part.last
    chunk.rows += part.rows
    if chunk.leaves is not None:
        chunk.leaves.extend(part.leaves or ())


def _child(
    url: str,
    lo: int,
    hi: int,
    mac_key: bytes | None,
    state: bool,
    leaves: bool,
    out: Any,
    fast: bool = False,
) -> None:
    """A forked process: scan one chunk through a connection of its own, send the result."""
    import gc

    gc.disable()
    try:
        from .engine import make_engine

        engine = make_engine(url)
        raw = engine.raw_connection()
        try:
            postgres = engine.dialect.name == "postgresql"
            chunk = _scan_range(
                raw.driver_connection,
                lo,
                hi,
                postgres=postgres,
                name=f"consentry_verify_{lo}",
                fast=fast,
                mac_key=mac_key,
                state_upto=hi,
                state=state,
                leaves=leaves,
            )
        finally:
            raw.close()
            engine.dispose()
        out.send_bytes(b"ok" + chunk.to_bytes())
    except BaseException as exc:
        with contextlib.suppress(Exception):  # else the parent sees the pipe closed
            out.send_bytes(b"er" + f"{type(exc).__name__}: {exc}".encode())
    finally:
        out.close()


# -- the whole ledger -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainOutcome:
    """The chain's verdict (the fields of ``VerifyResult``)."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    seq: int | None = None
    event_id: str | None = None
    #: (seq, id, leaf hash) of every event row, in seq order, when asked for
    leaves: list[tuple[int, str, bytes]] | None = field(default=None, repr=False, compare=False)


def plan(head_seq: int, processes: int, chunk_events: int | None) -> list[tuple[int, int]]:
    """The ``(lo, hi]`` seq ranges of the chunks, the first for the caller's process.

    By default the caller's chunk is smaller (``PARENT_SHARE`` of an equal share): after it,
    the caller still merges the others' results and compares the state tables, while the
    forked processes are done once they have sent their chunk."""
    if processes <= 1 or head_seq <= 0:
        return []
    if chunk_events is not None:
        bounds = [*range(0, head_seq, max(1, chunk_events)), head_seq]
    else:
        first = max(1, int(head_seq / processes * PARENT_SHARE))
        rest = -(-(head_seq - first) // (processes - 1))
        bounds = [0, *range(first, head_seq, max(1, rest)), head_seq]
    return list(itertools.pairwise(bounds))


def sql_checks(engine: Engine) -> bool:
    """Whether to check the chain with :mod:`~consentry.ledger.chain_sql` and the state with
    :mod:`~consentry.ledger.state_sql`: on SQLite whose JSON and time functions write exactly
    what the ledger writes (PostgreSQL: the Python pass)."""
    if engine.dialect.name != "sqlite" or not USE_SQL:
        return False
    raw = engine.raw_connection()
    try:
        return chain_sql.usable(raw.driver_connection)
    finally:
        raw.close()


#: The chain's checks through chain_sql on SQLite (False: the Python pass; tests compare the
#: two). Alternated under the benchmark lock at load 1.5 (docs/performance.md), chain_sql took
#: 2.23 and 2.45 s (4.3 and 4.5 CPU-s) for Store.verify() at 210,572 events against 2.30 and
#: 2.67 s (4.4 and 4.6) for the Python pass; 11.4 s (20.8 CPU-s) against 12.9 s (24.2) at
#: 1,052,750; and its peak memory is lower (88 MB against 107 MB).
USE_SQL = True
#: The state audit as SQL over the events on SQLite (state_sql): 1.34 CPU-seconds against
#: 3.13 for the Python replay at 210,572 events.
USE_SQL_STATE = True


def processes_for(engine: Engine, events: int, workers: int | None) -> int:
    """How many processes to use. ``workers`` given: that many (1: this process only), on
    either backend, even with other threads running (the caller asked; a child stuck on a lock
    another thread held at the fork misses its deadline and the verification fails, typed). By
    default: on SQLite one per CPU, for at least ``MIN_EVENTS_PER_PROCESS`` events each; one on
    PostgreSQL; and one whenever other threads are running in this process (forking them is
    unsafe: a lock held by another thread stays held in the child)."""
    if workers is not None and workers <= 1:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if workers is None and threading.active_count() > 1:
        return 1
    if engine.dialect.name == "sqlite" and str(engine.url.database or "") in ("", ":memory:"):
        return 1  # an in-memory database is this process's alone
    if workers is not None:
        return workers
    if engine.dialect.name != "sqlite":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, events // MIN_EVENTS_PER_PROCESS))


def verify(
    engine: Engine,
    mac_key: bytes | None,
    *,
    state: bool = True,
    workers: int | None = None,
    chunk_events: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    leaves: bool = False,
) -> tuple[ChainOutcome, audit.AuditResult | None]:
    """Verify the chain (and, with ``state``, audit the state tables) in one pass; with
    ``leaves``, also recompute the transparency log's leaves (``ChainOutcome.leaves``).

    ``workers``: processes to use (default: see :func:`processes_for`; 1: this process only);
    ``chunk_events``: events per chunk (default: an equal share per process; tests make it
    small to put chunk boundaries where they want). ``timeout``: how long to wait for the
    forked processes, in all.
    """
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT seq FROM ledger_head WHERE id = 1").first()
    planned_head = int(row[0]) if row is not None else 0
    processes = processes_for(engine, planned_head, workers)
    chunks = plan(planned_head, processes, chunk_events) if processes > 1 else []
    fast = sql_checks(engine)
    sql_state = engine.dialect.name == "sqlite" and USE_SQL_STATE
    started = time.monotonic()
    children: list[tuple[Any, Any]] = []
    results: list[Chunk] = []
    try:
        if chunks:
            ctx = multiprocessing.get_context("fork")
            url = engine.url.render_as_string(hide_password=False)
            for lo, hi in chunks[1:]:
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(
                    target=_child,
                    args=(url, lo, hi, mac_key, state and not sql_state, leaves, send, fast),
                    name=f"consentry-verify-{lo}",
                    daemon=True,
                )
                process.start()
                send.close()
                children.append((process, receive))
            first_lo, first_hi = chunks[0]
            raw = engine.raw_connection()
            try:
                with audit._no_gc():
                    results.append(
                        _scan_range(
                            raw.driver_connection,
                            first_lo,
                            first_hi,
                            postgres=engine.dialect.name == "postgresql",
                            name="consentry_verify_0",
                            fast=fast,
                            mac_key=mac_key,
                            state_upto=first_hi,
                            state=state and not sql_state,
                            expected=(1, GENESIS_HASH),
                            leaves=leaves,
                        )
                    )
            finally:
                raw.close()

        def collect() -> list[Chunk]:
            for process, receive in children:
                results.append(_receive(process, receive, started + timeout))
            return results

        return _finish(engine, mac_key, state, collect, chunks, leaves, fast, sql_state)
    finally:
        for process, receive in children:
            receive.close()
            if process.is_alive():
                process.kill()
            process.join(5)


def _receive(process: Any, receive: Any, deadline: float) -> Chunk:
    remaining = max(0.0, deadline - time.monotonic())
    if not receive.poll(remaining):
        process.kill()
        raise VerifyFailed(
            f"a process verifying part of the ledger ({process.name}) did not answer in time",
            hint="verify again; give it more time, or fewer events per process",
        )
    try:
        data = receive.recv_bytes()
    except EOFError:
        process.join(5)
        raise VerifyFailed(
            f"a process verifying part of the ledger ({process.name}) ended without an answer "
            f"(exit code {process.exitcode})",
            hint="verify again; with --workers 1 it runs in one process",
        ) from None
    if data[:2] != b"ok":
        raise VerifyFailed(
            f"a process verifying part of the ledger ({process.name}) failed: "
            f"{data[2:].decode(errors='replace')}",
            hint="verify again; with --workers 1 it runs in one process",
        )
    with audit._no_gc():
        return Chunk.from_bytes(data[2:])


def _finish(
    engine: Engine,
    mac_key: bytes | None,
    state: bool,
    collect: Callable[[], list[Chunk]],
    chunks: list[tuple[int, int]],
    leaves: bool = False,
    fast: bool = False,
    sql_state: bool = False,
) -> tuple[ChainOutcome, audit.AuditResult | None]:
    """Join the chunks' verdicts (``collect`` waits for them), scan what came after them (or
    everything, in one process) and compare the state tables, in one snapshot that holds the
    head. With forked processes still at work, the tables are read (``fast``: the state is
    audited in SQL, see :mod:`~consentry.ledger.state_sql`) while waiting for them."""
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin(), audit._no_gc():
            row = conn.exec_driver_sql("SELECT seq, hash FROM ledger_head WHERE id = 1").first()
            head_seq, head_hash = (int(row[0]), str(row[1])) if row is not None else (0, "")
            stored = (
                audit.read_tables(conn) if state and not sql_state and len(chunks) > 1 else None
            )
            audited = (
                audit.audit_connection(conn, head_seq=head_seq) if state and sql_state else None
            )
            results = collect()
            planned = chunks[-1][1] if chunks else 0
            if head_seq < planned:  # the head went back (tampered): start over in one pass
                results, chunks, planned = [], [], 0
            driver = conn.connection.dbapi_connection
            # The chain through the chunks, in order, until the first failure.
            expected_seq, prev_hash, checked, keyed = 1, GENESIS_HASH, 0, False
            failure: tuple[int, int, str | None, str] | None = None  # checked, seq, id, problem
            for chunk in results:
                if chunk.rows == 0:
                    continue
                assert chunk.first is not None
                seq, event_id, row_prev = chunk.first
                if seq != expected_seq:
                    failure = (
                        checked + 1,
                        expected_seq,
                        event_id,
                        f"event #{expected_seq} is missing: the ledger jumps from "
                        f"#{expected_seq - 1} to #{seq} ({event_id}) — an event was deleted",
                    )
                    break
                if row_prev != prev_hash:
                    failure = (
                        checked + 1,
                        seq,
                        event_id,
                        f"event #{seq} ({event_id}) does not chain to event #{seq - 1}: an event "
                        "was inserted, reordered, or changed and re-hashed here",
                    )
                    break
                found = chunk.failure
                late = chunk.mac_if_keyed  # counts once an earlier chunk registered the keys
                if keyed and late is not None and (found is None or late.position < found.position):
                    found = late
                if found is not None:
                    failure = (checked + found.position, found.seq, found.event_id, found.problem)
                    break
                keyed = keyed or chunk.keys_seq is not None
                assert chunk.last is not None
                checked += chunk.rows
                expected_seq, prev_hash = chunk.last[0] + 1, chunk.last[1]
            # Then the rest (everything, in one process), in this snapshot.
            cursor_name = "consentry_verify_rest"
            rest = _scan_range(
                driver,
                planned,
                None,
                postgres=postgres,
                name=cursor_name,
                fast=fast,
                mac_key=mac_key,
                state_upto=head_seq,
                state=state and not sql_state,
                expected=(expected_seq, prev_hash),
                leaves=leaves,
            )
            if failure is None:
                found = rest.failure
                late = rest.mac_if_keyed  # counts once an earlier chunk registered the keys
                if keyed and late is not None and (found is None or late.position < found.position):
                    found = late
                if found is not None:
                    failure = (checked + found.position, found.seq, found.event_id, found.problem)
                else:
                    checked += rest.rows
                    if rest.last is not None:
                        expected_seq, prev_hash = rest.last[0] + 1, rest.last[1]
            outcome = _outcome(failure, checked, expected_seq - 1, prev_hash, head_seq, head_hash)
            if leaves:
                every: list[tuple[int, str, bytes]] = []
                for chunk in (*results, rest):
                    every.extend(chunk.leaves or ())
                outcome = replace(outcome, leaves=every)
            if not state:
                return outcome, None
            if audited is not None:
                return outcome, audited
            implied: audit.Implied = {name: {} for name in schema.STATE_TABLES}
            replayed = 0
            unreadable: list[tuple[int, str]] = []
            for chunk in (*results, rest):
                for name, changes in chunk.implied.items():
                    implied[name].update(changes)
                replayed += chunk.replayed
                unreadable.extend(chunk.unreadable)
            return outcome, audit.compare(conn, implied, replayed, head_seq, unreadable, stored)


def _outcome(
    failure: tuple[int, int, str | None, str] | None,
    checked: int,
    last: int,
    prev_hash: str,
    head_seq: int,
    head_hash: str,
) -> ChainOutcome:
    if failure is not None:
        n, seq, event_id, problem = failure
        return ChainOutcome(False, n, head_seq, head_hash, problem, seq, event_id)
    if last > head_seq:
        return ChainOutcome(
            False,
            checked,
            head_seq,
            head_hash,
            f"the ledger holds events #{head_seq + 1} to #{last} after its head (#{head_seq}): "
            "they were appended outside the store's writer",
            head_seq + 1,
            None,
        )
    if last < head_seq:
        return ChainOutcome(
            False,
            checked,
            head_seq,
            head_hash,
            f"the ledger ends at #{last} but its head records #{head_seq}: "
            f"events after #{last} were deleted",
            last + 1,
            None,
        )
    if prev_hash != head_hash:
        return ChainOutcome(
            False,
            checked,
            head_seq,
            head_hash,
            f"the head records hash {head_hash[:12]}… for #{head_seq}, but event #{last} "
            f"hashes to {prev_hash[:12]}…: the head or the last event was changed",
            last,
            None,
        )
    return ChainOutcome(True, checked, head_seq, head_hash)
