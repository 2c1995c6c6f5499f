"""The chain's per-event checks with the string work done by SQLite (SQLite only).

``ledger verify`` recomputes, for every event, the canonical JSON of its body and of its
personal fields, three SHA-256, and reads its time. In Python each row cost ~15 µs of CPU,
most of it in making one Python object per column and in formatting. Here SQLite builds the
two texts in its own C code, in the SELECT (``BODY_SQL``: ``events.BODY_JSON`` as three
``json_object`` calls with the stored categories and payload spliced between them;
``PERSONAL_SQL``: ``events.PERSONAL_JSON``). A batch comes back as ONE row
(:data:`AGGREGATE`): each column's values joined by ``group_concat``, so that Python makes a
handful of objects per batch instead of ten per event (making them was a fifth of the chain's
CPU). Python splits the two texts it hashes, hashes with copies of started hash objects
(OpenSSL 3 looks the algorithm up on every ``hashlib.sha256()``) and compares each column
whole, as one joined string: the ``prev_hash`` links, the body hash, the commitment, the MAC
(HMAC-SHA-256 from the key's padded blocks, RFC 2104) and the time (``at`` must be exactly
``format_time(at_us)``, what the ledger writes).

Why this is the same check as :func:`consentry.ledger.verifying.scan` (tests/test_chain_sql.py
holds each part):

- SQLite's JSON strings (``json_object``, ``json_quote``) are
  ``json.encoder.encode_basestring``'s for every code point (checked exhaustively for the
  SQLite in use; :func:`usable` probes the special characters at run time, and if this SQLite
  writes them differently the Python path is used); NULL is ``null`` as ``json_string(None)``;
  ``seq`` is written as ``%d`` writes it; an empty or NULL ``categories`` is ``[]`` as
  ``categories or "[]"``; the payload is spliced as stored.
- the time: ``at`` written exactly as ``times.format_time`` writes ``at_us`` is what
  ``datetime.fromisoformat`` reads as ``at_us``; any other spelling goes to Python, which
  reads it as the ledger does.
- joined columns: the separator (``,``, or ``\x1e`` between JSON texts) never occurs in what
  Python computes (hex digests) nor in canonical JSON, and the row count is known, so two
  joins are equal exactly when every row's values are; a stored value holding a separator
  makes the batch fail here, and Python decides it.
- text that is not UTF-8 (SQLite keeps any bytes in a TEXT column): the batch goes to Python,
  which names the event as changed (the ledger only writes UTF-8).

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
from itertools import repeat
from typing import Any

from ..times import format_time, from_us
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


#: Between two rows' texts in a batch's aggregates. Canonical JSON never holds it raw (a JSON
#: string escapes every control character), nor does a hex hash: a row whose stored text does
#: (tampered) splits into one piece too many, and the batch goes to the Python pass.
_SEP = b"\x1e"
#: The time as the ledger writes it (``times.format_time``), from ``at_us``: a row whose ``at``
#: is not exactly this (or whose ``at_us`` is not an integer) sends the batch to the Python
#: pass, which reads ``at`` as the ledger does. Exact for ``at_us`` >= 0; earlier times (none
#: that the ledger writes) just go to Python.
_TIME_BAD = (
    "typeof(at_us) != 'integer' OR at_us < 0 OR at IS NOT "
    "(strftime('%Y-%m-%dT%H:%M:%S', at_us / 1000000, 'unixepoch') "
    "|| printf('.%06dZ', at_us % 1000000))"
)
#: One row per batch: the rows' texts joined, so that Python makes a handful of objects per
#: batch instead of ten per event (the fetch of ten columns per row was most of the chain's
#: CPU). ``group_concat`` follows the subquery's ``seq`` order (if it ever did not, the hashes
#: would not match and the Python pass would decide: slower, never wrong).
AGGREGATE = f"""
SELECT count(*), min(seq), max(seq),
  CAST(group_concat(CAST(prev_hash || char(10) || {BODY_SQL} AS BLOB), X'1e') AS BLOB),
  CAST(group_concat(hash, ',') AS BLOB), group_concat(prev_hash, ','),
  count(nonce), min(length(nonce)), max(length(nonce)), group_concat(nonce, ''),
  CAST(group_concat(CASE WHEN nonce IS NOT NULL THEN CAST({PERSONAL_SQL} AS BLOB) END,
    X'1e') AS BLOB),
  group_concat(CASE WHEN nonce IS NOT NULL THEN commitment END, ','),
  count(CASE WHEN nonce IS NOT NULL THEN commitment END),
  group_concat(mac, ','), count(mac),
  group_concat(at, ','), group_concat(at_us, ','), sum(typeof(at_us) != 'integer'),
  min(CASE WHEN kind = '{_KEYS_KIND}' THEN seq END),
  group_concat(id, ',')
FROM events WHERE seq > ? AND seq <= ?
"""


def _hex_sha256(base: Any, texts: Sequence[bytes]) -> list[str]:
    """SHA-256 (hex) of ``base``'s input followed by each text. Copying a started hash object
    skips the algorithm look-up that ``hashlib.sha256()`` makes on every call with OpenSSL 3
    (a third of a short hash's cost there)."""
    out: list[str] = []
    append = out.append
    copy = base.copy
    for text in texts:
        h = copy()
        h.update(text)
        append(h.hexdigest())
    return out


def _hex_hmacs(key: bytes, hashes: Sequence[bytes]) -> list[str]:
    """:func:`macs_of` (of the hashes as ASCII bytes) from the key's started inner and outer
    hashes (RFC 2104)."""
    inner_pad, outer_pad = _pads(key)
    inner, outer = _sha256(inner_pad).copy, _sha256(outer_pad).copy
    out: list[str] = []
    append = out.append
    for text in hashes:
        i = inner()
        i.update(text)
        o = outer()
        o.update(i.digest())
        append(o.hexdigest())
    return out


#: slice objects of the nonces in a batch's joined nonce bytes, made once
_NONCE_SLICES = [slice(16 * i, 16 * i + 16) for i in range(BATCH)]


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
    and id (for the transparency log's leaves). At most :data:`BATCH` events."""
    batch = Batch()
    try:
        row = cursor.execute(AGGREGATE, (lo, hi)).fetchone()
    except sqlite3.Error:  # e.g. text that is not UTF-8, a BLOB JSON cannot hold: Python decides
        batch.rows = -1
        return batch
    n = batch.rows = row[0]
    if n == 0:
        batch.ok = True
        return batch
    if hi - lo > BATCH:
        raise ValueError(f"a batch holds at most {BATCH} events")
    if _verdict(batch, row, lo, hi, expected, mac_key, leaves):
        batch.ok = True
    return batch


def _verdict(
    batch: Batch,
    row: Sequence[Any],
    lo: int,
    hi: int,
    expected: tuple[int, str] | None,
    mac_key: bytes | None,
    leaves: bool,
) -> bool:
    """Whether every check holds for the batch's aggregate ``row`` (see :data:`AGGREGATE`);
    fills in ``batch``. Each joined text is compared whole: with the separator absent from
    what Python computes (hex digests) and the row count known, two joins are equal exactly
    when every row's value is."""
    (n, first, last, chained, hash_bytes, prevs, n_nonces, short, long, nonces, personal,
     commitments, n_commitments, macs, n_macs, ats, at_us, odd_times, keys_seq,
     ids) = row  # fmt: skip
    if n != hi - lo or first != lo + 1 or last != hi or None in (chained, hash_bytes):
        return False  # a gap in seq, or a NULL the template cannot hold
    # Rows whose nonce was erased (with their identifiers) commit to nothing anyone can check:
    # only the others' commitments are compared, as in the Python pass.
    m = n_nonces
    if m and (n_commitments != m or short != 32 or long != 32 or personal is None):
        return False  # odd nonces, or a NULL the template cannot hold
    if odd_times or not _times_written(ats, at_us):
        return False  # a time to read as the ledger reads it (or not a time)
    if mac_key is not None and n_macs != n:
        return False
    pieces = chained.split(_SEP)
    people = personal.split(_SEP) if m else []
    if len(pieces) != n or len(people) != m or not _utf8((chained, personal or b"", hash_bytes)):
        return False
    hashes = hash_bytes.decode()
    head = pieces[0][:65]
    if len(head) != 65 or head[64:] != _NEWLINE or not head.isascii():
        return False
    first_prev = head[:64].decode()
    if expected is not None and (expected[0] != lo + 1 or expected[1] != first_prev):
        return False
    if ",".join(_hex_sha256(_EMPTY_SHA256, pieces)) != hashes:
        return False
    # every hash is now 64 hex digits: each prev_hash is the hash before it
    if prevs != (f"{first_prev},{hashes[:-65]}" if n > 1 else first_prev):
        return False
    if m and not _commitments_hold(nonces, people, commitments):
        return False
    if mac_key is not None and ",".join(_hex_hmacs(mac_key, hash_bytes.split(b","))) != macs:
        return False
    if leaves:
        id_list = ids.split(",") if ids is not None else []
        if len(id_list) != n:
            return False
        batch.ids = id_list
        batch.bodies = [piece[65:] for piece in pieces]
    batch.keys_seq = keys_seq
    batch.first_prev = first_prev
    batch.last_hash = hashes[-64:]
    return True


def _commitments_hold(nonces: str, people: list[bytes], commitments: str) -> bool:
    """Whether each row's commitment is ``events.commit_personal`` of its nonce and personal
    JSON (``nonces``: the rows' hex nonces, each 32 digits, joined with nothing)."""
    try:
        salts = bytes.fromhex(nonces)
    except ValueError:  # a nonce that is not hex
        return False
    if len(salts) != 16 * len(people):
        return False  # (a nonce with spaces, which fromhex skips)
    salted = map(_add, map(salts.__getitem__, _NONCE_SLICES[: len(people)]), people)
    return ",".join(_hex_sha256(_COMMITMENT_BASE, list(salted))) == commitments


#: "YYYY-MM-DDTHH:MM:SS." of each second seen (``times.format_time``'s first 20 characters)
_SECONDS: dict[int, str] = {}


def _times_written(ats: str | None, at_us: str | None) -> bool:
    """Whether each row's ``at`` is exactly ``times.format_time`` of its ``at_us`` (what the
    ledger writes: then ``datetime.fromisoformat(at)`` is ``at_us``, as the Python pass
    reads it). ``ats`` and ``at_us``: the batch's values joined with commas. False sends the
    batch to the Python pass, which reads other spellings as the ledger does."""
    if ats is None or at_us is None:
        return False
    try:
        micros = list(map(int, at_us.split(",")))
    except ValueError:
        return False
    if not micros or min(micros) < 0:
        return False
    seconds = list(map(operator.floordiv, micros, repeat(1_000_000)))
    known = _SECONDS  # shared (threads may verify at once): only read and added to here
    texts = dict(zip(seconds, map(known.get, seconds), strict=True))
    for second, text in texts.items():
        if text is None:
            text = format_time(from_us(second * 1_000_000))[:20]
            if len(text) != 20:
                return False
            if len(known) < 100_000:
                known[second] = text
            texts[second] = text
    fractions = map(operator.mod, micros, repeat(1_000_000))
    return ",".join(map(_TIME_TEXT, map(texts.__getitem__, seconds), fractions)) == ats


_TIME_TEXT = "{}{:06d}Z".format
_EMPTY_SHA256 = _sha256()
_COMMITMENT_BASE = _sha256(_COMMITMENT_PREFIX)


def _utf8(texts: Sequence[bytes]) -> bool:
    """Whether every text is valid UTF-8, in one C call: SQLite hands back the bytes a TEXT
    column holds, and one written around the store may not be UTF-8 (the ledger's texts all
    are, so such an event was changed; the Python pass says which). Joined with a newline so
    that no character can straddle two texts."""
    try:
        _NEWLINE.join(texts).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
