"""Time handling: UTC inside, RFC 3339 at the edges."""

from __future__ import annotations

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
