"""Request and response bodies (Pydantic, at the edge only: the library takes plain values)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(min_length=1, max_length=200, examples=["ai.training"])]
Id = Annotated[str, Field(min_length=1, max_length=512, examples=["u_123"])]


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

    yaml: str | None = Field(None, max_length=1_000_000, description="Policy YAML text.")
    document: dict[str, Any] | None = Field(None, description="One policy version as JSON.")

    @model_validator(mode="after")
    def _one(self) -> PublishIn:
        if (self.yaml is None) == (self.document is None):
            raise ValueError("give exactly one of 'yaml' or 'document'")
        return self


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


class ObjectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Name
    categories: list[Name] = Field(
        default_factory=list, max_length=100, description="None: every category."
    )
    lift: bool = Field(False, description="Lift an earlier objection.")


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
    enabled: bool


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
    model_config = ConfigDict(extra="forbid")
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
    as_of: Annotated[str, Field(max_length=64)] | None = Field(
        None,
        description="Decide as of a past moment (replays the ledger): RFC 3339 "
        "(2023-08-07T00:00:00Z), -5m/-2h/-1d before now, or event:N (when event #N was "
        "recorded). The future, or before the first policy version took effect, is refused "
        "(422, as-of-out-of-range).",
    )
    explain: bool = Field(False, description="Add event ids and the rule's notice.")
    min_seq: Annotated[int, Field(ge=0, le=2**62)] | None = Field(
        None, description="Decide on a snapshot that includes at least this ledger position."
    )

    @model_validator(mode="after")
    def _who(self) -> DecisionIn:
        if (self.subject is None) == (self.subjects is None):
            raise ValueError("give exactly one of 'subject' or 'subjects'")
        return self

    def people(self) -> list[str]:
        return [self.subject] if self.subject is not None else list(self.subjects or [])


class Evidence(BaseModel):
    seq: int
    event_id: str | None


class SubjectAnswer(BaseModel):
    subject: str
    allowed: bool
    reason: str
    evidence: list[Evidence]


class DecisionOut(BaseModel):
    allowed: bool
    decision: Literal["allow", "deny"]
    reason: str
    purpose: str
    category: str
    rule: str | None
    policy_version: str | None
    subject: str | None
    evidence: list[Evidence]
    subjects: list[SubjectAnswer]
    notice: str | None = None
    ledger_seq: int


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subjects: list[Id] = Field(min_length=1, max_length=1000)
    purpose: Name | None = None
    category: Name | None = None
    labels: list[Name] | None = Field(None, max_length=50)


class BatchIn(BaseModel):
    """Many decisions at once: ``subjects`` (one single-subject item each) or ``items``.

    ``purpose``, ``category`` and ``labels`` at the top apply to every item that does not
    give its own.
    """

    model_config = ConfigDict(extra="forbid")
    purpose: Name | None = None
    category: Name | None = None
    labels: list[Name] = Field(default_factory=list, max_length=50)
    subjects: list[Id] | None = Field(None, description="One decision per subject.")
    items: list[BatchItem] | None = None
    explain: bool = Field(False, description="Full decisions instead of allow/reason.")
    min_seq: Annotated[int, Field(ge=0, le=2**62)] | None = None

    @model_validator(mode="after")
    def _what(self) -> BatchIn:
        if (self.subjects is None) == (self.items is None):
            raise ValueError("give exactly one of 'subjects' or 'items'")
        return self


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
    """A consent receipt (ISO/IEC TS 27560 fields) with its detached Ed25519 signature, and
    its evidence: the ledger event and an inclusion proof against a signed checkpoint."""

    receipt: dict[str, Any]
    signature: dict[str, Any]
    evidence: dict[str, Any] | None = None


class ReceiptCheckpointOut(BaseModel):
    size: int
    root: str
    time: str | None


class ReceiptCheckOut(BaseModel):
    valid: bool
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


class Health(BaseModel):
    status: str
    ledger_seq: int | None = None
    policy_version: str | None = None
    detail: str | None = None
    #: Where each private key lives (``file`` or ``database``).
    keys: dict[str, str] | None = None
    #: Risks a production deployment should fix (keys kept in the database, no witness).
    warnings: list[str] = []
