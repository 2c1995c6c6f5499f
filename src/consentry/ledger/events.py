"""Ledger events: what can happen, how an event is hashed, and what it changes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64


class Kind(enum.StrEnum):
    """Every kind of event the ledger records."""

    CONSENT_GIVEN = "consent.given"
    CONSENT_REFUSED = "consent.refused"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    OBJECTION_RAISED = "objection.raised"
    OBJECTION_LIFTED = "objection.lifted"
    MEMBER_ADDED = "member.added"
    MEMBER_REMOVED = "member.removed"
    MEMBER_INVITED = "member.invited"
    MEMBER_ACCEPTED = "member.accepted"
    MEMBER_DECLINED = "member.declined"
    ACCOUNT_SETTING = "account.setting"
    ACCOUNT_FEATURE = "account.feature"
    POLICY_PUBLISHED = "policy.published"


CONSENT_KINDS = frozenset({Kind.CONSENT_GIVEN, Kind.CONSENT_REFUSED, Kind.CONSENT_WITHDRAWN})
CONSENT_STATUS = {
    Kind.CONSENT_GIVEN: "given",
    Kind.CONSENT_REFUSED: "refused",
    Kind.CONSENT_WITHDRAWN: "withdrawn",
}


@dataclass(frozen=True)
class Draft:
    """An event as a caller asks for it, before the ledger gives it a place in the chain."""

    kind: Kind
    actor: str | None = None
    subject: str | None = None
    account: str | None = None
    purpose: str | None = None
    categories: tuple[str, ...] = ()
    status: str | None = None
    policy_version: str | None = None
    notice_version: str | None = None
    language: str | None = None
    method: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def content(self) -> dict[str, Any]:
        """The caller-supplied fields, as hashed for idempotency checks."""
        return {
            "kind": str(self.kind),
            "actor": self.actor,
            "subject": self.subject,
            "account": self.account,
            "purpose": self.purpose,
            "categories": list(self.categories),
            "status": self.status,
            "policy_version": self.policy_version,
            "notice_version": self.notice_version,
            "language": self.language,
            "method": self.method,
            "payload": dict(self.payload),
        }

    def request_hash(self) -> str:
        return sha256_hex(canonical_json(self.content()))


@dataclass(frozen=True)
class Event(Draft):
    """An event in the ledger: a draft with its id, position, time and hashes."""

    seq: int = 0
    id: str = ""
    at: datetime | None = None
    at_text: str = ""
    at_us: int = 0
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def hashed(self) -> dict[str, Any]:
        """Exactly the fields the chain hash covers."""
        body = self.content()
        body.update(seq=self.seq, id=self.id, at=self.at_text, idempotency_key=self.idempotency_key)
        return body

    def compute_hash(self) -> str:
        return chain_hash(self.prev_hash, self.hashed())

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON data (the hashed fields plus its hashes)."""
        return {**self.hashed(), "prev_hash": self.prev_hash, "hash": self.hash}


def chain_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical JSON of the event."""
    return sha256_hex(prev_hash.encode("ascii") + b"\n" + canonical_json(body))


@dataclass(frozen=True)
class Change:
    """One row of current state that an event sets (``values``) or removes (``None``)."""

    table: str
    key: tuple[str, ...]
    values: dict[str, Any] | None


def state_changes(event: Event) -> list[Change]:
    """The current-state rows an event changes.

    The one place that says what an event means for current state: the ledger applies it to
    the state tables in the append transaction, the in-memory state to its dictionaries.
    """
    kind = event.kind
    at, seq = event.at_us, event.seq
    subject = event.subject or ""
    if kind in CONSENT_KINDS:
        values = {
            "status": CONSENT_STATUS[kind],
            "at_us": at,
            "seq": seq,
            "notice_version": event.notice_version,
            "policy_version": event.policy_version,
        }
        return [
            Change("consents", (subject, event.purpose or "", c), dict(values))
            for c in event.categories
        ]
    if kind in (Kind.OBJECTION_RAISED, Kind.OBJECTION_LIFTED):
        status = "raised" if kind is Kind.OBJECTION_RAISED else "lifted"
        return [
            Change(
                "objections",
                (subject, event.purpose or "", c),
                {"status": status, "at_us": at, "seq": seq},
            )
            for c in (event.categories or ("",))
        ]
    if kind in (Kind.MEMBER_ADDED, Kind.MEMBER_ACCEPTED):
        # A member (added by the platform, or accepting an invitation) has no pending
        # invitation to that account any more.
        key = (subject, event.account or "")
        return [
            Change("memberships", key, {"at_us": at, "seq": seq}),
            Change("invitations", key, None),
        ]
    if kind is Kind.MEMBER_INVITED:
        # Pending until the subject accepts: an invitee counts for nothing in the account.
        return [
            Change(
                "invitations",
                (subject, event.account or ""),
                {"at_us": at, "seq": seq, "invited_by": event.actor},
            )
        ]
    if kind is Kind.MEMBER_DECLINED:
        return [Change("invitations", (subject, event.account or ""), None)]
    if kind is Kind.MEMBER_REMOVED:
        return [Change("memberships", (subject, event.account or ""), None)]
    if kind in (Kind.ACCOUNT_SETTING, Kind.ACCOUNT_FEATURE):
        table = "account_settings" if kind is Kind.ACCOUNT_SETTING else "account_features"
        return [
            Change(
                table,
                (event.account or "", event.purpose or ""),
                {"status": event.status, "at_us": at, "seq": seq},
            )
        ]
    if kind is Kind.POLICY_PUBLISHED:
        p = event.payload
        return [
            Change(
                "policies",
                (str(event.policy_version),),
                {
                    "policy_id": p["policy_id"],
                    "effective_us": p["effective_us"],
                    "digest": p["digest"],
                    "document": canonical_json(p["document"]).decode("utf-8"),
                    "at_us": at,
                    "seq": seq,
                },
            )
        ]
    raise ValueError(f"unknown event kind {kind!r}")


STATE_KEYS: dict[str, tuple[str, ...]] = {
    "consents": ("subject", "purpose", "category"),
    "objections": ("subject", "purpose", "category"),
    "memberships": ("subject", "account"),
    "invitations": ("subject", "account"),
    "account_settings": ("account", "purpose"),
    "account_features": ("account", "purpose"),
    "policies": ("version",),
}
