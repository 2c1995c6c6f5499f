"""Pruning: delivered messages' records and outbox rows no subscriber needs any more.

The outbox gets a row per ledger event, and nothing else ever removes it; on a busy store it
would grow like the ledger. A row may go once it is older than ``keep_outbox_s`` *and* every
subscription is past it: its cursor has moved beyond it and no delivery of it, or of any
earlier message, is still pending or failed (a failed message waits for a replay, and keeps
the impact computed for it). The ledger itself is never touched: a replay from before the
pruned horizon still renders every message from the events (a narrowing event's impact is
then computed again, as of the replay).

Delivered messages' records (``webhooks deliveries``) are kept ``keep_delivered_s``; failed
ones until they are replayed or their subscription is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select

from ..ledger import schema
from ..ledger.engine import WRITE


@dataclass(frozen=True)
class Pruned:
    deliveries: int
    outbox: int
    #: The highest outbox seq that may go (the subscribers' horizon), None: nothing is held.
    horizon: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"deliveries": self.deliveries, "outbox": self.outbox, "horizon": self.horizon}


def horizon(conn: Any) -> int | None:
    """The last seq every subscription is done with (None when there is no subscription:
    a new one starts at the ledger's head, so nothing before it is needed)."""
    s, d = schema.webhook_subscriptions, schema.webhook_deliveries
    cursor = conn.execute(select(func.min(s.c.cursor_seq))).scalar()
    if cursor is None:
        return None
    waiting = conn.execute(
        select(func.min(d.c.seq)).where(d.c.status.in_(("pending", "failed")))
    ).scalar()
    return int(cursor) if waiting is None else min(int(cursor), int(waiting) - 1)


def prune(
    engine: Engine,
    *,
    keep_delivered_s: float,
    keep_outbox_s: float,
    ledger_now_us: int | None = None,
) -> Pruned:
    """Delete delivered records older than ``keep_delivered_s`` and outbox rows older than
    ``keep_outbox_s`` that every subscription is past; one transaction. An outbox row's age
    is its event's time against ``ledger_now_us`` (the store's clock; default: now)."""
    now = time.time_ns() // 1000
    ledger_now = now if ledger_now_us is None else ledger_now_us
    d, o = schema.webhook_deliveries, schema.outbox
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        gone = conn.execute(
            delete(d).where(
                d.c.status == "delivered",
                d.c.delivered_at_us < now - int(keep_delivered_s * 1_000_000),
            )
        ).rowcount
        limit = horizon(conn)
        query = delete(o).where(o.c.at_us < ledger_now - int(keep_outbox_s * 1_000_000))
        if limit is not None:
            query = query.where(o.c.seq <= limit)
        dropped = conn.execute(query).rowcount
    return Pruned(int(gone or 0), int(dropped or 0), limit)


__all__ = ["Pruned", "horizon", "prune"]
