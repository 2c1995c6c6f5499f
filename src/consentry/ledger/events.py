"""Ledger events: what can happen, how an event is hashed, and what it changes."""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Collection, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from ..canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64

#: The fields of an event that can name a person. The hash chain and the transparency log cover
#: a salted commitment to them, not the fields themselves, so that erasing a person's
#: identifiers later (nulling these columns and the nonce) leaves every hash verifiable.
PERSONAL_FIELDS = ("subject", "actor", "idempotency_key")
#: Payload fields, per kind, that hold an id of the event's subject (the same person): an
#: erasure of the subject must make them unreadable too (issue 16 §2; see ``aliases``).
PERSONAL_PAYLOAD_FIELDS = {"subject.linked": ("alias",), "subject.unlinked": ("alias",)}
#: The payload field of a link naming the other id.
ALIAS = "alias"
_COMMITMENT_PREFIX = b"consentry-personal-v1\n"


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
    #: The store's public keys (receipts, log), recorded so that a key swapped in the database
    #: is detected: the ledger says which keys the store signs with.
    KEYS_REGISTERED = "keys.registered"
    #: A notice version was shown to a person in a language (the ``/me`` page, or the
    #: platform saying so): the evidence that a consent followed a notice (ANCR level B).
    NOTICE_SERVED = "notice.served"
    #: One person known under another id (issue 16 §3): ``subject`` is the person (their
    #: primary id), ``payload["alias"]`` the other id, which now resolves to them.
    SUBJECT_LINKED = "subject.linked"
    SUBJECT_UNLINKED = "subject.unlinked"
    #: A Global Privacy Control signal from the subject (issue 16 §5): what it means under the
    #: policy is recorded as refusals and objections in the same transaction; by itself it
    #: changes no state.
    SIGNAL_GPC = "signal.gpc"


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
    #: What the caller asked for, when the store filled in fields it derives (the policy
    #: version in effect, a default notice version or language): idempotent retries compare
    #: this, so a retry of the same request still matches after a new version took effect.
    #: Not part of the event (nor of its hash); None: ``content()`` is what was asked; bytes:
    #: the canonical JSON of what was asked, already made (a bulk import spells it).
    asked: Mapping[str, Any] | bytes | None = field(default=None, compare=False, repr=False)

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
        """The hash idempotent retries compare (see ``asked``)."""
        if isinstance(self.asked, bytes):
            return sha256_hex(self.asked)
        asked = self.asked if self.asked is not None else self.content()
        return sha256_hex(canonical_json(asked))


_DRAFT_DEFAULTS = {
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default
    for f in fields(Draft)
    if f.name != "kind"
}


def make_draft(**values: Any) -> Draft:
    """``Draft(**values)`` without the frozen dataclass's constructor (a dozen
    ``object.__setattr__`` calls: a bulk import makes one draft per row). The values are
    taken as given (the caller passes the types Draft declares)."""
    draft = object.__new__(Draft)
    fields = vars(draft)
    fields.update(_DRAFT_DEFAULTS, payload={})
    fields.update(values)
    return draft


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
    #: Hex of the random salt of ``commitment`` (None once the person's identifiers are erased).
    nonce: str | None = None
    #: SHA-256 commitment to the personal fields (see :func:`personal_commitment`).
    commitment: str = ""
    #: HMAC of ``hash`` under the store's log key: only the store's writers can make it.
    mac: str | None = None

    def personal(self) -> dict[str, Any]:
        """The fields that can name a person."""
        return {
            "subject": self.subject,
            "actor": self.actor,
            "idempotency_key": self.idempotency_key,
        }

    def body(self) -> dict[str, Any]:
        """Exactly the fields the chain hash and the log leaf cover: the event's content with
        the personal fields replaced by their commitment, and its place in the ledger."""
        return event_body(self.content(), self.commitment, self.seq, self.id, self.at_text)

    def hashed(self) -> dict[str, Any]:
        """The hashed body (kept under its old name)."""
        return self.body()

    def compute_hash(self) -> str:
        return chain_hash(self.prev_hash, self.body())

    def commitment_matches(self) -> bool | None:
        """Whether the stored commitment is the one the personal fields and nonce give
        (None when the nonce was erased and nothing can be checked)."""
        if self.nonce is None:
            return None
        return personal_commitment(self.nonce, self.personal()) == self.commitment

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON data (its content, place, commitment and hashes)."""
        data = self.content()
        data.update(
            seq=self.seq,
            id=self.id,
            at=self.at_text,
            idempotency_key=self.idempotency_key,
            commitment=self.commitment,
            prev_hash=self.prev_hash,
            hash=self.hash,
        )
        return data


def event_body(
    content: Mapping[str, Any], commitment: str, seq: int, event_id: str, at_text: str
) -> dict[str, Any]:
    """The hashed body of an event from its draft content (see :meth:`Event.body`)."""
    body = {k: v for k, v in content.items() if k not in PERSONAL_FIELDS}
    body.update(commitment=commitment, seq=seq, id=event_id, at=at_text)
    return body


def personal_commitment(nonce_hex: str, personal: Mapping[str, Any]) -> str:
    """SHA-256 over a random nonce and the canonical JSON of the personal fields.

    Hiding (the nonce is random, so the commitment does not reveal a guessable id) and binding
    (a different id would need a SHA-256 collision). With the nonce, anyone holding the event
    can check it names this person; once the nonce is erased, nobody can.
    """
    try:
        salt = bytes.fromhex(nonce_hex)
    except ValueError:
        return ""  # a nonce that is not hex commits to nothing (verification then fails)
    return commit_personal(
        salt, personal.get("subject"), personal.get("actor"), personal.get("idempotency_key")
    )


def commit_personal(salt: bytes, subject: str | None, actor: str | None, key: str | None) -> str:
    """:func:`personal_commitment` from the raw nonce and the three fields (the write path)."""
    data = PERSONAL_JSON % (json_string(actor), json_string(key), json_string(subject))
    return hashlib.sha256(_COMMITMENT_PREFIX + salt + data.encode("utf-8")).hexdigest()


# canonical_json of the personal fields, spelled out: the keys in sorted order. The write path
# and verification run it once per event, and the template is several times faster.
PERSONAL_JSON = '{"actor":%s,"idempotency_key":%s,"subject":%s}'

#: canonical_json of an event body (:func:`event_body`) spelled out the same way, for the write
#: path and verification: the keys in sorted order, each string as ``json_string`` writes it,
#: the categories and the payload as their own canonical JSON. A property test holds the two
#: spellings equal (tests/test_transparency.py).
BODY_JSON = (
    '{"account":%s,"at":%s,"categories":%s,"commitment":%s,"id":%s,"kind":%s,"language":%s,'
    '"method":%s,"notice_version":%s,"payload":%s,"policy_version":%s,"purpose":%s,"seq":%d,'
    '"status":%s}'
)


def json_string(value: str | None) -> str:
    """A string (or None) exactly as canonical JSON writes it."""
    return "null" if value is None else encode_basestring(value)


def chain_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical JSON of the event body."""
    return sha256_hex(prev_hash.encode("ascii") + b"\n" + canonical_json(body))


def event_mac(key: bytes, event_hash: str) -> str:
    """HMAC-SHA-256 of an event's hash under the store's event key (see ``Ledger.mac_key``)."""
    return hmac.digest(key, event_hash.encode("ascii"), "sha256").hex()  # one-shot: C speed


#: Payload field of an imported consent: when the person made the choice in the system it
#: was collected by (RFC 3339, as ``format_time`` writes it). The event's own ``at`` stays the
#: moment this ledger recorded it; the consent record counts from ``captured_at``.
CAPTURED_AT = "captured_at"
#: Payload field of an imported consent: the categories for which the subject's record holds
#: a choice made later than ``captured_at`` (listed at import; the event changes nothing for
#: them: the newer choice stands).
SUPERSEDED = "superseded"
#: Payload field of a consent: the id of the ``notice.served`` event (same subject, notice
#: version and language) that it followed; absent when no notice was recorded as shown.
NOTICE_SERVED = "notice_served"
#: Payload field of a ``notice.served`` event: the SHA-256 of the notice's exact text in the
#: language served (``Notice.digest``).
NOTICE_SHA256 = "notice_sha256"


def captured_us(text: Any) -> int:
    """Microseconds since the epoch of a ``captured_at`` value (ValueError if it is not an
    RFC 3339 time with an offset)."""
    if not isinstance(text, str):
        raise ValueError(f"captured_at is not a time: {text!r}")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"captured_at has no time zone: {text!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Change(NamedTuple):
    """One row of current state that an event sets (``values``) or removes (``None``).
    ``values`` is read-only (the changes of one event may share one dict).

    A named tuple (not a frozen dataclass): made for every event on the write path and for
    every event again when ``ledger verify`` replays the chain, where the dataclass
    constructor was a fifth of the replay's time."""

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
        payload = event.payload
        superseded: Collection[str] = ()
        if payload and CAPTURED_AT in payload:
            # An imported choice: its record carries the moment it was made, so that expiry
            # and re-consent count from then (decisions read the record's ``at_us``).
            at = captured_us(payload[CAPTURED_AT])
            superseded = payload.get(SUPERSEDED) or ()
        values = {
            "status": CONSENT_STATUS[kind],
            "at_us": at,
            "seq": seq,
            "notice_version": event.notice_version,
            "policy_version": event.policy_version,
        }
        # One values dict for all the event's categories: a change's values are read, never
        # changed, by those who apply it.
        purpose = event.purpose or ""
        return [
            Change("consents", (subject, purpose, c), values)
            for c in event.categories
            if c not in superseded
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
    if kind in (Kind.KEYS_REGISTERED, Kind.NOTICE_SERVED, Kind.SIGNAL_GPC):
        # about the store, evidence of what was shown, or a signal whose meaning is
        # recorded as its own events: no state of anyone's data
        return []
    if kind in (Kind.SUBJECT_LINKED, Kind.SUBJECT_UNLINKED):
        alias = event.payload[ALIAS]
        if not isinstance(alias, str):
            raise ValueError(f"a link's alias is not an id: {alias!r}")
        if kind is Kind.SUBJECT_UNLINKED:
            return [Change("subject_aliases", (alias,), None)]
        return [Change("subject_aliases", (alias,), {"subject": subject, "at_us": at, "seq": seq})]
    raise ValueError(f"unknown event kind {kind!r}")


STATE_KEYS: dict[str, tuple[str, ...]] = {
    "consents": ("subject", "purpose", "category"),
    "objections": ("subject", "purpose", "category"),
    "memberships": ("subject", "account"),
    "invitations": ("subject", "account"),
    "account_settings": ("account", "purpose"),
    "account_features": ("account", "purpose"),
    "policies": ("version",),
    "subject_aliases": ("alias",),
}
