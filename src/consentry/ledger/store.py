"""The append-only, hash-chained event store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ..canonical import canonical_json
from ..errors import IdempotencyConflict, NotFound, NotInitialised
from ..ids import new_id
from ..times import format_time, from_us, parse_time, to_us
from . import schema
from .engine import WRITE, make_engine
from .events import GENESIS_HASH, STATE_KEYS, Change, Draft, Event, Kind, state_changes
from .migrate import upgrade


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of recomputing the chain."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    seq: int | None = None
    event_id: str | None = None


class Ledger:
    """Append-only log of every event, with the current-state tables derived from it."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        self.backend = self.engine.dialect.name

    # -- set-up ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema and the chain head (idempotent)."""
        upgrade(self.engine)
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            if conn.execute(select(schema.ledger_head.c.id)).first() is None:
                conn.execute(
                    insert(schema.ledger_head).values(id=1, seq=0, hash=GENESIS_HASH, at_us=0)
                )

    def is_initialised(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return conn.execute(select(schema.ledger_head.c.id)).first() is not None
        except (OperationalError, ProgrammingError):
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

    def append(self, drafts: Sequence[Draft], now: datetime) -> list[Event]:
        """Append events in one transaction; return them (or, for a retried idempotency key,
        the event first recorded under it)."""
        for _attempt in range(5):
            try:
                return self._append(drafts, now)
            except IntegrityError as exc:
                # Only a concurrent write under the same idempotency key gets here; retrying
                # finds that write and returns it.
                if "idempotency" not in str(exc).lower():
                    raise
        raise IdempotencyConflict("idempotency key kept colliding", hint="retry the request")

    def _append(self, drafts: Sequence[Draft], now: datetime) -> list[Event]:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            head = conn.execute(
                select(schema.ledger_head).where(schema.ledger_head.c.id == 1).with_for_update()
            ).first()
            if head is None:
                raise NotInitialised(
                    "the store has no ledger yet", hint="run `consentry init` first"
                )
            seq, prev_hash, last_us = head.seq, head.hash, head.at_us
            now_us = to_us(now)
            out: list[Event] = []
            rows: list[dict[str, Any]] = []
            changes: list[Change] = []
            for draft in drafts:
                if draft.idempotency_key is not None:
                    existing = self._by_idempotency_key(conn, draft, rows)
                    if existing is not None:
                        out.append(existing)
                        continue
                seq += 1
                last_us = max(now_us, last_us)  # time never runs backwards along the chain
                at = from_us(last_us)
                event = Event(
                    **{f: getattr(draft, f) for f in Draft.__dataclass_fields__},
                    seq=seq,
                    id=new_id(),
                    at=at,
                    at_text=format_time(at),
                    at_us=last_us,
                    prev_hash=prev_hash,
                )
                event = _with_hash(event)
                prev_hash = event.hash
                out.append(event)
                rows.append(_to_row(event, draft.request_hash()))
                changes.extend(state_changes(event))
            if rows:
                conn.execute(insert(schema.events), rows)
                self._apply(conn, changes)
                conn.execute(
                    update(schema.ledger_head)
                    .where(schema.ledger_head.c.id == 1)
                    .values(seq=seq, hash=prev_hash, at_us=last_us)
                )
            return out

    def _by_idempotency_key(
        self, conn: Connection, draft: Draft, pending: list[dict[str, Any]]
    ) -> Event | None:
        key = draft.idempotency_key
        row: Any = next((r for r in pending if r["idempotency_key"] == key), None)
        if row is None:
            found = conn.execute(
                select(schema.events).where(schema.events.c.idempotency_key == key)
            ).first()
            if found is None:
                return None
            row = found._mapping
        if row["request_hash"] != draft.request_hash():
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different request",
                hint="use a new key for a new request; reuse a key only to retry the same one",
            )
        return _from_row(row)

    def _apply(self, conn: Connection, changes: Iterable[Change]) -> None:
        # Runs of same-shaped upserts (or deletes) to one table go out as one executemany, in
        # order within each table (tables are independent). A run never holds one key twice:
        # a multi-row upsert may not touch a row twice.
        runs: list[tuple[tuple[str, tuple[str, ...] | None], list[dict[str, Any]]]] = []
        open_runs: dict[str, tuple[int, set[tuple[str, ...]]]] = {}
        for change in changes:
            names = STATE_KEYS[change.table]
            if change.values is None:
                shape: tuple[str, tuple[str, ...] | None] = (change.table, None)
                params = {f"key_{k}": v for k, v in zip(names, change.key, strict=True)}
            else:
                shape = (change.table, tuple(change.values))
                params = dict(zip(names, change.key, strict=True))
                params.update(change.values)
            current = open_runs.get(change.table)
            if (
                current is not None
                and runs[current[0]][0] == shape
                and change.key not in current[1]
            ):
                runs[current[0]][1].append(params)
                current[1].add(change.key)
            else:
                open_runs[change.table] = (len(runs), {change.key})
                runs.append((shape, [params]))
        for (table_name, value_names), rows in runs:
            conn.execute(self._state_statement(table_name, value_names), rows)

    def _state_statement(self, table_name: str, value_names: tuple[str, ...] | None) -> Any:
        """The (cached) upsert, or delete when ``value_names`` is None, of one state table."""
        cache: dict[Any, Any] = self.__dict__.setdefault("_statements", {})
        stmt = cache.get((table_name, value_names))
        if stmt is None:
            table = schema.STATE_TABLES[table_name]
            keys = STATE_KEYS[table_name]
            if value_names is None:
                stmt = delete(table).where(
                    and_(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
                )
            else:
                insert_fn = postgresql.insert if self.backend == "postgresql" else sqlite.insert
                ins = insert_fn(table)
                stmt = ins.on_conflict_do_update(
                    index_elements=list(keys), set_={k: ins.excluded[k] for k in value_names}
                )
            cache[(table_name, value_names)] = stmt
        return stmt

    # -- reading --------------------------------------------------------------------------

    def head(self) -> tuple[int, str, int]:
        """(seq, hash, at_us) of the last event."""
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

    def event(self, ref: str | int) -> Event:
        """One event by id (UUID) or by ``seq``."""
        e = schema.events.c
        where = e.seq == int(ref) if str(ref).isdigit() else e.id == str(ref)
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.events).where(where)).first()
        if row is None:
            raise NotFound(f"no event {ref!r} in the ledger", hint="list events with --json")
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

    def verify(self) -> VerifyResult:
        """Recompute the chain; name the first event that was changed, deleted, inserted or
        reordered."""
        head_seq, head_hash, _ = self.head()
        expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
        for event in self.events():
            checked += 1
            if event.seq != expected_seq:
                missing = expected_seq if event.seq > expected_seq else event.seq
                return VerifyResult(
                    False,
                    checked,
                    head_seq,
                    head_hash,
                    f"event #{missing} is missing: the ledger jumps from #{expected_seq - 1} "
                    f"to #{event.seq} ({event.id}) — an event was deleted",
                    missing,
                    event.id,
                )
            if event.prev_hash != prev_hash:
                return VerifyResult(
                    False,
                    checked,
                    head_seq,
                    head_hash,
                    f"event #{event.seq} ({event.id}) does not chain to event #{event.seq - 1}: "
                    "an event was inserted, reordered, or changed and re-hashed here",
                    event.seq,
                    event.id,
                )
            if event.compute_hash() != event.hash or event.at_us != to_us(event.at or from_us(0)):
                return VerifyResult(
                    False,
                    checked,
                    head_seq,
                    head_hash,
                    f"event #{event.seq} ({event.id}) was changed: its content no longer "
                    "matches its hash",
                    event.seq,
                    event.id,
                )
            prev_hash, expected_seq = event.hash, expected_seq + 1
        last = expected_seq - 1
        if last != head_seq or prev_hash != head_hash:
            return VerifyResult(
                False,
                checked,
                head_seq,
                head_hash,
                f"the ledger ends at #{last} but its head records #{head_seq}: "
                f"events after #{last} were deleted",
                last + 1,
                None,
            )
        return VerifyResult(True, checked, head_seq, head_hash)


def _with_hash(event: Event) -> Event:
    from dataclasses import replace

    return replace(event, hash=event.compute_hash())


def _to_row(event: Event, request_hash: str) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.id,
        "at": event.at_text,
        "at_us": event.at_us,
        "kind": str(event.kind),
        "actor": event.actor,
        "subject": event.subject,
        "account": event.account,
        "purpose": event.purpose,
        "categories": canonical_json(list(event.categories)).decode(),
        "status": event.status,
        "policy_version": event.policy_version,
        "notice_version": event.notice_version,
        "language": event.language,
        "method": event.method,
        "payload": canonical_json(dict(event.payload)).decode(),
        "idempotency_key": event.idempotency_key,
        "request_hash": request_hash,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


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
    )
