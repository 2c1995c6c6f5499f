"""Canonical JSON: one byte string per value, so that hashes and signatures are reproducible."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: One encoder for every call: ``json.dumps`` with options builds a new one each time, which
#: was a quarter of a small dump's cost (the write path makes several per event).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (the JCS subset consentry's data needs)."""
    return _ENCODER.encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
