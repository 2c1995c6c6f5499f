"""The current-state tables checked against the chain: recompute them from the events and
report every row that differs; rebuild them from the chain.

The state tables (``schema.STATE_TABLES``) are a cache of what the events add up to, kept in
the append transaction. Decisions are made from them, so a row edited behind the ledger's back
(``update consents set status = 'given' ...``) would change decisions while the chain still
verifies. :func:`audit_state` replays every event through
:func:`consentry.ledger.events.state_changes` -- the one definition of what an event changes --
and compares the result with the tables, generically over ``STATE_TABLES``/``STATE_KEYS``.

Speed: events are read with the driver's own cursor (a server-side cursor on PostgreSQL), in
one snapshot with the tables; one :class:`~consentry.ledger.events.Event` is refilled from each
row (no dataclass constructor); the replay keeps one flat row tuple per key, and each table is
checked against those rows batch by batch in C. Only when something differs is the table read
again to say what, and the events replayed again to name the event behind each row.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from . import schema
from .events import STATE_KEYS, Event, Kind, state_changes

if TYPE_CHECKING:
    from .store import VerifyResult

#: The event columns a state change may depend on: every field of an Event but the chain's
#: hashes (none of today's kinds reads id, at, actor, language, method or the key, but reading
#: them keeps the audit right for a kind that will).
EVENT_COLUMNS = (
    "seq",
    "id",
    "at",
    "at_us",
    "kind",
    "actor",
    "subject",
    "account",
    "purpose",
    "categories",
    "status",
    "policy_version",
    "notice_version",
    "language",
    "method",
    "payload",
    "idempotency_key",
)
_FETCH = 20_000


class _Unreadable(tuple):  # type: ignore[type-arg]
    """Stands for a column whose JSON does not parse: any use of it fails."""

    def _fail(self, *_args: Any) -> Any:
        raise ValueError("a JSON column of the event does not parse")

    __iter__ = __bool__ = __len__ = __getitem__ = _fail


_UNREADABLE: Any = _Unreadable()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return _UNREADABLE


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Divergence:
    """One current-state row that is not what the chain implies.

    ``problem`` is ``"changed"`` (both have the row, ``fields`` differ), ``"missing"`` (the
    chain implies the row, the table lacks it) or ``"extra"`` (the table has a row the chain
    does not imply: never recorded, or removed by event ``seq``). ``stored`` and ``implied``
    are the rows' non-key columns (``None``: no such row); ``seq`` is the event the chain's
    value comes from (or that removed the row), ``None`` when no event touched the key.
    """

    table: str
    key: tuple[str, ...]
    problem: str
    stored: dict[str, Any] | None
    implied: dict[str, Any] | None
    seq: int | None
    fields: tuple[str, ...] = ()

    @property
    def place(self) -> str:
        return f"{self.table}[{', '.join(self.key)}]"

    def message(self) -> str:
        """One line that says what differs, e.g. ``consents[u0, ai.training, content.audio]:
        status is 'given' in the table, the chain says 'withdrawn' (event #12)``."""
        event = f" (event #{self.seq})" if self.seq is not None else ""
        if self.problem == "changed":
            assert self.stored is not None and self.implied is not None
            parts = [
                f"{f} is {_show(self.stored.get(f))} in the table, the chain says "
                f"{_show(self.implied.get(f))}"
                for f in self.fields
            ]
            return f"{self.place}: {'; '.join(parts)}{event}"
        if self.problem == "missing":
            return (
                f"{self.place}: missing from the table; the chain says it is "
                f"{_show_row(self.implied)}{event}"
            )
        if self.seq is not None:
            return (
                f"{self.place}: in the table as {_show_row(self.stored)}, but the chain removed "
                f"it{event}"
            )
        return (
            f"{self.place}: in the table as {_show_row(self.stored)}, but no event in the "
            "chain records it"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["key"] = list(self.key)
        data["fields"] = list(self.fields)
        data["message"] = self.message()
        return data


@dataclass(frozen=True)
class AuditResult:
    """The current-state tables compared with what the events up to ``head_seq`` imply."""

    ok: bool
    events: int  # events replayed
    head_seq: int
    rows: int  # rows of the state tables compared
    divergences: tuple[Divergence, ...] = ()
    #: Events ``state_changes`` could not read (seq, why): an unknown kind, broken JSON.
    unreadable: tuple[tuple[int, str], ...] = ()

    def summary(self) -> str | None:
        """None when clean; otherwise what is wrong, first of all."""
        if self.unreadable:
            seq, why = self.unreadable[0]
            more = len(self.unreadable) - 1
            return (
                f"event #{seq} cannot be replayed ({why}), so the state it implies is unknown"
                + (f"; and {more} more such events" if more else "")
            )
        return summary(self.divergences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head_seq": self.head_seq,
            "rows": self.rows,
            "divergences": [d.to_dict() for d in self.divergences],
            "unreadable": [{"seq": seq, "problem": why} for seq, why in self.unreadable],
        }


def summary(divergences: tuple[Divergence, ...]) -> str | None:
    """One line for a list of divergences (None when there are none)."""
    if not divergences:
        return None
    n = len(divergences)
    rows = "row differs" if n == 1 else "rows differ"
    return (
        f"{n} current-state {rows} from what the chain implies; first: {divergences[0].message()}"
    )


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _show_row(row: Mapping[str, Any] | None) -> str:
    if not row:
        return "{}"
    return "{" + ", ".join(f"{k}={_show(v)}" for k, v in row.items()) + "}"


# -- replaying the events -----------------------------------------------------------------------

_KINDS = {str(k): k for k in Kind}


#: table -> key -> the row the chain implies (key columns then value columns, in the table's
#: column order), or None when the chain removed it
Implied = dict[str, dict[tuple[str, ...], tuple[Any, ...] | None]]


def value_columns(table: str) -> tuple[str, ...]:
    """A state table's non-key columns, in table order."""
    keys = STATE_KEYS[table]
    return tuple(c.name for c in schema.STATE_TABLES[table].columns if c.name not in keys)


def replay(
    events: Iterable[Event], unreadable: list[tuple[int, str]] | None = None
) -> tuple[Implied, int]:
    """What the events imply for each state table (as flat rows), and how many events
    there were. An event ``state_changes`` cannot read (only a tampered one) is added to
    ``unreadable`` and skipped, or, without that list, raises.

    Each change becomes its row at once, and the event's dicts are dropped: holding a tuple
    per key, not a dict, is a third of the memory (and of the time a million events spent
    faulting in fresh pages); the rows are then compared with the table's as sets.
    """
    implied: Implied = {name: {} for name in schema.STATE_TABLES}
    columns = {name: value_columns(name) for name in schema.STATE_TABLES}
    n = 0
    for event in events:
        n += 1
        try:
            changes = state_changes(event)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if unreadable is None:
                raise
            unreadable.append((event.seq, str(exc) or type(exc).__name__))
            continue
        for table, key, values in changes:
            implied[table][key] = (
                None if values is None else key + tuple(map(values.get, columns[table]))
            )
    return implied, n


def events_of(cursor: Any) -> Iterator[Event]:
    """The events of an executed raw cursor (``EVENT_COLUMNS``, in ``seq`` order): the hot
    path of ``ledger verify``.

    For speed, one :class:`Event` object (made without the dataclass constructor) is refilled
    from each row: valid until the next one is read, which is all a replay needs
    (``state_changes`` keeps nothing of its event). The kind, the categories and an empty
    payload are looked up rather than parsed.
    """
    kinds = _KINDS
    categories_seen: dict[str, tuple[str, ...]] = {}
    empty = _EMPTY
    event = object.__new__(Event)
    fields = vars(event)
    fields.update(at=None, prev_hash="", hash="")  # no state depends on them: not read
    fill = fields.update
    while True:
        rows = cursor.fetchmany(_FETCH)
        if not rows:
            return
        for (
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
        ) in rows:  # EVENT_COLUMNS
            cats = categories_seen.get(categories)
            if cats is None:
                cats = decode_categories(categories, categories_seen)
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
                payload=empty if payload == "{}" else _loads(payload),
                idempotency_key=idempotency_key,
            )
            yield event


def sources(
    events: Iterable[Event], wanted: Mapping[str, set[tuple[str, ...]]]
) -> dict[tuple[str, tuple[str, ...]], int]:
    """The last event that changed each wanted (table, key): where a divergence's implied
    value comes from (a second pass, made only when something differs)."""
    found: dict[tuple[str, tuple[str, ...]], int] = {}
    for event in events:
        try:
            changes = state_changes(event)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # reported by the first pass
        for table, key, _values in changes:
            if key in wanted.get(table, ()):
                found[table, key] = event.seq
    return found


# -- comparing with the tables ------------------------------------------------------------------


def _select(table: str) -> str:
    return f"SELECT {', '.join((*STATE_KEYS[table], *value_columns(table)))} FROM {table}"


def matches(cursor: Any, table: str, rows: set[tuple[Any, ...]]) -> tuple[bool, int]:
    """Whether the table holds exactly ``rows``, read in batches and checked in C (a
    superset test per batch, then the counts: the primary key makes stored rows distinct);
    and how many rows it holds."""
    cursor.execute(_select(table))
    count, same = 0, True
    while True:
        batch = cursor.fetchmany(_FETCH)
        if not batch:
            return same and count == len(rows), count
        count += len(batch)
        if same and not rows.issuperset(batch):
            same = False


def differences(
    table: str, rows: set[tuple[Any, ...]], stored: set[tuple[Any, ...]]
) -> list[tuple[tuple[str, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]]:
    """(key, stored values, implied values) of each key whose rows differ (None: no row)."""
    k = len(STATE_KEYS[table])
    have = {r[:k]: r[k:] for r in stored - rows}
    want = {r[:k]: r[k:] for r in rows - stored}
    return [(key, have.get(key), want.get(key)) for key in sorted(have.keys() | want.keys())]


def divergence(
    table: str,
    key: tuple[str, ...],
    have: tuple[Any, ...] | None,
    want: tuple[Any, ...] | None,
    seq: int | None,
) -> Divergence:
    columns = value_columns(table)
    stored = None if have is None else dict(zip(columns, have, strict=True))
    implied = None if want is None else dict(zip(columns, want, strict=True))
    if have is None:
        return Divergence(table, key, "missing", None, implied, seq)
    if want is None:
        return Divergence(table, key, "extra", stored, None, seq)
    fields = tuple(c for c, a, b in zip(columns, have, want, strict=True) if a != b)
    return Divergence(table, key, "changed", stored, implied, seq, fields)


# -- the audit, in one snapshot -----------------------------------------------------------------


def audit_connection(conn: Connection, *, head_seq: int | None = None) -> AuditResult:
    """Audit through ``conn``, inside its open transaction (one snapshot: the caller sets
    REPEATABLE READ on PostgreSQL, or holds the head's lock). ``head_seq``: replay the events
    up to it (default: the head the transaction sees). On SQLite the check is SQL over the
    events (:mod:`~consentry.ledger.state_sql`), which hands over to this module's replay
    whatever it cannot decide; PostgreSQL replays."""
    if head_seq is None:
        row = conn.exec_driver_sql("SELECT seq FROM ledger_head WHERE id = 1").first()
        head_seq = int(row[0]) if row is not None else 0
    with _no_gc():
        if conn.dialect.name == "sqlite":
            from .state_sql import audit_sql  # SQL over the events; this replay its reference

            result = audit_sql(conn, head_seq)
            if result is not None:
                return result
        return _audit(conn, head_seq)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic collector off: a replay makes millions of long-lived tuples (none in a
    cycle), and collections walking them took a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _events_cursor(conn: Connection, head_seq: int) -> Iterator[Any]:
    """A raw cursor over the events up to ``head_seq`` (server-side on PostgreSQL: streams)."""
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        cursor = raw.cursor(name="consentry_audit_events")
        cursor.itersize = _FETCH
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
            f"WHERE seq <= {int(head_seq)} ORDER BY seq"
        )
        yield cursor
    finally:
        cursor.close()


def _audit(conn: Connection, head_seq: int) -> AuditResult:
    try:
        return _audit_once(conn, head_seq)
    except sqlite3.OperationalError:
        if conn.dialect.name != "sqlite":
            raise
    # Text that is not UTF-8 (written around the store; the chain check names the event):
    # audit again reading such bytes as lone surrogates, which match no stored state.
    raw: Any = conn.connection.dbapi_connection
    factory = raw.text_factory
    raw.text_factory = _lenient_text
    try:
        return _audit_once(conn, head_seq)
    finally:
        raw.text_factory = factory


def _audit_once(conn: Connection, head_seq: int) -> AuditResult:
    unreadable: list[tuple[int, str]] = []
    with _events_cursor(conn, head_seq) as cursor:
        implied, n = replay(events_of(cursor), unreadable)
    return compare(conn, implied, n, head_seq, unreadable)


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def read_tables(conn: Connection) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of each state table, as ``conn``'s transaction sees them (for ``compare``:
    read while waiting for something else)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        tables: dict[str, set[tuple[Any, ...]]] = {}
        for table in schema.STATE_TABLES:
            cursor.execute(_select(table))
            rows: set[tuple[Any, ...]] = set()
            while batch := cursor.fetchmany(_FETCH):
                rows.update(batch)
            tables[table] = rows
        return tables
    finally:
        cursor.close()


def compare(
    conn: Connection,
    implied: Implied,
    n: int,
    head_seq: int,
    unreadable: list[tuple[int, str]],
    stored_tables: dict[str, set[tuple[Any, ...]]] | None = None,
    *,
    seqs: Mapping[tuple[str, tuple[str, ...]], int] | None = None,
) -> AuditResult:
    """The state tables, as ``conn``'s transaction sees them at ``head_seq`` (or as
    ``stored_tables`` has them, from :func:`read_tables` in that transaction), compared with
    ``implied`` (what the ``n`` events up to ``head_seq`` imply). Only when something differs
    are the events read again (in ``conn``) to name the event behind each row, unless
    ``seqs`` already says which event last changed each (table, key)."""
    found: list[tuple[str, tuple[str, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]] = []
    stored_rows = 0
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for table in schema.STATE_TABLES:
            rows: set[Any]
            if stored_tables is not None:
                # Every implied row stored, and as many stored: the same set (rows are
                # distinct: each holds its key). Checked in C, without a set of the rows.
                stored = stored_tables[table]
                values = list(implied[table].values())
                count = len(stored)
                same = count == len(values) - values.count(None) and stored.issuperset(
                    filter(None, values)
                )
                if not same:
                    rows = set(filter(None, values))
            else:
                rows = set(implied[table].values())
                rows.discard(None)
                same, count = matches(cursor, table, rows)
            stored_rows += count
            if not same:
                if stored_tables is None:  # read it again, whole, to say what differs
                    cursor.execute(_select(table))
                    stored = set(cursor.fetchall())
                found.extend((table, *d) for d in differences(table, rows, stored))
    finally:
        cursor.close()
    if not found:
        return AuditResult(not unreadable, n, head_seq, stored_rows, (), tuple(unreadable))
    wanted: dict[str, set[tuple[str, ...]]] = {}
    for table, key, _have, _want in found:
        wanted.setdefault(table, set()).add(key)
    if seqs is None:
        with _events_cursor(conn, head_seq) as cursor:
            seqs = sources(events_of(cursor), wanted)
    divergences = tuple(
        divergence(table, key, have, want, seqs.get((table, key)))
        for table, key, have, want in found
    )
    return AuditResult(False, n, head_seq, stored_rows, divergences, tuple(unreadable))


def audit_state(engine: Any) -> AuditResult:
    """Recompute the current-state tables from the events and compare them (read-only)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return audit_connection(conn)


# -- rebuilding ---------------------------------------------------------------------------------


def _upsert(dialect: str, table_name: str, value_names: tuple[str, ...]) -> Any:
    table = schema.STATE_TABLES[table_name]
    keys = STATE_KEYS[table_name]
    insert_fn: Callable[..., Any] = postgresql.insert if dialect == "postgresql" else sqlite.insert
    ins = insert_fn(table).values({k: bindparam(k) for k in (*keys, *value_names)})
    return ins.on_conflict_do_update(
        index_elements=list(keys), set_={k: ins.excluded[k] for k in value_names}
    )


def _delete(table_name: str) -> Any:
    table = schema.STATE_TABLES[table_name]
    keys = STATE_KEYS[table_name]
    return delete(table).where(and_(*(table.c[k] == bindparam(f"key_{k}") for k in keys)))


def repair(conn: Connection, divergences: tuple[Divergence, ...]) -> None:
    """Make the state tables say what the chain implies, inside ``conn``'s transaction:
    delete the extra rows, write the missing and changed ones."""
    deletes: dict[str, list[dict[str, Any]]] = {}
    upserts: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for d in divergences:
        names = STATE_KEYS[d.table]
        if d.implied is None:
            deletes.setdefault(d.table, []).append(
                {f"key_{k}": v for k, v in zip(names, d.key, strict=True)}
            )
        else:
            params = dict(zip(names, d.key, strict=True))
            params.update(d.implied)
            upserts.setdefault((d.table, tuple(d.implied)), []).append(params)
    for table, params_list in deletes.items():
        conn.execute(_delete(table), params_list)
    for (table, value_names), params_list in upserts.items():
        conn.execute(_upsert(conn.dialect.name, table, value_names), params_list)


@dataclass(frozen=True)
class RebuildResult:
    """What ``rebuild_state`` changed: each row it wrote or deleted, as the divergence it
    repaired (empty: the tables already said what the chain implies)."""

    events: int
    head_seq: int
    rows: int  # rows of the state tables before the rebuild
    changed: tuple[Divergence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "head_seq": self.head_seq,
            "rows": self.rows,
            "changed": [d.to_dict() for d in self.changed],
        }


class HeadMoved(Exception):
    """The head is no longer where the verified chain ended (new events were appended)."""


def rebuild_state(engine: Any, *, verified_seq: int) -> RebuildResult:
    """Make the state tables what the events up to the head imply, in one transaction that
    holds the head (no append can interleave), writing only the rows that differ.

    ``verified_seq``: the head the caller verified the chain at; :class:`HeadMoved` if the
    head has moved since (verify again and retry).
    """
    with engine.connect().execution_options(consentry_write=True) as conn, conn.begin():
        # SQLite: BEGIN IMMEDIATE (the write option) already holds the write lock.
        lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
        row = conn.exec_driver_sql(f"SELECT seq FROM ledger_head WHERE id = 1{lock}").first()
        head_seq = int(row[0]) if row is not None else 0
        if head_seq != verified_seq:
            raise HeadMoved(f"the head moved from #{verified_seq} to #{head_seq}")
        result = audit_connection(conn, head_seq=head_seq)
        repair(conn, result.divergences)
    return RebuildResult(result.events, head_seq, result.rows, result.divergences)


def with_state(chain: VerifyResult, state: AuditResult) -> VerifyResult:
    """The chain's result with the state audit's added: ok only when both are clean; the
    chain's problem first, else the state's summary."""
    return replace(
        chain,
        ok=chain.ok and state.ok,
        problem=chain.problem or state.summary(),
        divergences=(*chain.divergences, *state.divergences),
    )


def decode_categories(text: str | None, seen: dict[Any, Any]) -> Any:
    """A row's stored categories as the tuple an event holds (``_UNREADABLE`` when the JSON is
    broken: state_changes then fails on it, reported, not a crash), remembered in ``seen`` (a
    ledger repeats a few category lists millions of times)."""
    try:
        cats: Any = tuple(json.loads(text or "[]"))
    except (ValueError, TypeError):
        cats = _UNREADABLE
    if len(seen) < 100_000:
        seen[text] = cats
    return cats
