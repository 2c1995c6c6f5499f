"""What a gate run returns and records: the result, the lineage record, the digests.

Item-id digests
---------------

A lineage record names exactly which items went in and which came out with two SHA-256
digests. Both are *order-free*: the same set of items gives the same digest however the rows
are ordered or split into files, so ``gate verify`` can recompute them from the outputs and a
Spark run gives the same digests as a DuckDB run. Two methods:

``multiset-md5-v1`` (the default; one pass, no sort, 100M ids in seconds)
    For each item id ``x`` (UTF-8): ``v(x)`` = the first 8 bytes of MD5(``x``) read as a
    little-endian unsigned 64-bit integer. ``S`` = the sum of ``v(x)`` over all items,
    modulo 2**64. The digest is SHA-256 of the ASCII text
    ``"consentry.multiset.v1\\n{n}\\n{S:016x}\\n"`` where ``n`` is the number of items.
    Any accidental change to the set (an item added, dropped, duplicated or renamed) changes
    it with probability 1 - 2**-64. It is a checksum, not a commitment: someone who can choose
    item ids could construct a collision. The lineage record itself is bound to the
    hash-chained ledger through ``ledger_hash``.

``sorted-sha256-v1`` (exact; sorts the ids, so use it for smaller datasets)
    SHA-256 of the item ids in byte order, each followed by ``"\\n"``: what
    ``LC_ALL=C sort ids.txt | sha256sum`` prints for a file with one id per line.
    Item ids must not contain a newline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..canonical import canonical_json, sha256_hex

MULTISET = "multiset-md5-v1"
SORTED = "sorted-sha256-v1"
DIGEST_METHODS = {"multiset": MULTISET, "sorted": SORTED, MULTISET: MULTISET, SORTED: SORTED}
MASK64 = (1 << 64) - 1
REPORT_NAME = "report.json"
RECORD_VERSION = 1


def digest_method(name: str) -> str:
    from ..errors import InvalidInput

    try:
        return DIGEST_METHODS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown digest method {name!r}", hint="use multiset (default) or sorted"
        ) from None


def md5_value(item_id: str) -> int:
    """``v(x)`` of the multiset digest for one id."""
    return int.from_bytes(hashlib.md5(item_id.encode("utf-8")).digest()[:8], "little")


def multiset_digest(count: int, total: int) -> str:
    """The ``multiset-md5-v1`` digest of ``count`` items whose ``v`` values sum to ``total``."""
    text = f"consentry.multiset.v1\n{count}\n{total & MASK64:016x}\n"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def multiset_of(values: Iterable[str]) -> str:
    """The ``multiset-md5-v1`` digest of some strings, computed in Python (small inputs)."""
    n = total = 0
    for v in values:
        n += 1
        total += md5_value(v)
    return multiset_digest(n, total)


def sorted_digest(values: Iterable[str]) -> str:
    """The ``sorted-sha256-v1`` digest of some strings, computed in Python (small inputs)."""
    h = hashlib.sha256()
    for v in sorted(values, key=lambda s: s.encode("utf-8")):
        h.update(v.encode("utf-8") + b"\n")
    return h.hexdigest()


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a lineage record (without its own digest)."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return sha256_hex(canonical_json(body))


@dataclass(frozen=True)
class LineageRecord:
    """What the store keeps about one dataset, exactly as ``report.json`` states it."""

    data: Mapping[str, Any]
    sha256: str

    @property
    def dataset_id(self) -> str:
        return str(self.data["dataset_id"])

    def to_dict(self) -> dict[str, Any]:
        return {**dict(self.data), "record_sha256": self.sha256}

    @classmethod
    def make(cls, data: Mapping[str, Any]) -> LineageRecord:
        data = json.loads(canonical_json(dict(data)))  # plain JSON types only
        return cls(data, record_digest(data))


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate run."""

    dataset_id: str
    name: str
    purpose: str
    as_of: str
    policy_version: str | None
    ledger_seq: int
    input_items: int
    allowed: int
    excluded: int
    #: Items per reason: the allow reasons (contract, consent, ...) and the exclusions.
    by_reason: Mapping[str, int]
    #: Where the outputs are: allowed, excluded, report (empty for an in-memory Spark run).
    paths: Mapping[str, Path]
    lineage: LineageRecord
    seconds: float = 0.0
    #: True when an idempotency key matched an earlier run: nothing was run again.
    replayed: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def excluded_by_reason(self) -> dict[str, int]:
        from .decisions import ALLOW_CODES, REASONS

        allow = {REASONS[c] for c in ALLOW_CODES}
        return {k: v for k, v in self.by_reason.items() if k not in allow}

    @property
    def allowed_by_reason(self) -> dict[str, int]:
        excluded = self.excluded_by_reason
        return {k: v for k, v in self.by_reason.items() if k not in excluded}

    @property
    def rows_per_second(self) -> float:
        return self.input_items / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "purpose": self.purpose,
            "as_of": self.as_of,
            "policy_version": self.policy_version,
            "ledger_seq": self.ledger_seq,
            "counts": {
                "input": self.input_items,
                "allowed": self.allowed,
                "excluded": self.excluded,
                "allowed_by_reason": self.allowed_by_reason,
                "excluded_by_reason": self.excluded_by_reason,
            },
            "paths": {k: str(v) for k, v in self.paths.items()},
            "seconds": round(self.seconds, 3),
            "replayed": self.replayed,
            "lineage": self.lineage.to_dict(),
        }

    @classmethod
    def from_record(
        cls, record: LineageRecord, out: Path | None, *, replayed: bool = False
    ) -> GateResult:
        d = record.data
        counts = d["counts"]
        by_reason = {**counts.get("allowed_by_reason", {}), **counts["excluded_by_reason"]}
        paths: dict[str, Path] = {}
        outputs = d.get("outputs") or {}
        if out is None and outputs.get("dir"):
            out = Path(outputs["dir"])  # where the run wrote them (a replayed run)
        if out is not None and outputs:
            paths = {k: out / v for k, v in outputs["files"].items()}
            paths["report"] = out / REPORT_NAME
        return cls(
            dataset_id=str(d["dataset_id"]),
            name=str(d["name"]),
            purpose=str(d["purpose"]),
            as_of=str(d["as_of"]),
            policy_version=d.get("policy_version"),
            ledger_seq=int(d["ledger"]["seq"]),
            input_items=int(counts["input"]),
            allowed=int(counts["allowed"]),
            excluded=int(counts["excluded"]),
            by_reason=by_reason,
            paths=paths,
            lineage=record,
            replayed=replayed,
        )
