"""A receipt's evidence, and checking a receipt with nothing but pinned public keys.

A receipt document (``consentry receipt show``) has three parts:

``receipt`` + ``signature``  the ISO/IEC TS 27560 fields, signed with the receipt key;
``evidence.event``           the ledger event as stored: its content, its personal fields with
                             the nonce of their commitment, ``prev_hash`` and ``hash``;
``evidence.proof``           a signed checkpoint (C2SP note) and the RFC 9162 inclusion proof
                             of the event's leaf in the tree that checkpoint signs.

:func:`verify_receipt_offline` checks, without a store: the receipt's signature against the
pinned receipt key; that the event hashes to the hash the receipt names and that the receipt's
fields are the event's; the checkpoint's signature against the pinned log key; and the
inclusion proof. Nothing in the document is trusted that the pinned keys do not vouch for.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..canonical import canonical_json
from ..errors import InvalidInput, SignatureInvalid
from .checkpoint import Checkpoint, NoteVerifier, read_checkpoint
from .events import (
    CONSENT_STATUS,
    NOTICE_SERVED,
    PERSONAL_FIELDS,
    Event,
    chain_hash,
    event_body,
)
from .events import personal_commitment as commit
from .merkle import ProofError, leaf_hash, root_from_inclusion
from .receipts import key_id, keys_of_jwks, verify_signed

_VKEY = re.compile(r"^[^+\s]+\+[0-9a-f]{8}\+")
_CONTENT_FIELDS = (
    "kind", "account", "purpose", "categories", "status", "policy_version", "notice_version",
    "language", "method", "payload",
)  # fmt: skip


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt that verified: what it proves."""

    record_id: str
    seq: int
    event_hash: str
    receipt_key_id: str
    checkpoint: Checkpoint
    event: Event | None = None  # with a store: the stored event it was compared with
    #: Why the consent lacks evidence that its notice was shown first (None: it has it, or,
    #: for a receipt from before notice evidence, nothing can be said offline).
    notice_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": True,
            "notice_problem": self.notice_problem,
            "record_id": self.record_id,
            "seq": self.seq,
            "event_hash": self.event_hash,
            "key_id": self.receipt_key_id,
            "checkpoint": {"size": self.checkpoint.size, "root": self.checkpoint.root_hex,
                           "time": self.checkpoint.time},
        }  # fmt: skip


def evidence_for(event: Event, checkpoint: Checkpoint, path: Sequence[bytes]) -> dict[str, Any]:
    """The ``evidence`` block of a receipt: the event and its inclusion proof."""
    stored = event.to_dict()
    stored["nonce"] = event.nonce  # lets the holder check the commitment names them
    return {
        "event": stored,
        "proof": {
            "checkpoint": checkpoint.note,
            "leaf_index": event.seq - 1,
            "tree_size": checkpoint.size,
            "inclusion": [base64.b64encode(h).decode("ascii") for h in path],
        },
    }


def _event_hash_of(stored: Mapping[str, Any]) -> tuple[str, bytes]:
    """Recompute the event's hash and leaf from the evidence (checking its commitment)."""
    nonce = stored.get("nonce")
    personal = {k: stored.get(k) for k in PERSONAL_FIELDS}
    if not isinstance(nonce, str) or commit(nonce, personal) != stored.get("commitment"):
        raise SignatureInvalid(
            "the receipt's event does not match its commitment: its subject, actor or "
            "idempotency key was changed",
            hint="ask the issuer for a fresh receipt",
        )
    content = {k: stored.get(k) for k in _CONTENT_FIELDS}
    body = event_body(content, stored["commitment"], stored["seq"], stored["id"], stored["at"])
    return chain_hash(stored["prev_hash"], body), leaf_hash(canonical_json(body))


def _receipt_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """The event fields a receipt states, in the event's terms."""
    record = document["receipt"]
    purpose = (record.get("purposes") or [{}])[0]
    notice = record.get("notice") or {}
    status = record.get("status")
    kinds = {v: str(k) for k, v in CONSENT_STATUS.items()}
    categories = purpose.get("pii_categories")
    served = notice.get("served_event") or {}
    fields = {
        "id": record.get("record_id"),
        "at": record.get("consent_timestamp"),
        "kind": kinds.get(status, f"consent.{status}"),
        "subject": record.get("pii_principal_id"),
        "actor": record.get("actor"),
        "purpose": purpose.get("purpose"),
        "categories": [] if categories == ["*"] else categories,
        "policy_version": notice.get("policy_version"),
        "notice_version": notice.get("notice_version"),
        "language": notice.get("language"),
        "method": None if record.get("collection_method") == "unspecified"
        else record.get("collection_method"),
        "seq": (record.get("ledger") or {}).get("seq"),
        "hash": (record.get("ledger") or {}).get("hash"),
        "prev_hash": (record.get("ledger") or {}).get("prev_hash"),
    }  # fmt: skip
    if "served_event" in notice:  # version 2: the consent names the notice.served event
        fields[NOTICE_SERVED] = served.get("id")
    return fields


def _actual(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields as :func:`_receipt_fields` names them."""
    out = dict(event)
    out[NOTICE_SERVED] = (event.get("payload") or {}).get(NOTICE_SERVED)
    return out


def _differences(stated: Mapping[str, Any], actual: Mapping[str, Any], what: str) -> list[str]:
    out = []
    for name, value in stated.items():
        have = actual.get(name)
        if isinstance(have, tuple):
            have = list(have)
        if value != have:
            out.append(f"{name} is {value!r} in the receipt but {have!r} in {what}")
    return out


def compare_with_event(document: Mapping[str, Any], event: Event) -> list[str]:
    """Each receipt field that differs from the stored event, in words."""
    actual = _actual(event.to_dict())
    actual["kind"] = str(event.kind)
    return _differences(_receipt_fields(document), actual, "the ledger")


def verify_receipt_offline(
    document: Mapping[str, Any],
    *,
    receipt_key: str | Sequence[str],
    log_key: str | NoteVerifier,
    checkpoint: str | None = None,
) -> ReceiptCheck:
    """Check a receipt with only the pinned keys (see the module docstring); raise
    :class:`SignatureInvalid` naming what does not hold, else say what it proves.

    ``checkpoint``: a checkpoint note the verifier already trusts (from the witness location);
    the receipt's proof must be against a tree of the same size and root.
    """
    signer = verify_signed(document, receipt_key)
    verifier = log_key if isinstance(log_key, NoteVerifier) else NoteVerifier.parse(log_key)
    try:
        evidence = document["evidence"]
        stored = evidence["event"]
        proof = evidence["proof"]
        path = [base64.b64decode(h, validate=True) for h in proof["inclusion"]]
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        note = str(proof["checkpoint"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise InvalidInput(
            "the receipt carries no evidence (event and inclusion proof)",
            hint="fetch it again with `consentry receipt show` (receipts made before the "
            "transparency log have none)",
        ) from None
    event_hash, leaf = _event_hash_of(stored)
    stated = _receipt_fields(document)
    if event_hash != stored.get("hash") or event_hash != stated["hash"]:
        raise SignatureInvalid(
            "the receipt's event does not hash to the hash the receipt names: the event was "
            "changed",
            hint="ask the issuer for a fresh receipt",
        )
    differing = _differences(stated, _actual(stored), "its event")
    if differing:
        raise SignatureInvalid(
            "the receipt says something its event does not: " + "; ".join(differing),
            hint="the receipt or its event was altered",
            fields=differing,
        )
    signed = read_checkpoint(note, verifier)
    if checkpoint is not None:
        trusted = read_checkpoint(checkpoint, verifier)
        if (trusted.size, trusted.root) != (signed.size, signed.root):
            raise SignatureInvalid(
                f"the receipt is proved against the checkpoint of {signed.size} events, not "
                f"the one given ({trusted.size} events)",
                hint="fetch the receipt with `consentry receipt show ID --checkpoint FILE` "
                "(or GET /v1/receipts/ID?checkpoint_size=N) to prove it against yours",
            )
    if size != signed.size or index != stored["seq"] - 1:
        raise SignatureInvalid("the inclusion proof is for another leaf or tree size")
    try:
        root = root_from_inclusion(index, size, leaf, path)
    except ProofError as exc:
        raise SignatureInvalid(f"the inclusion proof is malformed: {exc}") from None
    if root != signed.root:
        raise SignatureInvalid(
            "the event is not in the log the checkpoint signs: its inclusion proof leads to "
            "another root",
            hint="the event or the proof was altered",
        )
    return ReceiptCheck(
        str(stored["id"]),
        int(stored["seq"]),
        event_hash,
        key_id(signer),
        signed,
        notice_problem=_offline_notice_problem(document["receipt"]),
    )


def _offline_notice_problem(record: Mapping[str, Any]) -> str | None:
    """What a receipt itself says of notice evidence: a version-2 receipt names the
    ``notice.served`` event the consent followed, or says there was none."""
    notice = record.get("notice") or {}
    if "served_event" not in notice or notice["served_event"] is not None:
        return None
    return (
        f"no notice was recorded as shown before this consent (notice version "
        f"{notice.get('notice_version')}, language {notice.get('language')})"
    )


def load_pins(values: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """Pinned keys from the CLI: each value a file or a literal — a public-keys JSON file
    (``consentry ledger public-keys``), a JWKS (``consentry receipt jwks``: every receipt key,
    retired ones too), a log verifier key (``name+id+key``), or a receipt public key
    (base64). Returns (receipt keys, log verifier key)."""
    receipt_keys: list[str] = []
    log_key: str | None = None
    for value in values:
        text = value
        path = Path(value)
        try:
            if len(value) < 4096 and path.is_file():
                text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read key file {value}: {exc}") from None
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                raise InvalidInput(f"{value} is not a public-keys JSON file") from None
            if not isinstance(data, dict):
                raise InvalidInput(f"{value} is not a public-keys JSON file")
            if "keys" in data:
                receipt_keys.extend(keys_of_jwks(data))
                continue
            receipt_keys.extend(data.get("receipt_public_keys") or [])
            if isinstance(data.get("receipt_public_key"), str):
                receipt_keys.append(data["receipt_public_key"])
            log_key = data.get("log_verifier_key", log_key)
        elif _VKEY.match(text):
            log_key = text
        else:
            receipt_keys.append(text)
    return (receipt_keys or None), log_key


__all__ = [
    "ReceiptCheck",
    "compare_with_event",
    "evidence_for",
    "load_pins",
    "verify_receipt_offline",
]
