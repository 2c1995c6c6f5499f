"""Helpers for the events-out tests: a fast retry schedule, a delivery pump with a deadline,
and reading the delivery table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from consentry import Store
from consentry.ledger import schema
from consentry.outbound.delivery import Deliverer, DeliveryConfig, RetrySchedule

FAST_RETRY = RetrySchedule(first_s=0.05, factor=2.0, total_s=30.0, jitter=0.2)


def deliverer(store: Store, **options: Any) -> Deliverer:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll_s", 0.01)
    return Deliverer(store, DeliveryConfig(**options))


def pump(d: Deliverer, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Run delivery rounds until ``done()`` (fails after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery did not finish in {timeout_s}s")
        if not d.run_once():
            time.sleep(0.01)
        d.drain(timeout_s)


def statuses(store: Store, sub_id: str) -> dict[str, int]:
    d = schema.webhook_deliveries
    with store.ledger.engine.connect() as conn:
        rows = conn.execute(
            select(d.c.status, func.count())
            .where(d.c.subscription_id == sub_id)
            .group_by(d.c.status)
        )
        return {r[0]: int(r[1]) for r in rows}


def settled(store: Store, sub_id: str, count: int, status: str = "delivered") -> Callable[[], bool]:
    return lambda: statuses(store, sub_id).get(status, 0) == count
