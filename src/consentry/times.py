"""Time handling: UTC inside, RFC 3339 at the edges."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import InvalidInput

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_time(value: str | datetime, *, field: str = "time") -> datetime:
    """An RFC 3339 timestamp (or an aware datetime) as an aware UTC datetime.

    A date alone (``2023-08-07``) means midnight UTC. A timestamp without an offset is refused:
    guessing a time zone would make a decision unreproducible.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{field}: {value!r} is not an RFC 3339 timestamp",
                hint="write it like 2023-08-07T00:00:00Z",
                field=field,
            ) from None
        if len(text) == 10:  # a bare date
            dt = dt.replace(tzinfo=UTC)
    if dt.tzinfo is None:
        raise InvalidInput(
            f"{field}: {value!s} has no time zone",
            hint="add 'Z' for UTC, e.g. 2023-08-07T00:00:00Z",
            field=field,
        )
    return dt.astimezone(UTC)


#: The forms ``--as-of`` (CLI), ``as_of`` (API, library) and the gate accept, for messages.
AS_OF_FORMS = (
    "an RFC 3339 time (2024-03-01T12:00:00Z), a time before now (-30s, -5m, -2h, -1d, "
    "-1h30m) or event:N (the time event #N was recorded; an event id works too)"
)
_RELATIVE = re.compile(r"-((?:\d+[smhdw])+)")
_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_as_of(
    value: str | datetime,
    *,
    now: datetime,
    event_time: Callable[[str], datetime],
    field: str = "as_of",
) -> datetime:
    """The moment an ``as_of`` names, as an aware UTC datetime.

    Three forms, so that a replay can be written down without knowing the date it runs on:
    an RFC 3339 time (see :func:`parse_time`); ``-5m``, ``-2h``, ``-1d``, ``-1h30m`` (units
    s, m, h, d, w) before ``now``; ``event:N`` (or ``event:<event id>``), the time event #N was
    recorded, found with ``event_time``. Whether the moment is usable (not in the future, not
    before any policy) is the store's to say (:meth:`consentry.Store.resolve_as_of`).
    """
    if isinstance(value, datetime):
        return parse_time(value, field=field)
    text = value.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(relative[1]))
        return now.astimezone(UTC) - timedelta(seconds=seconds)
    if text.lower().startswith("event:"):
        ref = text[len("event:") :].strip()
        if not ref:
            raise InvalidInput(
                f"{field}: {value!r} names no event",
                hint="write event:N with the event's number, e.g. event:5 (`consentry log`)",
                field=field,
            )
        return event_time(ref).astimezone(UTC)
    if text[:1].isdigit():  # meant as a timestamp: parse_time says what is wrong with it
        return parse_time(text, field=field)
    raise InvalidInput(
        f"{field}: {value!r} is not a time consentry understands",
        hint=f"write {AS_OF_FORMS}",
        field=field,
    )


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch (exact, unlike float timestamps)."""
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
