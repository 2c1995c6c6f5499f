"""The ledger: an append-only, hash-chained event store with current-state tables.

``Ledger`` and ``VerifyResult`` (SQLAlchemy) are imported when first named: the decision core
imports :mod:`consentry.ledger.events` alone, and must not pay for the database layer (the
``consentry check`` fast path reads SQLite without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .events import Draft, Event, Kind

if TYPE_CHECKING:
    from .store import Ledger, VerifyResult

__all__ = ["Draft", "Event", "Kind", "Ledger", "VerifyResult"]


def __getattr__(name: str) -> Any:
    if name in ("Ledger", "VerifyResult"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
