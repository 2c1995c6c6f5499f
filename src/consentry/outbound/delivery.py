"""The delivery worker: claims messages from the outbox, sends them, retries, gives up.

One round, for each subscription with work (a read-only look first):

1. *claim*, in one short write transaction that holds the subscription (PostgreSQL:
   ``SELECT … FOR UPDATE SKIP LOCKED`` on its row, so another worker claims other
   subscriptions meanwhile; SQLite: ``BEGIN IMMEDIATE``): match the outbox rows after the
   subscription's cursor and make a delivery row for each match (*fan-out*); pick the due
   deliveries no earlier message of the same ordering key holds back (one waiting for its
   retry, or claimed by someone), in ``seq`` order; lease them to this worker; compute the
   impact of narrowing events not yet computed;
2. *send*, outside any transaction: the claimed messages are split by ordering key into a
   few lanes sent in parallel on a bounded thread pool, each lane in order;
3. *settle* each lane in one transaction: delivered; or failed, with the next attempt after
   an exponential backoff with jitter, or ``failed`` for good once the schedule is used up.

A worker that dies leaves its lease to lapse (``lease_s``): another worker then sends those
messages again. Delivery is therefore at least once; receivers de-duplicate by ``webhook-id``
(= the CloudEvent id = the ledger event id). A slow or dead endpoint holds at most ``lanes``
threads of the pool, for at most its timeout per lane, and its subscription's other messages
wait for its retry, not the others'.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, event, func, select, text, update

from ..errors import ConsentryError, InvalidInput
from ..ledger import schema
from ..ledger.engine import WRITE, make_engine
from ..ledger.events import Event
from ..ledger.store import _from_row as event_from_row
from ..store import LOG_ORIGIN, Store
from ..times import to_us
from . import subscriptions
from .messages import compute_impact, impact_text, narrows, order_key, render
from .sinks import Message, NatsSink, Outcome, Sink, WebhookSink
from .targets import TargetPolicy

log = logging.getLogger("consentry.delivery")

ORDER_KEY_META = "outbox_order_key"
#: The most messages a lane hands its sink at a time (between chunks it checks its lease).
LANE_CHUNK = 50


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff: ``first_s``, then ``factor`` times the last, until the waits add
    up to ``total_s`` (the last one shortened to fit); each wait is spread by ``jitter``
    (± that fraction). The default tries for about a day: 5 s, 20 s, 80 s, 5 min, 21 min,
    85 min, 5.7 h, then 16.4 h."""

    first_s: float = 5.0
    factor: float = 4.0
    total_s: float = 86_400.0
    jitter: float = 0.2

    def waits(self) -> list[float]:
        """The waits before each retry, without jitter."""
        if self.first_s <= 0 or self.factor < 1 or self.total_s <= 0:
            raise InvalidInput(
                "the retry schedule needs first > 0, factor >= 1 and total > 0",
                field="retry",
            )
        out: list[float] = []
        wait, spent = self.first_s, 0.0
        while spent < self.total_s and len(out) < 100:
            wait = min(wait, self.total_s - spent)
            out.append(wait)
            spent += wait
            wait *= self.factor
        return out

    def wait(self, failures: int) -> float | None:
        """Seconds before the next attempt after ``failures`` failed ones (None: give up)."""
        waits = self.waits()
        if failures > len(waits):
            return None
        spread = 1 + self.jitter * (2 * random.random() - 1)
        return waits[failures - 1] * spread


@dataclass(frozen=True)
class DeliveryConfig:
    """How a worker delivers; ``from_env`` reads ``CONSENTRY_*`` variables (docs/deploying.md)."""

    #: The CloudEvents ``source`` of every message (None: ``urn:consentry:<the store's log
    #: origin>``, the same for every process of one store).
    source: str | None = None
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    #: Messages claimed per subscription per round.
    batch: int = 500
    #: Parallel lanes (connections) per claim; the pool's size bounds all of them.
    lanes: int = 4
    concurrency: int = 16
    #: Claims of one subscription in flight at once: the next is claimed while the last is
    #: sent (a claim never takes a message whose key has an earlier one in flight).
    claims_in_flight: int = 2
    #: How long a claim is this worker's; past it another worker may send the messages.
    lease_s: float = 120.0
    #: Sleep between rounds that found nothing to do.
    poll_s: float = 0.05
    #: Outbox rows matched per subscription per round.
    fanout_batch: int = 5000
    #: A NATS JetStream sink, on top of the webhooks: server URL and stream.
    nats_url: str | None = None
    nats_stream: str = "CONSENTRY"
    #: Delivered messages' records are kept this long (``webhooks deliveries``), then deleted
    #: (a replay makes them again); failed ones are kept until replayed or removed.
    keep_delivered_s: float = 7 * 86_400.0
    #: Outbox rows are kept this long at least, then pruned once every subscription is past
    #: them (``consentry webhooks prune``); a replay from before that renders from the ledger.
    keep_outbox_s: float = 7 * 86_400.0
    #: The non-public networks webhooks may reach (``CONSENTRY_WEBHOOK_ALLOW_NETWORKS``).
    targets: TargetPolicy = field(default_factory=TargetPolicy.from_env)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> DeliveryConfig:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(f"CONSENTRY_{name}")
            return value if value not in (None, "") else None

        def number(name: str, kind: Callable[[str], Any]) -> Any:
            raw = get(name)
            if raw is None:
                return None
            try:
                return kind(raw)
            except ValueError:
                raise InvalidInput(
                    f"CONSENTRY_{name}: expected a number, got {raw!r}", field=f"CONSENTRY_{name}"
                ) from None

        values: dict[str, Any] = {}
        if (v := get("EVENT_SOURCE")) is not None:
            values["source"] = v
        retry = {}
        for name, key in (
            ("WEBHOOK_RETRY_FIRST_S", "first_s"),
            ("WEBHOOK_RETRY_FACTOR", "factor"),
            ("WEBHOOK_RETRY_TOTAL_S", "total_s"),
        ):
            if (n := number(name, float)) is not None:
                retry[key] = n
        if retry:
            values["retry"] = RetrySchedule(**retry)
        for name, key, kind in (
            ("WEBHOOK_CONCURRENCY", "concurrency", int),
            ("WEBHOOK_LANES", "lanes", int),
            ("WEBHOOK_BATCH", "batch", int),
            ("WEBHOOK_LEASE_S", "lease_s", float),
            ("WEBHOOK_POLL_S", "poll_s", float),
            ("WEBHOOK_KEEP_DELIVERED_S", "keep_delivered_s", float),
            ("OUTBOX_KEEP_S", "keep_outbox_s", float),
            ("WEBHOOK_CLAIMS_IN_FLIGHT", "claims_in_flight", int),
        ):
            if (n := number(name, kind)) is not None:
                values[key] = n
        if (v := get("NATS_URL")) is not None:
            values["nats_url"] = v
        if (v := get("NATS_STREAM")) is not None:
            values["nats_stream"] = v
        values["targets"] = TargetPolicy.from_env(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def delivery_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``serve`` runs a delivery worker (``CONSENTRY_DELIVER``, default true)."""
    env = os.environ if environ is None else environ
    value = (env.get("CONSENTRY_DELIVER") or "true").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(
        f"CONSENTRY_DELIVER: expected true or false, got {value!r}", field="CONSENTRY_DELIVER"
    )


class _Batch:
    """The lanes of one claim: the last to finish gets every lane's outcomes."""

    def __init__(self, lanes: int) -> None:
        self._left = lanes
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._outcomes: list[Outcome | None] = []

    def add(
        self, lane: Sequence[Message], outcomes: Sequence[Outcome | None]
    ) -> tuple[list[Message], list[Outcome | None]] | None:
        with self._lock:
            self._messages.extend(lane)
            self._outcomes.extend(outcomes)
            self._left -= 1
            if self._left:
                return None
            return self._messages, self._outcomes


@dataclass
class _Claimed:
    sub: subscriptions.Subscription
    messages: list[Message]


class Deliverer:
    """Delivers a store's outbox to its subscriptions; ``run_once`` is one round, ``start``
    runs rounds in a thread until ``stop``."""

    def __init__(self, store: Store, config: DeliveryConfig | None = None) -> None:
        self.store = store
        self.config = config or DeliveryConfig()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.config.concurrency), thread_name_prefix="consentry-deliver"
        )
        #: The lanes in flight, per subscription (one list per claim).
        self._busy: dict[str, list[list[Future[None]]]] = {}
        self._busy_lock = threading.Lock()
        #: Set when a claim's lanes have all finished (the loop waits on it, not the DB).
        self._wake = threading.Event()
        self._sinks: dict[str, tuple[str, Sink]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: str | None = self.config.source
        self._key: bytes | None = None
        self._nats_id: str | None = None
        self.backend = store.ledger.engine.dialect.name
        self.engine = self._own_engine()
        self._ready = False
        self._pruned = 0.0
        #: The last round's error (a failing round does not stop the worker).
        self.error: str | None = None
        #: Outcomes this worker saw, per subscription: delivered, retried, failed.
        self.counts: dict[tuple[str, str], int] = {}
        self._counts_lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------

    def _own_engine(self) -> Engine:
        """The engine the worker's own bookkeeping runs on. SQLite file: a separate one whose
        commits do not wait for the disk (``synchronous=NORMAL``; the ledger's own stay
        ``FULL``): a delivery record lost to a power cut only means a message is sent again,
        and a claim or a settlement is then one flush fewer. Otherwise the store's."""
        engine = self.store.ledger.engine
        if self.backend != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return engine
        own = make_engine(self.store.url)
        event.listen(own, "connect", _sqlite_normal_sync)
        return own

    @property
    def source(self) -> str:
        if self._source is None:
            origin = self.store.ledger.get_meta(LOG_ORIGIN)
            self._source = f"urn:consentry:{origin}" if origin else "urn:consentry:store"
        return self._source

    @property
    def key(self) -> bytes:
        """The key of the ordering keys' hashes (made once per store, kept in ``meta``)."""
        if self._key is None:
            value = self.store.ledger.set_meta_once(ORDER_KEY_META, secrets.token_hex(32))
            self._key = bytes.fromhex(value)
        return self._key

    def _prepare(self) -> None:
        # Read (or make) the store's settings before any claim: not inside its transaction.
        _ = self.key, self.source
        if self.config.nats_url and self._nats_id is None:
            sub_id = f"nats_{self.config.nats_stream}"[:40]
            subscriptions.ensure(self.store, sub_id, self.config.nats_url)
            self._nats_id = sub_id

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        """Run rounds in a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self.run, name="consentry-deliverer", daemon=True)
        self._thread.start()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Rounds until ``stop`` (or ``until()`` says so); idle rounds sleep ``poll_s``."""
        while not self._stop.is_set() and not (until is not None and until()):
            try:
                started = self.run_once()
                self.error = None
            except Exception as exc:  # keep going; say so in the log and at /metrics
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("delivery round failed: %s", self.error)
                started = 0
            if not started:
                with self._busy_lock:
                    busy = bool(self._busy)
                if busy:  # nothing new here until a claim in flight finishes (or a while)
                    self._wake.wait(max(self.config.poll_s, 0.05))
                    self._wake.clear()
                else:
                    self._stop.wait(self.config.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming, wait up to ``timeout_s`` for the messages in flight, close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.drain(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for _url, sink in self._sinks.values():
            with contextlib.suppress(Exception):  # best effort: we are shutting down
                sink.close()
        self._sinks.clear()
        if self.engine is not self.store.ledger.engine:
            self.engine.dispose()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait for the lanes in flight; whether they all finished in time."""
        deadline = time.monotonic() + timeout_s
        with self._busy_lock:
            futures = [f for claims in self._busy.values() for fs in claims for f in fs]
        for future in futures:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                future.result(remaining)
            except Exception:
                return False
        return True

    def run_once(self) -> int:
        """One round: claim for each subscription with work that is not already in flight
        here, and hand the claims to the pool; how many messages were claimed."""
        if not self._ready:
            if not self.store.ledger.is_initialised():
                return 0  # nothing to deliver until `consentry init`
            self._ready = True
        self._prepare()
        if time.monotonic() - self._pruned > 60:
            self._pruned = time.monotonic()
            self.prune()
        claimed = 0
        for sub_id in self._with_work():
            with self._busy_lock:
                if len(self._busy.get(sub_id, ())) >= max(1, self.config.claims_in_flight):
                    continue
            claim = self._claim(sub_id)
            if claim is None or not claim.messages:
                continue
            claimed += len(claim.messages)
            self._dispatch(claim)
        return claimed

    def prune(self) -> int:
        """Delete delivered messages' records older than ``keep_delivered_s`` and outbox rows
        every subscription is past (:mod:`consentry.outbound.retention`); how many records."""
        from .retention import prune

        done = prune(
            self.engine,
            keep_delivered_s=self.config.keep_delivered_s,
            keep_outbox_s=self.config.keep_outbox_s,
            ledger_now_us=to_us(self.store.clock()),
        )
        return done.deliveries + done.outbox

    # -- claiming -------------------------------------------------------------------------

    def _with_work(self) -> list[str]:
        """Subscriptions with outbox rows past their cursor, or with due deliveries."""
        s, d, o = schema.webhook_subscriptions, schema.webhook_deliveries, schema.outbox
        now = _now_us()
        due = (
            select(d.c.seq)
            .where(
                d.c.subscription_id == s.c.id,
                d.c.status == "pending",
                d.c.next_at_us <= now,
                (d.c.lease_until_us.is_(None)) | (d.c.lease_until_us < now),
            )
            .exists()
        )
        head = select(func.coalesce(func.max(o.c.seq), 0)).scalar_subquery()
        query = select(s.c.id).where((s.c.cursor_seq < head) | due).order_by(s.c.id)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def _claim(self, sub_id: str) -> _Claimed | None:
        s = schema.webhook_subscriptions
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            query = select(s).where(s.c.id == sub_id)
            if self.backend == "postgresql":
                # Another worker holding this subscription is claiming it now: take others.
                query = query.with_for_update(skip_locked=True)
            row = conn.execute(query).first()
            if row is None:
                return None
            sub = subscriptions._from_row(row, with_secret=True)
            self._fan_out(conn, sub)
            rows = self._due(conn, sub.id)
            if not rows:
                return _Claimed(sub, [])
            now = _now_us()
            d = schema.webhook_deliveries
            conn.execute(
                update(d)
                .where(d.c.subscription_id == sub.id, d.c.seq.in_([r[0] for r in rows]))
                .values(
                    lease_owner=self.worker_id,
                    lease_until_us=now + int(self.config.lease_s * 1_000_000),
                )
            )
            loaded = self._load(conn, [(int(r[0]), str(r[1])) for r in rows])
        # Rendered after the commit: the write lock is not held for the CPU work.
        return _Claimed(sub, self._render(loaded))

    def _fan_out(self, conn: Connection, sub: subscriptions.Subscription) -> None:
        """Make a delivery row for each event after the cursor that matches; move it. (Every
        event has its outbox row, committed with it; the events are read from the ledger so
        that a replay reaches past outbox rows already pruned.)"""
        e = schema.events
        rows = conn.execute(
            select(e.c.seq, e.c.kind, e.c.subject, e.c.account)
            .where(e.c.seq > sub.cursor_seq)
            .order_by(e.c.seq)
            .limit(self.config.fanout_batch)
        ).all()
        if not rows:
            return
        now = _now_us()
        members = _members_among(conn, sub, rows)
        values: list[tuple[str, int, str, int, int]] = []
        for seq, kind, subject, account in rows:
            if not sub.matches(kind, account, member=subject in members):
                continue
            values.append((sub.id, seq, order_key(self.key, subject, account), now, now))
        if values:
            # On the driver's cursor, one statement text for every row: SQLAlchemy's
            # per-row parameter processing cost more than the insert (docs/performance.md).
            placeholder = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(_upsert_sql(placeholder), values)
        s = schema.webhook_subscriptions
        conn.execute(update(s).where(s.c.id == sub.id).values(cursor_seq=int(rows[-1][0])))

    def _due(self, conn: Connection, sub_id: str) -> list[Any]:
        """(seq, order_key) of the due deliveries no earlier one of their key holds back."""
        return list(
            conn.execute(_DUE, {"sub": sub_id, "now": _now_us(), "limit": self.config.batch}).all()
        )

    def _load(
        self, conn: Connection, rows: Sequence[tuple[int, str]]
    ) -> list[tuple[str, Event, str | None]]:
        """The events of the claimed ``(seq, order_key)``s, in ``seq`` order, with their
        impact; computes (once, for every subscription) the impact of narrowing events. An
        outbox row already pruned (a replay from long ago) renders from the ledger alone."""
        e, o = schema.events, schema.outbox
        seqs = [seq for seq, _ in rows]
        events: dict[int, Event] = {}
        impacts: dict[int, str | None] = {}
        for row in conn.execute(
            select(e, o.c.impact).outerjoin(o, o.c.seq == e.c.seq).where(e.c.seq.in_(seqs))
        ):
            events[row.seq] = event_from_row(row._mapping)
            impacts[row.seq] = row.impact
        out = []
        for seq, key in rows:
            event = events[seq]
            impact = impacts[seq]
            if impact is None and narrows(event):
                impact = self._impact(conn, event)
            out.append((key, event, impact))
        return out

    def _render(self, loaded: Sequence[tuple[str, Event, str | None]]) -> list[Message]:
        """The loaded events as messages (CloudEvents bodies)."""
        source = self.source
        return [
            Message(
                seq=int(event.seq),
                id=event.id,
                kind=str(event.kind),
                account=event.account,
                order_key=key,
                body=render(event, source, impact),
            )
            for key, event, impact in loaded
        ]

    def _impact(self, conn: Connection, event: Event) -> str:
        try:
            text_ = impact_text(compute_impact(self.store, event)) or "null"
        except ConsentryError as exc:
            text_ = impact_text({"error": exc.message}) or "null"
        o = schema.outbox
        done = conn.execute(
            update(o).where(o.c.seq == event.seq, o.c.impact.is_(None)).values(impact=text_)
        )
        if done.rowcount == 0:  # another worker computed it first: every message says the same
            stored = conn.execute(
                select(o.c.impact).where(o.c.seq == event.seq)
            ).scalar_one_or_none()
            return text_ if stored is None else str(stored)  # None: the row was pruned
        return text_

    # -- sending --------------------------------------------------------------------------

    def _sink(self, sub: subscriptions.Subscription) -> Sink:
        cached = self._sinks.get(sub.id)
        if cached is not None and cached[0] == sub.url:
            return cached[1]
        sink: Sink
        if sub.url.startswith("nats://"):
            stream = sub.id.removeprefix("nats_")  # the sink's subscription is named for it
            sink = NatsSink(sub.url, stream, timeout_s=sub.timeout_s)
        else:
            if not sub.secret:
                raise InvalidInput(f"webhook {sub.id} has no secret", hint="remove and add it")
            sink = WebhookSink(sub.url, sub.secret, sub.timeout_s, self.config.targets)
        self._sinks[sub.id] = (sub.url, sink)
        return sink

    def _dispatch(self, claim: _Claimed) -> None:
        sink = self._sink(claim.sub)
        lanes = 1 if isinstance(sink, NatsSink) else max(1, self.config.lanes)
        split: list[list[Message]] = [[] for _ in range(lanes)]
        for message in claim.messages:  # one key, one lane: its messages stay in order
            split[int(message.order_key[:8], 16) % lanes].append(message)
        split = [lane for lane in split if lane]
        batch = _Batch(len(split))
        futures = []
        with self._busy_lock:
            for lane in split:
                futures.append(self._pool.submit(self._send_lane, claim.sub, sink, lane, batch))
            self._busy.setdefault(claim.sub.id, []).append(futures)
        done = functools.partial(self._lane_done, claim.sub.id, futures)
        for future in futures:
            future.add_done_callback(done)

    def _lane_done(self, sub_id: str, futures: list[Future[None]], _f: Future[None]) -> None:
        with self._busy_lock:
            if not all(f.done() for f in futures):
                return
            claims = self._busy.get(sub_id, [])
            if futures in claims:
                claims.remove(futures)
            if not claims:
                self._busy.pop(sub_id, None)
        self._wake.set()

    def _send_lane(
        self,
        sub: subscriptions.Subscription,
        sink: Sink,
        lane: list[Message],
        batch: _Batch,
    ) -> None:
        """Send a lane in chunks, in order; the claim's last lane to finish settles them all
        (one transaction per claim). Past half the lease, the rest of the lane is released
        untried (a slow endpoint must not outlive the claim: another worker would then send
        the same messages); so is the rest of a key after it failed, and everything after an
        unreachable endpoint."""
        deadline = time.monotonic() + self.config.lease_s / 2
        # A chunk's messages could each take up to the timeout (more with connect and read):
        # keep a chunk well inside the half lease that is left once it starts.
        size = max(1, min(LANE_CHUNK, int(self.config.lease_s / (4 * sub.timeout_s))))
        outcomes: list[Outcome | None] = []
        blocked: set[str] = set()
        stopped = False
        for start in range(0, len(lane), size):
            chunk = lane[start : start + size]
            todo = [m for m in chunk if m.order_key not in blocked]
            sent: list[Outcome | None] = []
            if todo and not stopped and time.monotonic() < deadline:
                try:
                    sent = list(sink.send(todo))
                except Exception as exc:  # a sink bug must not lose the claim: all retry
                    log.warning("sending to %s failed: %s", sub.id, exc)
                    sent = [Outcome(False, None, f"{type(exc).__name__}: {exc}", True)]
            answers = dict(zip((m.seq for m in todo), sent, strict=False))
            for message in chunk:
                outcome = answers.get(message.seq)
                outcomes.append(outcome)
                if outcome is None or not outcome.ok:
                    blocked.add(message.order_key)
                if outcome is not None and outcome.unreachable:
                    stopped = True
            if len(sent) < len(todo):
                stopped = True  # the sink stopped early: the endpoint is in trouble
        finished = batch.add(lane, outcomes)
        if finished is not None:
            try:
                self._settle(sub.id, *finished)
            except Exception as exc:  # the leases lapse and the messages go again
                log.warning("recording deliveries to %s failed: %s", sub.id, exc)
                raise

    def _settle(
        self, sub_id: str, lane: Sequence[Message], outcomes: Sequence[Outcome | None]
    ) -> None:
        """Record a lane's outcomes in one transaction (only rows this worker still holds)."""
        now = _now_us()
        delivered: list[dict[str, Any]] = []
        retry: list[dict[str, Any]] = []
        release: list[dict[str, Any]] = []
        pause_until: int | None = None
        d = schema.webhook_deliveries
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            attempts = dict(
                conn.execute(
                    select(d.c.seq, d.c.attempts).where(
                        d.c.subscription_id == sub_id,
                        d.c.seq.in_([m.seq for m in lane]),
                        d.c.lease_owner == self.worker_id,
                    )
                ).all()
            )
            for message, outcome in zip(lane, outcomes, strict=True):
                if message.seq not in attempts or outcome is None:
                    continue
                tries = int(attempts[message.seq]) + 1
                if outcome.ok:
                    delivered.append(
                        {"b_seq": message.seq, "tries": tries, "at": now, "code": outcome.status}
                    )
                    continue
                wait = self.config.retry.wait(tries)
                next_at = now + int((wait or 0) * 1_000_000)
                if outcome.unreachable and wait is not None:
                    pause_until = next_at if pause_until is None else max(pause_until, next_at)
                retry.append(
                    {
                        "b_seq": message.seq,
                        "tries": tries,
                        "status": "pending" if wait is not None else "failed",
                        "next_at": next_at,
                        "code": outcome.status,
                        "error": (outcome.error or "")[:2000],
                    }
                )
            for message, outcome in zip(lane, outcomes, strict=True):
                if message.seq in attempts and outcome is None:
                    # Not tried: an earlier message of its key failed (it waits behind that
                    # one), or the endpoint did not answer (the lane waits as long as that).
                    release.append({"b_seq": message.seq, "next_at": pause_until or now})
            where = (
                d.c.subscription_id == sub_id,
                d.c.seq == bindparam("b_seq"),
                d.c.lease_owner == self.worker_id,
            )
            if delivered:
                conn.execute(
                    update(d)
                    .where(*where)
                    .values(
                        status="delivered",
                        attempts=bindparam("tries"),
                        delivered_at_us=bindparam("at"),
                        last_status=bindparam("code"),
                        last_error=None,
                        lease_owner=None,
                        lease_until_us=None,
                    ),
                    delivered,
                )
            if retry:
                conn.execute(
                    update(d)
                    .where(*where)
                    .values(
                        status=bindparam("status"),
                        attempts=bindparam("tries"),
                        next_at_us=bindparam("next_at"),
                        last_status=bindparam("code"),
                        last_error=bindparam("error"),
                        lease_owner=None,
                        lease_until_us=None,
                    ),
                    retry,
                )
            if release:
                conn.execute(
                    update(d)
                    .where(*where)
                    .values(next_at_us=bindparam("next_at"), lease_owner=None, lease_until_us=None),
                    release,
                )
        with self._counts_lock:
            for name, rows in (
                ("delivered", delivered),
                ("retried", [r for r in retry if r["status"] == "pending"]),
                ("failed", [r for r in retry if r["status"] == "failed"]),
            ):
                if rows:
                    self.counts[(sub_id, name)] = self.counts.get((sub_id, name), 0) + len(rows)


#: What a replay resets when it queues a delivery again.
_RESET = (
    "status",
    "attempts",
    "next_at_us",
    "lease_owner",
    "lease_until_us",
    "delivered_at_us",
    "last_status",
    "last_error",
)

# The due deliveries of one subscription that nothing holds back: no earlier pending delivery
# of the same key is waiting for its retry or leased (to this worker or another). An earlier
# one that is due and free is itself among the results, before it (seq order), so a claim
# always takes a prefix of each key's queue. Written as "before the first blocking seq of its
# key" (one grouped pass, then a join) rather than a correlated NOT EXISTS, which PostgreSQL
# ran as a nested loop over the pending rows (quadratic in the backlog: docs/performance.md).
_DUE = text(
    """
WITH blocked AS (
  SELECT order_key, MIN(seq) AS first_seq FROM webhook_deliveries
  WHERE subscription_id = :sub AND status = 'pending'
    AND (next_at_us > :now OR lease_until_us >= :now)
  GROUP BY order_key
)
SELECT d.seq, d.order_key FROM webhook_deliveries d
LEFT JOIN blocked b ON b.order_key = d.order_key
WHERE d.subscription_id = :sub AND d.status = 'pending' AND d.next_at_us <= :now
  AND (d.lease_until_us IS NULL OR d.lease_until_us < :now)
  AND (b.first_seq IS NULL OR d.seq < b.first_seq)
ORDER BY d.seq
LIMIT :limit
"""
)


@functools.cache
def _upsert_sql(placeholder: str) -> str:
    """A delivery row per match; a replay moves the cursor back, so a row that exists is
    queued again (its state reset)."""
    p = placeholder
    return (
        "INSERT INTO webhook_deliveries (subscription_id, seq, order_key, status, attempts, "
        "next_at_us, lease_owner, lease_until_us, created_at_us, delivered_at_us, last_status, "
        f"last_error) VALUES ({p}, {p}, {p}, 'pending', 0, {p}, NULL, NULL, {p}, NULL, NULL, "
        "NULL) ON CONFLICT (subscription_id, seq) DO UPDATE SET "
        + ", ".join(f"{k} = excluded.{k}" for k in _RESET)
    )


def _members_among(
    conn: Connection, sub: subscriptions.Subscription, rows: Sequence[Any]
) -> set[str]:
    """The subjects of ``rows``' choice events who are members of ``sub``'s account now
    (an account's subscription gets its members' choices: see ``Subscription.matches``)."""
    if sub.account is None:
        return set()
    wanted = sorted({r[2] for r in rows if r[2] and r[1] in subscriptions.MEMBER_KINDS})
    m = schema.memberships.c
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        found.update(
            conn.execute(
                select(m.subject).where(
                    m.account == sub.account, m.subject.in_(wanted[i : i + 500])
                )
            ).scalars()
        )
    return found


def _sqlite_normal_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _now_us() -> int:
    return time.time_ns() // 1000


__all__ = ["Deliverer", "DeliveryConfig", "RetrySchedule", "delivery_enabled"]
