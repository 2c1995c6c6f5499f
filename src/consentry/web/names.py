"""Plain-language names for purposes, data categories, labels, reasons and events.

Each is an English message id marked with ``N_`` for extraction and translated per request;
a name a policy adds and this table does not know is shown from its key (``screen_share`` →
"screen share").
"""

from __future__ import annotations

from collections.abc import Iterable

from markupsafe import Markup, escape

from .i18n import N_, ListStyle, Translator

PURPOSES = {
    "service": N_("Running the service"),
    "service.delivery": N_("Delivering the service"),
    "service.safety": N_("Protecting against spam and fraud"),
    "improvement": N_("Improving our products"),
    "improvement.product": N_("Improving our products"),
    "ai": N_("Artificial intelligence"),
    "ai.feature": N_("AI features"),
    "ai.feature.meeting_summary": N_("Meeting summaries"),
    "ai.feature.chat_compose": N_("Chat compose"),
    "ai.training": N_("Training AI models"),
    "ai.training.feature": N_("Training the models behind our own features"),
    "ai.training.generative": N_("Training generative AI"),
    "ai.training.third_party": N_("Training other companies' AI models"),
    "ai.training.feature.fraud_prevention": N_("Training fraud-prevention models"),
    "ai.training.feature.recommendation": N_("Training recommendation models"),
    "ai.training.feature.search": N_("Training search models"),
    "ai.training.feature.playlists": N_("Training playlist models"),
    "ai.training.feature.tagging": N_("Training tagging models"),
}

GROUPS = {
    "service": N_("Running the service"),
    "improvement": N_("Improving our products"),
    "ai.feature": N_("AI features"),
    "ai.training": N_("Training AI"),
}

CATEGORIES = {
    "content": N_("your content"),
    "content.audio": N_("audio"),
    "content.video": N_("video"),
    "content.chat": N_("chat messages"),
    "content.recording": N_("recordings"),
    "content.transcript": N_("transcripts"),
    "content.music": N_("music"),
    "content.image": N_("images"),
    "content.document": N_("documents"),
    "content.whiteboard": N_("whiteboards"),
    "content.screen_share": N_("shared screens"),
    "content.invitation": N_("invitations"),
    "content.likeness": N_("your voice, face and likeness"),
    "service_data": N_("data our service generates"),
    "service_data.telemetry": N_("telemetry"),
    "service_data.usage": N_("usage data"),
    "service_data.diagnostics": N_("diagnostic data"),
}

LABELS = {
    "health": N_("health information"),
    "education_record": N_("education records"),
    "minor": N_("data about children"),
    "biometric": N_("biometric data"),
    "financial": N_("financial information"),
    "precise_location": N_("precise location"),
}

KINDS = {
    "none": N_("No choice: part of the service"),
    "object": N_("On unless you object"),
    "opt_in": N_("Only with your opt-in"),
    "feature": N_("Your organisation decides"),
    "never": N_("Never"),
}

BASES = {
    "contract": N_("contract"),
    "legitimate_interest": N_("legitimate interest"),
    "consent": N_("consent"),
    "prohibited": N_("prohibited"),
}

#: What a decision's reason means to the person it is about.
REASONS = {
    "contract": N_("Part of the service you use."),
    "legitimate_interest": N_("On: you have not objected."),
    "consent": N_("On: you opted in."),
    "account_consent": N_("On: your organisation agreed for its members. You can opt out."),
    "protected_label": N_("Never for protected information."),
    "no_basis": N_("Not done: no rule allows it."),
    "prohibited": N_("Never done, whatever anyone agrees to."),
    "not_enabled": N_("Off: your organisation has not switched this on."),
    "account_off": N_(
        "Off: your organisation's administrator has switched this off for all "
        "members, so your choice cannot turn it on."
    ),
    "objection": N_("Off: you objected."),
    "withdrawn": N_("Off: you withdrew your consent."),
    "refused": N_("Off: you said no."),
    "stale_consent": N_(
        "Off: you agreed under earlier terms, and that agreement no longer "
        "counts. Opt in again if you wish."
    ),
    "expired": N_("Off: your agreement has expired. Opt in again if you wish."),
    "no_consent": N_("Off: you have not opted in."),
    "unknown_subject": N_("Off: we know nothing about you yet."),
}

EVENTS = {
    "consent.given": N_("Opted in"),
    "consent.refused": N_("Said no"),
    "consent.withdrawn": N_("Withdrew consent"),
    "objection.raised": N_("Objected"),
    "objection.lifted": N_("Lifted objection"),
    "member.added": N_("Joined an organisation"),
    "member.removed": N_("Left an organisation"),
    "member.invited": N_("Invited to an organisation"),
    "member.accepted": N_("Accepted an invitation"),
    "member.declined": N_("Declined an invitation"),
    "account.setting": N_("Changed a setting"),
    "account.feature": N_("Switched a feature"),
    "policy.published": N_("Published a policy"),
}

SETTINGS = {
    "off": N_("Off for every member"),
    "members_choose": N_("Each member chooses"),
    "on": N_("On for all members (each can opt out)"),
}

FEATURE_STATES = {"enabled": N_("On"), "disabled": N_("Off")}


def _fallback(key: str) -> str:
    return key.rpartition(".")[2].replace("_", " ")


def purpose(t: Translator, key: str) -> str:
    return t(PURPOSES[key]) if key in PURPOSES else _fallback(key)


def category(t: Translator, key: str) -> str:
    return t(CATEGORIES[key]) if key in CATEGORIES else _fallback(key)


def label(t: Translator, key: str) -> str:
    return t(LABELS[key]) if key in LABELS else _fallback(key)


def group(t: Translator, key: str) -> str:
    return t(GROUPS[key]) if key in GROUPS else purpose(t, key)


def purposes(
    t: Translator, keys: Iterable[str], style: ListStyle = "standard", in_sentence: bool = False
) -> Markup:
    """Purpose names joined as the language joins a list (``style="or"``: "a, b or c");
    ``in_sentence``: as they read inside a sentence (see :func:`inline`)."""
    found = (purpose(t, k) for k in keys)
    return t.list((inline(n) for n in found) if in_sentence else found, style)


def categories(t: Translator, keys: Iterable[str]) -> Markup:
    """Data category names joined as the language joins a list."""
    return t.list(category(t, k) for k in keys)


def labels(t: Translator, keys: Iterable[str]) -> Markup:
    """Label names joined as the language joins a list."""
    return t.list(label(t, k) for k in keys)


def inline(text: object) -> Markup:
    """A name as it reads inside a sentence: "Training AI models" → "training AI models".
    The first letter is lowered only before a lower-case one, so that "AI features" stays."""
    text = str(escape(text))
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return Markup(text)


def lookup(t: Translator, table: dict[str, str], key: str | None) -> str:
    if key is None:
        return ""
    return t(table[key]) if key in table else key


#: A feature only an organisation switches on, as a person in none reads it: what applies to
#: them, not "your organisation has not switched this on" (they have no organisation).
SOLO_FEATURE = N_("For members of an organisation")
SOLO_NOT_ENABLED = N_(
    "Off: only an organisation can switch this on, for its members. You are not a member of "
    "an organisation."
)

#: Membership events on the person's own page, by who made the change (see :func:`by_whom`).
MEMBERSHIP_ME = {
    ("member.added", "any"): N_("Joined {account}"),
    ("member.invited", "any"): N_("Invited to {account}"),
    ("member.accepted", "any"): N_("Accepted the invitation to {account}"),
    ("member.declined", "any"): N_("Declined the invitation to {account}"),
    ("member.removed", "self"): N_("Left {account}"),
    ("member.removed", "admin"): N_("Removed from {account} by its administrator"),
    ("member.removed", "platform"): N_("Removed from {account} by the platform"),
    ("member.removed", "any"): N_("Removed from {account}"),
}

#: Membership events on the administrator's audit trail (the "Who" column names the actor).
MEMBERSHIP_ADMIN = {
    ("member.added", "any"): N_("Added {subject}"),
    ("member.invited", "any"): N_("Invited {subject}"),
    ("member.accepted", "any"): N_("{subject} accepted the invitation"),
    ("member.declined", "any"): N_("{subject} declined the invitation"),
    ("member.removed", "self"): N_("{subject} left"),
    ("member.removed", "any"): N_("Removed {subject}"),
}


def by_whom(actor: str | None, subject: str | None) -> str:
    """Who made a membership change, as a page tells it: ``self`` (the person), ``platform``
    (an API key or a service or operator token: the ledger records those as ``key:…`` or
    ``role:…``), ``admin`` (another person: only an account's administrator may change
    someone's membership) or ``any`` (not recorded)."""
    if not actor:
        return "any"
    if actor == subject:
        return "self"
    if actor.startswith(("key:", "service:", "platform_admin:")):
        return "platform"
    return "admin"


def membership(
    t: Translator,
    table: dict[tuple[str, str], str],
    kind: str,
    subject: str | None,
    account: str | None,
    actor: str | None,
) -> str:
    """A membership event in words (``table``: :data:`MEMBERSHIP_ME` or
    :data:`MEMBERSHIP_ADMIN`); "" for an event that is not about membership."""
    message = table.get((kind, by_whom(actor, subject))) or table.get((kind, "any"))
    if message is None:
        return ""
    return t(message, subject=subject or "", account=account or "")


#: Short reason labels for the admin console's counts.
REASON_SHORT = {
    "contract": N_("part of the service"),
    "legitimate_interest": N_("not objected"),
    "consent": N_("opted in"),
    "account_consent": N_("agreed by the organisation"),
    "protected_label": N_("protected"),
    "no_basis": N_("no rule"),
    "prohibited": N_("never"),
    "not_enabled": N_("feature off"),
    "account_off": N_("switched off by the organisation"),
    "objection": N_("objected"),
    "withdrawn": N_("withdrew"),
    "refused": N_("said no"),
    "stale_consent": N_("agreed under old terms"),
    "expired": N_("expired"),
    "no_consent": N_("no choice yet"),
    "unknown_subject": N_("unknown"),
}

#: Problem titles (``consentry.errors``) as the error page shows them.
PROBLEM_TITLES = (
    N_("Request failed"),
    N_("Invalid input"),
    N_("Unknown name"),
    N_("Invalid policy"),
    N_("Policy conflict"),
    N_("Not found"),
    N_("Store not initialised"),
    N_("Idempotency key reused"),
    N_("Ledger verification failed"),
    N_("Signature does not verify"),
    N_("Forbidden"),
    N_("Unauthorized"),
    N_("Bad request"),
    N_("Method not allowed"),
    N_("Internal error"),
)
