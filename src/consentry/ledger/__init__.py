"""The ledger: an append-only, hash-chained event store with current-state tables."""

from .events import Draft, Event, Kind
from .store import Ledger, VerifyResult

__all__ = ["Draft", "Event", "Kind", "Ledger", "VerifyResult"]
