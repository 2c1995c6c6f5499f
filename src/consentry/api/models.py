"""Request and response bodies (Pydantic, at the edge only: the library takes plain values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(min_length=1, max_length=200, examples=["ai.training"])]
Id = Annotated[str, Field(min_length=1, max_length=512, examples=["u_123"])]
#: true or false only: the schema says boolean, so 0, 1 and "yes" are refused as it says.
Flag = Annotated[bool, Field(strict=True)]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["https://consentry.dev/problems/invalid-input"])
    title: str
    status: int
    detail: str
    hint: str | None = None
    instance: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"description": desc}
    for code, desc in (
        (400, "Bad request"),
        (401, "Missing, invalid or expired credentials"),
        (403, "The credential's role may not do this"),
        (404, "Not found"),
        (409, "Conflict (an idempotency key reused for another request, an immutable policy)"),
        (422, "Invalid input; `field` names what was wrong"),
        (500, "Internal error (logged; never a stack trace)"),
        (503, "The store is not initialised"),
    )
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: PROBLEMS[c] for c in codes}


def exactly_one(*names: str) -> Callable[[dict[str, Any]], None]:
    """A model's JSON Schema says what its validator enforces: exactly one of ``names`` is
    present (``not`` two of them, ``not`` none of them), and none of them is ``null``. Pair it with
    :func:`refuse_none_of` so the server refuses what the schema refuses."""

    def extra(schema: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        for name in names:
            prop = properties.get(name, {})
            options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
            if len(options) == 1:
                prop.update(options[0])
            elif options:
                prop["anyOf"] = options
            prop.pop("default", None)
        # "Not (two or more, or none)": one ``not``, which client generators pass over,
        # where a top-level ``oneOf`` would make them generate a union instead of a model.
        both = [{"required": [a, b]} for i, a in enumerate(names) for b in names[i + 1 :]]
        none = {"not": {"anyOf": [{"required": [name]} for name in names]}}
        schema["not"] = {"anyOf": [*both, none]}

    return extra


def refuse_none_of(data: Any, *names: str) -> Any:
    """The check :func:`exactly_one` documents, before the fields are read (an explicit
    ``null`` counts as sent)."""
    if isinstance(data, dict):
        sent = [n for n in names if n in data]
        quoted = " or ".join(f"'{n}'" for n in names)
        if len(sent) != 1:
            raise ValueError(f"give exactly one of {quoted}")
        if data[sent[0]] is None:
            raise ValueError(f"'{sent[0]}' cannot be null: give exactly one of {quoted}")
    return data


# -- events ------------------------------------------------------------------------------------


class EventOut(BaseModel):
    """A ledger event."""

    id: str
    seq: int
    kind: str
    at: str
    actor: str | None
    subject: str | None
    account: str | None
    purpose: str | None
    categories: list[str]
    status: str | None
    policy_version: str | None
    notice_version: str | None
    language: str | None
    method: str | None
    payload: dict[str, Any]
    idempotency_key: str | None
    prev_hash: str
    hash: str
    receipt_url: str | None = None


class EventList(BaseModel):
    events: list[EventOut]


# -- policies ----------------------------------------------------------------------------------


class InvitationOut(BaseModel):
    """A pending invitation to join an account (``member.invited``, not yet answered)."""

    subject: str
    account: str
    seq: int = Field(description="The member.invited event's position in the ledger.")
    at: str
    invited_by: str | None


class InvitationList(BaseModel):
    invitations: list[InvitationOut]


class PolicySummary(BaseModel):
    id: str
    version: str
    effective: str
    digest: str
    language: str
    languages: list[str]
    in_effect: bool


class PolicyList(BaseModel):
    current: str | None
    versions: list[PolicySummary]


class RuleOut(BaseModel):
    id: str
    purposes: list[str]
    categories: list[str]
    basis: str
    objection: bool
    account_enable: bool
    account_consent: bool
    parties: str
    reconsent: bool
    expires_after_s: float | None


class ProtectionOut(BaseModel):
    labels: list[str]
    purposes: list[str]


class PolicyOut(PolicySummary):
    controller: dict[str, str]
    rules: list[RuleOut]
    protected: list[ProtectionOut]
    document: dict[str, Any]


class NoticeOut(BaseModel):
    version: str
    language: str
    authoritative_language: str
    machine_translated: bool
    #: Set on a machine translation: the text that prevails.
    authoritative_url: str | None
    title: str
    summary: str
    rules: dict[str, str]


class PublishIn(BaseModel):
    """A policy as YAML text (one or several versions) or as a parsed document."""

    model_config = ConfigDict(json_schema_extra=exactly_one("yaml", "document"))
    yaml: str | None = Field(None, max_length=1_000_000, description="Policy YAML text.")
    document: dict[str, Any] | None = Field(None, description="One policy version as JSON.")

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        return refuse_none_of(data, "yaml", "document")


class PublishOut(BaseModel):
    version: str
    digest: str
    published: bool
    event_id: str | None
    seq: int | None


class DiffShift(BaseModel):
    purpose: str
    category: str
    before: str | None = Field(description="The basis before (null: no rule).")
    now: str | None = Field(description="The basis now (null: no rule).")
    rule: str | None
    before_answer: str | None = Field(
        description="What the use got before: the basis, or legitimate_interest_no_objection "
        "where people could not object individually."
    )
    now_answer: str | None = Field(description="What the use gets now (as before_answer).")


class DiffField(BaseModel):
    field: str = Field(description="The rule's field, e.g. basis, parties, purposes.")
    before: Any
    after: Any


class DiffRule(BaseModel):
    rule: str
    change: str
    what: list[str] = Field(description="Each change in words, in the diff's language.")
    fields: list[DiffField] = Field(description="The same changes as data.")
    text: str


class DiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    language: str
    looser: list[DiffShift]
    tighter: list[DiffShift]
    rules: list[DiffRule]
    stale_consents: dict[str, int]
    text: str


# -- subjects ----------------------------------------------------------------------------------


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["give", "refuse", "withdraw"] = Field(
        description="give (opt in), refuse (asked and said no), withdraw (take an opt-in back)"
    )
    purpose: Name
    categories: list[Name] = Field(
        min_length=1, max_length=100, examples=[["content.audio", "content.video"]]
    )
    notice_version: Name | None = Field(
        None, description="The policy version whose notice the person saw (default: current)."
    )
    language: Annotated[str, Field(min_length=2, max_length=35)] | None = Field(
        None, description="The language of the notice the person saw."
    )
    method: Annotated[str, Field(min_length=1, max_length=100)] = "api"


class NoticeServedIn(BaseModel):
    """That the platform showed the person a notice (in its own pages)."""

    model_config = ConfigDict(extra="forbid")
    notice_version: Name | None = Field(
        None, description="The policy version whose notice was shown (default: current)."
    )
    language: Annotated[str, Field(min_length=2, max_length=35)] | None = Field(
        None, description="The language it was shown in (default: the authoritative one)."
    )
    method: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        "api", description="Where it was shown, e.g. signup-form, app-dialog."
    )


class NoticeServedOut(BaseModel):
    """The ``notice.served`` event, and whether this call recorded it (false: one for the
    same person, version and language was recorded within the last day and is returned)."""

    recorded: bool
    notice_sha256: str
    event: EventOut


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]
    status: Literal["retired"] | None = None


class JwksOut(BaseModel):
    """Every receipt key (RFC 7517 JWKS, Ed25519 per RFC 8037); retired keys have
    ``"status": "retired"`` and verify older receipts."""

    keys: list[Jwk]


class ObjectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Name
    categories: list[Name] = Field(
        default_factory=list, max_length=100, description="None: every category."
    )
    lift: Flag = Field(False, description="Lift an earlier objection.")


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field(
        min_length=1,
        max_length=512,
        description="Another id of the same person (an email as a meeting guest, a phone).",
        examples=["guest@example.com"],
    )


class AliasOut(BaseModel):
    alias: str
    linked_at: str


class AliasesOut(BaseModel):
    subject: str = Field(description="The person's primary id.")
    aliases: list[AliasOut]


class ConsentRecord(BaseModel):
    purpose: str
    category: str
    status: str
    seq: int
    at_us: int


class ObjectionRecord(BaseModel):
    purpose: str
    category: str
    status: str
    seq: int


class SubjectStateOut(BaseModel):
    subject: str
    known: bool
    as_of: str | None = None
    accounts: list[str]
    consents: list[ConsentRecord]
    objections: list[ObjectionRecord]
    ledger_seq: int


# -- accounts ----------------------------------------------------------------------------------


class AccountOut(BaseModel):
    account: str
    settings: dict[str, str]
    features: dict[str, str]
    members: list[str]


class AccountSettingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    setting: Literal["off", "members_choose", "on"]


class FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: Flag


class PurposeSummary(BaseModel):
    purpose: str
    category: str
    rule: str | None
    allowed: int
    denied: int
    reasons: dict[str, int]


class MemberSummaryOut(BaseModel):
    account: str
    members: int
    purposes: list[PurposeSummary]


# -- decisions ---------------------------------------------------------------------------------


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one("subject", "subjects"))
    subjects: list[Id] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Everyone in the item (the first is its owner).",
    )
    subject: Id | None = Field(None, description="Shorthand for one subject.")
    purpose: Name
    category: Name = Field(examples=["content.audio"])
    labels: list[Name] = Field(default_factory=list, max_length=50)
    account: Id | None = Field(
        None,
        description="The account the item belongs to (the meeting host's, the label's): "
        "its AI-feature switches decide, its 'on' speaks for its members only, and any "
        "person's own account 'off' still caps them. Left out: the most protective answer "
        "over each person's accounts (see docs/concepts.md).",
        examples=["acme"],
    )
    as_of: Annotated[str, Field(max_length=64)] | None = Field(
        None,
        description="Decide as of a past moment (replays the ledger): RFC 3339 "
        "(2023-08-07T00:00:00Z), -5m/-2h/-1d before now, or event:N (when event #N was "
        "recorded). The future, or before the first policy version took effect, is refused "
        "(422, as-of-out-of-range).",
    )
    explain: Flag = Field(False, description="Add event ids and the rule's notice.")
    min_seq: Annotated[int, Field(ge=0, le=2**62, strict=True)] | None = Field(
        None, description="Decide on a snapshot that includes at least this ledger position."
    )

    @model_validator(mode="before")
    @classmethod
    def _who(cls, data: Any) -> Any:
        return refuse_none_of(data, "subject", "subjects")

    def people(self) -> list[str]:
        return [self.subject] if self.subject is not None else list(self.subjects or [])


class Evidence(BaseModel):
    seq: int
    event_id: str | None


class DecidedBy(BaseModel):
    """The account whose setting or feature switch decided (``explain``)."""

    account: str
    kind: Literal["setting", "feature"]
    setting: str
    seq: int
    event_id: str


class SubjectAnswer(BaseModel):
    subject: str
    allowed: bool
    reason: str
    evidence: list[Evidence]
    decided_by: DecidedBy | None = None


class DecisionOut(BaseModel):
    allowed: bool
    decision: Literal["allow", "deny"]
    reason: str
    purpose: str
    category: str
    rule: str | None
    policy_version: str | None
    subject: str | None
    #: The account context the item was decided in.
    account: str | None = None
    evidence: list[Evidence]
    subjects: list[SubjectAnswer]
    decided_by: DecidedBy | None = None
    notice: str | None = None
    ledger_seq: int


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subjects: list[Id] = Field(min_length=1, max_length=1000)
    purpose: Name | None = None
    category: Name | None = None
    labels: list[Name] | None = Field(None, max_length=50)
    account: Id | None = Field(None, description="The account this item belongs to.")


class BatchIn(BaseModel):
    """Many decisions at once: ``subjects`` (one single-subject item each) or ``items``.

    ``purpose``, ``category`` and ``labels`` at the top apply to every item that does not
    give its own.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one("subjects", "items"))
    purpose: Name | None = None
    category: Name | None = None
    labels: list[Name] = Field(default_factory=list, max_length=50)
    account: Id | None = Field(
        None, description="The account the items belong to (an item may give its own)."
    )
    subjects: list[Id] | None = Field(None, description="One decision per subject.")
    items: list[BatchItem] | None = None
    explain: Flag = Field(False, description="Full decisions instead of allow/reason.")
    min_seq: Annotated[int, Field(ge=0, le=2**62, strict=True)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _what(cls, data: Any) -> Any:
        return refuse_none_of(data, "subjects", "items")


class BatchResult(BaseModel):
    subject: str
    allowed: bool
    reason: str


class BatchOut(BaseModel):
    ledger_seq: int
    count: int
    allowed: int
    denied: int
    results: list[BatchResult] | list[DecisionOut]


# -- ledger, receipts, health -----------------------------------------------------------------


class DivergenceOut(BaseModel):
    """A current-state row that is not what the chain implies."""

    table: str
    key: list[str]
    problem: Literal["changed", "missing", "extra"]
    stored: dict[str, Any] | None  # the row's non-key columns in the table (None: no row)
    implied: dict[str, Any] | None  # ... as the chain implies them (None: no row)
    seq: int | None  # the event the implied value comes from (or that removed the row)
    fields: list[str]  # the columns that differ ("changed")
    message: str


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None
    seq: int | None
    event_id: str | None
    notes: list[str] = []
    since: dict[str, Any] | None = None


class VerifyIn(BaseModel):
    """Optionally, a signed checkpoint the ledger must still extend."""

    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(
        default=None, max_length=4096, description="A checkpoint note (C2SP tlog-checkpoint)."
    )
    divergences: list[DivergenceOut] = []


class ReceiptOut(BaseModel):
    """A consent receipt (ISO/IEC TS 27560 fields) signed as a compact JWS (RFC 7515,
    EdDSA), and its evidence: the ledger event and an inclusion proof against a signed
    checkpoint. Receipts issued before JWS carry a detached ``signature`` instead; exactly
    one of the two is present."""

    model_config = ConfigDict(json_schema_extra=exactly_one("jws", "signature"))
    receipt: dict[str, Any]
    jws: Annotated[str, Field(min_length=1, max_length=1_000_000)] | None = Field(
        None, description="The receipt record as a compact JWS (verify with the JWKS)."
    )
    signature: dict[str, Any] | None = Field(
        None, description="Receipts issued before JWS: a detached Ed25519 signature."
    )
    evidence: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _signed(cls, data: Any) -> Any:
        return refuse_none_of(data, "jws", "signature")


class ReceiptCheckpointOut(BaseModel):
    size: int
    root: str
    time: str | None


class ReceiptCheckOut(BaseModel):
    valid: bool
    notice_problem: str | None = Field(
        None,
        description="Set when no notice.served event came before the consent: valid evidence "
        "of a choice, but not that the person saw the notice first.",
    )
    record_id: str
    seq: int
    event_hash: str
    key_id: str
    checkpoint: ReceiptCheckpointOut
    event: EventOut


class CheckpointOut(BaseModel):
    """A signed checkpoint of the transparency log."""

    origin: str
    size: int
    root: str
    time: str | None
    note: str


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof between two tree sizes (hex SHA-256 hashes)."""

    first: int
    second: int
    proof: list[str]


class PublicKeysOut(BaseModel):
    """The keys a verifier pins."""

    receipt_public_key: str
    log_verifier_key: str
    receipt_public_keys: list[str] = Field(
        default_factory=list,
        description="Every receipt key the store signed with, oldest first (the last is "
        "receipt_public_key; the others are retired and verify older receipts).",
    )


class Health(BaseModel):
    status: str
    ledger_seq: int | None = None
    policy_version: str | None = None
    detail: str | None = None
    #: Where each private key lives (``file`` or ``database``).
    keys: dict[str, str] | None = None
    #: Risks a production deployment should fix (keys kept in the database, no witness).
    warnings: list[str] = []
