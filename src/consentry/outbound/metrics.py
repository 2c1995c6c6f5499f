"""Delivery metrics for ``/metrics``, read from the database when scraped, so that they are
the same whichever worker answers and count every worker's and ``deliver`` process's work:
messages queued, delivered and failed, retries made, and the age of the oldest message not
delivered yet, per subscription."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from ..ledger import schema
from ..store import Store


class DeliveryCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts, retries, oldest = self._read()
        except Exception:  # a store without the tables yet, or a database that does not answer
            return
        messages = GaugeMetricFamily(
            "consentry_webhook_messages",
            "Messages per subscription and state (queued: not delivered yet, retries included)",
            labels=["subscription", "state"],
        )
        for (sub, state), n in sorted(counts.items()):
            messages.add_metric([sub, state], n)
        yield messages
        retried = GaugeMetricFamily(
            "consentry_webhook_retries",
            "Failed attempts that were retried, per subscription",
            labels=["subscription"],
        )
        for sub, n in sorted(retries.items()):
            retried.add_metric([sub], n)
        yield retried
        age = GaugeMetricFamily(
            "consentry_webhook_oldest_undelivered_seconds",
            "Age of the oldest event not yet delivered to the subscription (0: none)",
            labels=["subscription"],
        )
        for sub, seconds in sorted(oldest.items()):
            age.add_metric([sub], seconds)
        yield age

    def _read(
        self,
    ) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, float]]:
        d, s, o = schema.webhook_deliveries, schema.webhook_subscriptions, schema.outbox
        state = case((d.c.status == "pending", "queued"), else_=d.c.status)
        now = time.time()
        counts: dict[tuple[str, str], int] = {}
        retries: dict[str, int] = {}
        oldest: dict[str, float] = {}
        with self.store.ledger.engine.connect() as conn:
            subs = {r.id: int(r.cursor_seq) for r in conn.execute(select(s.c.id, s.c.cursor_seq))}
            for sub in subs:
                for name in ("queued", "delivered", "failed"):
                    counts[(sub, name)] = 0
                retries[sub] = 0
                oldest[sub] = 0.0
            rows = conn.execute(
                select(
                    d.c.subscription_id,
                    state,
                    func.count(),
                    # A failed attempt is a retry when another followed it (delivered or
                    # failed for good: all but the last) or is scheduled (pending: all).
                    func.sum(
                        case(
                            (d.c.status == "pending", d.c.attempts),
                            (d.c.attempts > 1, d.c.attempts - 1),
                            else_=0,
                        )
                    ),
                ).group_by(d.c.subscription_id, state)
            )
            for sub, name, n, retried_attempts in rows:
                counts[(sub, name)] = int(n)
                retries[sub] = retries.get(sub, 0) + int(retried_attempts or 0)
            first_pending = conn.execute(
                select(d.c.subscription_id, func.min(o.c.at_us))
                .join(o, o.c.seq == d.c.seq)
                .where(d.c.status == "pending")
                .group_by(d.c.subscription_id)
            )
            for sub, at_us in first_pending:
                if at_us is not None:
                    oldest[sub] = max(0.0, now - at_us / 1e6)
            for sub, cursor in subs.items():
                # Not matched yet: the event right after the cursor waits too.
                at_us = conn.execute(select(o.c.at_us).where(o.c.seq == cursor + 1)).scalar()
                if at_us is not None:
                    oldest[sub] = max(oldest[sub], now - at_us / 1e6)
        return counts, retries, oldest
