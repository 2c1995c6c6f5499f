"""Reading the ledger's stored event rows back: the body text a row's hash covers, and a
stored time as microseconds. Shared by the ledger (:mod:`.store`) and the verifier
(:mod:`.verifying`), apart from both so that neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..times import to_us
from .events import BODY_JSON, json_string

# The body's canonical JSON (events.BODY_JSON); a row's categories and payload are spliced as
# stored (the ledger stores them in canonical form; any other form fails the hash).
_BODY = BODY_JSON
_q = json_string


def body_text(row: Sequence[Any]) -> str:
    """The canonical JSON of an event body spliced from a ``_RAW_COLUMNS`` row."""
    return _BODY % (
        _q(row[7]), _q(row[2]), row[9] or "[]", _q(row[20]), _q(row[1]), _q(row[4]),
        _q(row[13]), _q(row[14]), _q(row[12]), row[15], _q(row[11]), _q(row[8]), row[0],
        _q(row[10]),
    )  # fmt: skip


def at_us_of(at: str) -> int:
    """A stored ISO 8601 time in microseconds; -1 for text that is not one."""
    try:
        return to_us(datetime.fromisoformat(at))
    except ValueError:
        return -1
