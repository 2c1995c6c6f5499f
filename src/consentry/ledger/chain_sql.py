"""The chain's per-event checks with the string work done by SQLite (SQLite only).

``ledger verify`` recomputes, for every event, the canonical JSON of its body and of its
personal fields, three SHA-256, and reads its time. In Python each row cost ~15 µs of CPU,
most of it in making one Python object per column and in formatting. Here SQLite builds the
two texts in its own C code, in the SELECT (``BODY_SQL``: ``events.BODY_JSON`` as three
``json_object`` calls with the stored categories and payload spliced between them;
``PERSONAL_SQL``: ``events.PERSONAL_JSON``). Python fetches those and the few columns the
checks compare, a batch at a time, and only hashes and compares, with ``map`` over whole
columns (no Python code runs per row): the ``prev_hash`` links, the body hash, the
commitment, the MAC (HMAC-SHA-256 from the key's padded blocks, RFC 2104) and the time
(``datetime.fromisoformat`` of ``at`` against ``at_us``, as the ledger reads it).

Why this is the same check as :func:`consentry.ledger.verifying.scan` (tests/test_chain_sql.py
holds each part):

- SQLite's JSON strings (``json_object``, ``json_quote``) are
  ``json.encoder.encode_basestring``'s for every code point (checked exhaustively for the
  SQLite in use; :func:`usable` probes the special characters at run time, and if this SQLite
  writes them differently the Python path is used); NULL is ``null`` as ``json_string(None)``;
  ``seq`` is written as ``%d`` writes it; an empty or NULL ``categories`` is ``[]`` as
  ``categories or "[]"``; the payload is spliced as stored.
- the time is parsed by the same function (``store._at_us``'s arithmetic, in C).

A batch in which anything does not hold (a hash, a link, a commitment, a MAC, a time, a gap
in ``seq``, a nonce that is not hex, a NULL where the template needs text, a value SQLite
cannot put in JSON) is checked again by :func:`~consentry.ledger.verifying.scan` from the raw
columns: failures, and every case this module does not decide itself, get the same verdict
and the same words as before.
"""

from __future__ import annotations

import hashlib
import operator
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

from .events import _COMMITMENT_PREFIX, BODY_JSON, PERSONAL_JSON, Kind, json_string

#: Events per batch (a seq range): enough to amortise each statement, few enough to keep the
#: memory flat.
BATCH = 10_000


#: events.BODY_JSON, as SQL over the columns (a test holds the two equal, row by row): three
#: ``json_object`` calls (SQLite writes each in one buffer, cheaper than a ``json_quote`` and
#: two concatenations per field) with their braces trimmed, and the categories and payload
#: spliced between them as stored. Trimming takes one brace: each object starts ``{"`` and
#: ends with a string's ``"`` or ``null`` before its ``}``.
BODY_SQL = (
    "rtrim(json_object('account', account, 'at', at), '}') || "
    "',\"categories\":' || coalesce(nullif(categories, ''), '[]') || ',' || "
    "trim(json_object('commitment', commitment, 'id', id, 'kind', kind, 'language', language, "
    "'method', method, 'notice_version', notice_version), '{}') || "
    "',\"payload\":' || payload || ',' || "
    "ltrim(json_object('policy_version', policy_version, 'purpose', purpose, 'seq', seq, "
    "'status', status), '{')"
)
#: events.PERSONAL_JSON, as SQL.
PERSONAL_SQL = "json_object('actor', actor, 'idempotency_key', idempotency_key, 'subject', subject)"
_KEYS_KIND = str(Kind.KEYS_REGISTERED)

_COLUMNS = (
    f"CAST({BODY_SQL} AS BLOB), prev_hash, hash, nonce, CAST({PERSONAL_SQL} AS BLOB), "
    f"commitment, mac, at, at_us, kind = '{_KEYS_KIND}'"
)
_RANGE = "FROM events WHERE seq > ? AND seq <= ? ORDER BY seq"
SELECT = f"SELECT {_COLUMNS} {_RANGE}"
#: with each event's id (for the transparency log's leaves)
SELECT_IDS = f"SELECT {_COLUMNS}, id {_RANGE}"
#: the leaves' data only (after a failure, when the chain is no longer checked)
SELECT_LEAVES = f"SELECT seq, id, CAST({BODY_SQL} AS BLOB) {_RANGE}"

#: Characters whose JSON spelling :func:`usable` compares (every one that is escaped, and a
#: few that must not be).
_PROBE = "".join(map(chr, range(0x80))) + "\u00e9\u2028\u2029\ufeff\uffff\U0001f600\U0010ffff"


def usable(conn: Any) -> bool:
    """Whether this SQLite connection writes JSON strings exactly as the ledger does
    (``json_object`` as ``encode_basestring``, NULL as ``null``, the body and personal
    templates filled in as Python fills them): if not, verification keeps to the Python path."""
    row: dict[str, Any] = {
        "account": _PROBE, "at": None, "categories": "", "commitment": "n", "id": None,
        "kind": "1.0", "language": None, "method": "k", "notice_version": _PROBE[::-1],
        "payload": "{}", "policy_version": "s", "purpose": None, "seq": 7, "status": _PROBE,
        "actor": _PROBE, "idempotency_key": None, "subject": "\u00e9\U0001f600",
    }  # fmt: skip
    columns = ", ".join(f":{name} AS {name}" for name in row)
    try:
        cursor = conn.cursor()
        try:
            body, personal = cursor.execute(
                f"SELECT {BODY_SQL}, {PERSONAL_SQL} FROM (SELECT {columns})", row
            ).fetchone()
        finally:
            cursor.close()
    except Exception:
        return False
    q = json_string
    expected_body = BODY_JSON % (
        q(row["account"]), q(row["at"]), "[]", q(row["commitment"]), q(row["id"]),
        q(row["kind"]), q(row["language"]), q(row["method"]), q(row["notice_version"]),
        row["payload"], q(row["policy_version"]), q(row["purpose"]), row["seq"],
        q(row["status"]),
    )  # fmt: skip
    expected_personal = PERSONAL_JSON % (
        q(row["actor"]),
        q(row["idempotency_key"]),
        q(row["subject"]),
    )
    return bool(body == expected_body and personal == expected_personal)


@lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[bytes, bytes]:
    """The HMAC key's inner and outer padded blocks (RFC 2104)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


_hexdigest = operator.methodcaller("hexdigest")
_digest = operator.methodcaller("digest")
_sha256 = hashlib.sha256
_add = operator.add
_NEWLINE = b"\n"


def macs_of(key: bytes, hashes: Sequence[str]) -> list[str]:
    """HMAC-SHA-256 (hex) of each hash under ``key``, all in C: ``sha256(opad +
    sha256(ipad + h).digest())``."""
    inner, outer = _pads(key)
    firsts = map(_digest, map(_sha256, map(inner.__add__, map(str.encode, hashes))))
    return list(map(_hexdigest, map(_sha256, map(outer.__add__, firsts))))


def commitments_of(nonces: Sequence[str], personal: Sequence[bytes]) -> list[str]:
    """``events.commit_personal`` of each row (nonce hex, personal JSON bytes); raises
    ValueError for a nonce that is not hex."""
    salted = map(_add, map(_COMMITMENT_PREFIX.__add__, map(bytes.fromhex, nonces)), personal)
    return list(map(_hexdigest, map(_sha256, salted)))


class Batch:
    """The verdict on one batch of events checked in C: ``ok`` (every check held), else the
    caller checks it again in Python. On success: its last hash and first keys event."""

    __slots__ = ("bodies", "first_prev", "ids", "keys_seq", "last_hash", "ok", "rows")

    def __init__(self) -> None:
        self.ok = False
        self.rows = 0
        self.first_prev = ""
        self.last_hash = ""
        self.keys_seq: int | None = None
        self.bodies: list[bytes] = []
        self.ids: list[str] = []


def check_batch(
    cursor: Any,
    lo: int,
    hi: int,
    *,
    expected: tuple[int, str] | None,
    mac_key: bytes | None,
    leaves: bool,
) -> Batch:
    """Check the events ``lo < seq <= hi`` (``expected``: the seq and ``prev_hash`` the first
    must have; None: taken as stored, the caller checks it). ``leaves``: also keep each body
    and id (for the transparency log's leaves)."""
    batch = Batch()
    try:
        rows = cursor.execute(SELECT_IDS if leaves else SELECT, (lo, hi)).fetchall()
    except sqlite3.Error:  # e.g. a BLOB in a text column (JSON cannot hold it): Python decides
        batch.rows = -1
        return batch
    n = batch.rows = len(rows)
    if n == 0:
        batch.ok = True
        return batch
    # one list per column (zip(*rows) passes every row as an argument: slower)
    columns = [list(map(itemgetter(i), rows)) for i in range(len(rows[0]))]
    del rows
    bodies, prevs, hashes, nonces, personal, commitments, macs, ats, at_us, keys = columns[:10]
    if leaves:
        batch.bodies, batch.ids = bodies, columns[10]
    if n != hi - lo or None in bodies:  # a gap in seq, or a NULL the template cannot hold
        return batch
    first_prev = prevs[0]
    if expected is not None and (expected[0] != lo + 1 or expected[1] != first_prev):
        return batch
    if not first_prev.isascii() or prevs[1:] != hashes[:-1]:
        return batch
    chained = map(_add, map(_add, map(str.encode, prevs), repeat(_NEWLINE)), bodies)
    if list(map(_hexdigest, map(_sha256, chained))) != hashes:
        return batch
    if None in nonces:  # erased identifiers: nothing to check for those rows
        keep = [x is not None for x in nonces]
        nonces = list(compress(nonces, keep))
        personal = list(compress(personal, keep))
        commitments = list(compress(commitments, keep))
    try:
        if commitments_of(nonces, personal) != commitments:
            return batch
    except ValueError:  # a nonce that is not hex
        return batch
    if mac_key is not None and macs_of(mac_key, hashes) != macs:
        return batch
    try:
        if times_of(ats) != at_us:
            return batch
    except (ValueError, TypeError):  # a time that does not parse
        return batch
    if 1 in keys:
        batch.keys_seq = lo + 1 + keys.index(1)
    batch.ok = True
    batch.first_prev = first_prev
    batch.last_hash = hashes[-1]
    return batch


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def times_of(ats: Sequence[str]) -> list[int]:
    """Each ``at`` as the ledger reads it (``store._at_us``: ``datetime.fromisoformat``, then
    ``times.to_us``), in C; raises ValueError for one that does not parse."""
    deltas = map(operator.sub, map(datetime.fromisoformat, ats), repeat(_EPOCH))
    return list(map(operator.floordiv, deltas, repeat(_MICROSECOND)))


def leaf_hashes(bodies: Sequence[bytes]) -> list[bytes]:
    """``merkle.leaf_hash`` of each body (``sha256(b"\\x00" + body)``), in C."""
    return list(map(_digest, map(_sha256, map(b"\x00".__add__, bodies))))
