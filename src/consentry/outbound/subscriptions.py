"""Where messages go: webhook subscriptions (and the broker sinks' own cursors).

A subscription has a URL, a secret (``whsec_…``, shown once when made), type patterns (shell
patterns over the CloudEvent type: ``org.consentry.consent.*``; a pattern without the
``org.consentry.`` prefix gets it) and optionally an account, in which case it receives only
events of that account (what an account administrator may subscribe to). It starts at the
ledger's head: past events are sent only by a replay.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update

from ..errors import InvalidInput, NotFound
from ..ledger import schema
from ..ledger.engine import WRITE
from ..ledger.events import Kind
from ..store import Store
from ..textcheck import refuse_bad_text
from ..times import format_time, from_us, utcnow
from .messages import TYPE_PREFIX
from .signing import new_secret
from .targets import check_target

DEFAULT_TIMEOUT_S = 10
#: A member's own events that their account's subscriptions receive: their choices (they
#: carry no account; an account administrator may read them through the API too).
MEMBER_KINDS = frozenset(
    str(k)
    for k in (
        Kind.CONSENT_GIVEN,
        Kind.CONSENT_REFUSED,
        Kind.CONSENT_WITHDRAWN,
        Kind.OBJECTION_RAISED,
        Kind.OBJECTION_LIFTED,
    )
)
MAX_TIMEOUT_S = 60


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    types: tuple[str, ...]
    account: str | None
    timeout_s: int
    cursor_seq: int
    created_at: str
    created_by: str | None
    secret: str | None = None  # only the worker (to sign) and ``create`` (to show once) see it

    def matches(self, kind: str, account: str | None, *, member: bool = False) -> bool:
        """Whether a message of ``kind`` about ``account`` goes to this subscription.

        An account's subscription gets what an administrator of that account may read through
        the API (``GET /v1/subjects/{s}/events``): the account's own events, and the choices
        (consents, objections: ``MEMBER_KINDS``) of subjects who are ``member``s of the
        account when the message is matched (normally within a second of the write). It
        never gets another account's events, nor the choices of a non-member."""
        mine = account == self.account or (member and account is None and kind in MEMBER_KINDS)
        if self.account is not None and not mine:
            return False
        if not self.types:
            return True
        full = TYPE_PREFIX + kind
        return any(fnmatch.fnmatchcase(full, p) for p in self.types)

    def to_dict(self, *, secret: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "types": list(self.types),
            "account": self.account,
            "timeout_s": self.timeout_s,
            "cursor_seq": self.cursor_seq,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }
        if secret:
            data["secret"] = self.secret
        return data


def normalise_types(patterns: Sequence[str]) -> tuple[str, ...]:
    """Type patterns as stored: each with the ``org.consentry.`` prefix."""
    out = []
    for raw in patterns:
        pattern = raw.strip()
        refuse_bad_text(pattern, "type")
        if not pattern:
            raise InvalidInput("an empty --type pattern", field="types")
        if not pattern.startswith(TYPE_PREFIX) and pattern != "*":
            pattern = TYPE_PREFIX + pattern
        out.append(pattern)
    return tuple(dict.fromkeys(out))


def check_url(url: str, *, schemes: Sequence[str] = ("http", "https")) -> str:
    """A webhook URL: absolute http(s) with a host."""
    refuse_bad_text(url, "url")
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidInput(
            f"{url!r} is not an {' or '.join(schemes)} URL",
            hint="give the endpoint's full URL, e.g. https://hooks.example.com/consentry",
            field="url",
        )
    return url


def create(
    store: Store,
    url: str,
    *,
    types: Sequence[str] = (),
    account: str | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    created_by: str | None = None,
    sub_id: str | None = None,
    secret: str | None = None,
) -> Subscription:
    """Add a subscription starting at the ledger's head; the result carries the secret."""
    schemes = ("nats",) if url.startswith("nats://") else ("http", "https")
    check_url(url, schemes=schemes)
    if schemes != ("nats",):  # a broker sink is the operator's own setting, not a subscriber's
        check_target(urlsplit(url).hostname or "")
    if account is not None:
        refuse_bad_text(account, "account")
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(
            f"timeout {timeout_s}s is out of range", hint=f"1 to {MAX_TIMEOUT_S}", field="timeout"
        )
    store.init()
    patterns = normalise_types(types)
    head = store.ledger.head()[0]
    sub = Subscription(
        id=sub_id or "wh_" + secrets.token_hex(8),
        url=url,
        types=patterns,
        account=account,
        timeout_s=timeout_s,
        cursor_seq=head,
        created_at=format_time(utcnow()),
        created_by=created_by,
        secret=secret if secret is not None else (None if schemes == ("nats",) else new_secret()),
    )
    with store.ledger.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.execute(
            insert(schema.webhook_subscriptions).values(
                id=sub.id,
                url=sub.url,
                secret=sub.secret,
                types=json.dumps(list(sub.types)),
                account=sub.account,
                timeout_s=sub.timeout_s,
                cursor_seq=sub.cursor_seq,
                created_at=sub.created_at,
                created_by=sub.created_by,
            )
        )
    return sub


def ensure(store: Store, sub_id: str, url: str) -> Subscription:
    """The subscription ``sub_id``, made for ``url`` if missing (a broker sink's cursor)."""
    try:
        return get(store, sub_id, with_secret=True)
    except NotFound:
        pass
    try:
        return create(store, url, sub_id=sub_id, created_by="consentry deliver")
    except Exception:  # made by another process in the meantime
        return get(store, sub_id, with_secret=True)


def _from_row(row: Any, *, with_secret: bool) -> Subscription:
    return Subscription(
        id=row.id,
        url=row.url,
        types=tuple(json.loads(row.types)),
        account=row.account,
        timeout_s=int(row.timeout_s),
        cursor_seq=int(row.cursor_seq),
        created_at=row.created_at,
        created_by=row.created_by,
        secret=row.secret if with_secret else None,
    )


def list_all(store: Store, *, account: str | None = None) -> list[Subscription]:
    """Every subscription (those of ``account`` only, when given)."""
    s = schema.webhook_subscriptions
    query = select(s).order_by(s.c.created_at, s.c.id)
    if account is not None:
        query = query.where(s.c.account == account)
    with store.ledger.engine.connect() as conn:
        return [_from_row(r, with_secret=False) for r in conn.execute(query)]


def get(store: Store, sub_id: str, *, with_secret: bool = False) -> Subscription:
    refuse_bad_text(sub_id, "id")
    s = schema.webhook_subscriptions
    with store.ledger.engine.connect() as conn:
        row = conn.execute(select(s).where(s.c.id == sub_id)).first()
    if row is None:
        raise NotFound(
            f"no webhook subscription {sub_id!r}", hint="list them: consentry webhooks list"
        )
    return _from_row(row, with_secret=with_secret)


def remove(store: Store, sub_id: str) -> None:
    """Delete a subscription and its deliveries' records."""
    get(store, sub_id)
    with store.ledger.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        d = schema.webhook_deliveries
        conn.execute(delete(d).where(d.c.subscription_id == sub_id))
        s = schema.webhook_subscriptions
        conn.execute(delete(s).where(s.c.id == sub_id))


def deliveries(
    store: Store, sub_id: str, *, failed: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest deliveries of a subscription (only failed ones with ``failed``), newest
    first."""
    get(store, sub_id)
    d, e = schema.webhook_deliveries, schema.events
    query = (
        select(d, e.c.id.label("event_id"), e.c.kind)
        .join(e, e.c.seq == d.c.seq)
        .where(d.c.subscription_id == sub_id)
        .order_by(d.c.seq.desc())
        .limit(max(1, min(limit, 10_000)))
    )
    if failed:
        query = query.where(d.c.status == "failed")
    out = []
    with store.ledger.engine.connect() as conn:
        for row in conn.execute(query):
            out.append(
                {
                    "seq": row.seq,
                    "event_id": row.event_id,
                    "type": TYPE_PREFIX + row.kind,
                    "status": row.status,
                    "attempts": row.attempts,
                    "next_attempt": _time(row.next_at_us) if row.status == "pending" else None,
                    "delivered_at": _time(row.delivered_at_us),
                    "last_status": row.last_status,
                    "last_error": row.last_error,
                }
            )
    return out


def replay(store: Store, sub_id: str, from_seq: int) -> dict[str, Any]:
    """Send every matching message from ``from_seq`` on again (delivered, failed or not yet
    sent): the subscription's cursor moves back, and the worker sends them again in order."""
    if from_seq < 1:
        raise InvalidInput("--from-seq starts at 1", field="from_seq")
    sub = get(store, sub_id)
    s, d = schema.webhook_subscriptions, schema.webhook_deliveries
    with store.ledger.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        cursor = conn.execute(
            select(s.c.cursor_seq).where(s.c.id == sub_id).with_for_update()
        ).scalar_one()
        new_cursor = min(int(cursor), from_seq - 1)
        conn.execute(update(s).where(s.c.id == sub_id).values(cursor_seq=new_cursor))
        # Those past the old cursor are not made yet; those before from_seq stay as they are.
        reset = conn.execute(
            select(func.count())
            .select_from(d)
            .where(d.c.subscription_id == sub_id, d.c.seq > new_cursor)
        ).scalar_one()
    return {"id": sub.id, "from_seq": from_seq, "cursor_seq": new_cursor, "known": int(reset)}


def _time(us: int | None) -> str | None:
    return None if us is None else format_time(from_us(us))
