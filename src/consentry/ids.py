"""consentry's own ids: UUIDv7 (RFC 9562), time-ordered so that they sort by creation."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A new UUIDv7; ids made in one process are strictly increasing."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same millisecond (or a clock step back): keep order with a 12-bit counter.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new UUIDv7 as its canonical string."""
    return str(uuid7())


def new_ids(count: int) -> list[str]:
    """``count`` new UUIDv7 strings, strictly increasing, as :func:`new_id` makes them one by
    one: the clock read, the lock taken and the random bytes drawn once for all (a bulk
    append names thousands of events at once)."""
    global _last_ms, _counter
    if count <= 0:
        return []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms, start = _last_ms, _counter + 1
        else:
            start = int.from_bytes(os.urandom(2), "big") & 0x3FF
        # Each millisecond holds 4,096 counter values: carry into the next ones as uuid7 does.
        end = start + count - 1
        _last_ms, _counter = ms + (end >> 12), end & 0xFFF
    rand = os.urandom(8 * count)
    out = []
    mask62 = (1 << 62) - 1
    for i in range(count):
        n = start + i
        value = (
            ((ms + (n >> 12)) & ((1 << 48) - 1)) << 80
            | 0x7 << 76
            | (n & 0xFFF) << 64
            | 0b10 << 62
            | int.from_bytes(rand[8 * i : 8 * i + 8], "big") & mask62
        )
        h = f"{value:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
