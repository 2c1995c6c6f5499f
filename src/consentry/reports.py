"""Read-only reports a person or an administrator asks for, made from the policy and the same
in-memory decisions every check uses: "what do you do with my data and may I say no?" (the
transparency report, the preference centre), "how many of our members allow training?"
(the member summary).

They live in the library so the API, the pages and any script give the same answer
(:meth:`consentry.Store.transparency_report`, :meth:`consentry.Store.member_summary`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .decide import ALLOW_REASONS, Decider, Decision, Reason
from .policy.model import Basis, Policy, Rule
from .taxonomy import covers
from .times import format_time

if TYPE_CHECKING:
    from .store import Store

#: Top-level purpose groups, in the order a person reads them.
GROUPS = ("service", "improvement", "ai.feature", "ai.training")

#: The reasons that mean an account, not the person, decided.
_CAPS = {Reason.ACCOUNT_OFF, Reason.NOT_ENABLED}
_OWN_CHOICES = {Reason.CONSENT, Reason.WITHDRAWN, Reason.REFUSED, Reason.OBJECTION}


def group_of(purpose: str) -> str:
    """The group a purpose is shown in (:data:`GROUPS`, else its first segment)."""
    for group in ("ai.feature", "ai.training"):
        if covers(group, purpose):
            return group
    return purpose.split(".")[0]


def kind_of(rule: Rule) -> str:
    """How a person relates to a rule: ``none`` (no choice), ``object`` (may object),
    ``opt_in`` (needs their consent), ``feature`` (the organisation switches it on),
    ``never`` (prohibited)."""
    if rule.basis is Basis.PROHIBITED:
        return "never"
    if rule.basis is Basis.CONSENT:
        return "opt_in"
    if rule.account_enable:
        return "feature"
    if rule.basis is Basis.LEGITIMATE_INTEREST and rule.objection:
        return "object"
    return "none"


@dataclass
class RuleView:
    """One rule of the policy as it applies to one person now."""

    rule: Rule
    kind: str
    group: str
    text: str
    #: Decisions for each (purpose, category) the rule names, for this person, now.
    decisions: list[Decision] = field(default_factory=list)
    #: ``on`` / ``off`` / ``partial`` for rules with a choice.
    state: str = "off"
    #: The person's own choice decided (not their organisation's).
    own_choice: bool = False
    #: Set when an account's setting prevents the person's choice (``account_off``) or the
    #: organisation has not switched a feature on (``not_enabled``).
    capped_by: str | None = None
    capped_reason: str | None = None
    #: The organisation whose ``on`` consents for the person (``account_consent``).
    agreed_by: str | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(p, c) for p in self.rule.purposes for c in self.rule.categories]

    def to_dict(self) -> dict[str, Any]:
        r = self.rule
        return {
            "rule": r.id,
            "group": self.group,
            "kind": self.kind,
            "basis": str(r.basis),
            "purposes": list(r.purposes),
            "categories": list(r.categories),
            "text": self.text,
            "state": self.state,
            "own_choice": self.own_choice,
            "capped_by": self.capped_by,
            "capped_reason": self.capped_reason,
            "agreed_by": self.agreed_by,
            "reasons": self.reasons,
        }


def rule_views(
    store: Store,
    subject: str,
    policy: Policy,
    language: str | None,
    decider: Decider | None = None,
) -> list[RuleView]:
    """Every rule of ``policy`` with what it means for ``subject`` now. ``decider``: the
    one to decide with (the API passes its snapshot's); default the store's, caught up."""
    notice = policy.notices.get(language or policy.language) if policy.notices else None
    if notice is None and policy.notices:
        notice = policy.notice()
    decider = decider or store.decider()
    views = []
    with store.lock:
        for rule in policy.rules:
            view = RuleView(
                rule=rule,
                kind=kind_of(rule),
                group=group_of(rule.purposes[0]),
                text=notice.rules.get(rule.id, "") if notice else "",
            )
            for p, c in view.pairs:
                view.decisions.append(decider.check([subject], p, c))
            views.append(view)
    for view in views:
        _summarise(store, view)
    return views


def _summarise(store: Store, view: RuleView) -> None:
    allowed = [d.allowed for d in view.decisions]
    view.state = "on" if all(allowed) else ("off" if not any(allowed) else "partial")
    reasons = [d.reason for d in view.decisions]
    view.reasons = sorted({str(r) for r in reasons})
    view.own_choice = any(r in _OWN_CHOICES for r in reasons)
    for d in view.decisions:
        if d.reason in _CAPS:
            view.capped_reason = str(d.reason)
            view.capped_by = _deciding_account(store, d)
            break
    for d in view.decisions:
        if d.reason is Reason.ACCOUNT_CONSENT:
            view.agreed_by = _deciding_account(store, d)
            break


def _deciding_account(store: Store, decision: Decision) -> str | None:
    """The account whose event decided: the last evidence (the first may be the policy's own
    publication)."""
    seqs = [s for s in decision.evidence if s]
    if not seqs:
        return None
    try:
        return store.event(seqs[-1]).account
    except Exception:  # pragma: no cover - an event that vanished: name no account
        return None


def transparency_report(
    store: Store, subject: str, language: str | None = None, decider: Decider | None = None
) -> dict[str, Any]:
    """Everything the preference centre shows, as one document: each use of the person's
    data with its basis and what it means for them now, what never happens, the history of
    their choices (events as :meth:`Event.to_dict`) and where their data went."""
    policy = store.policy()
    lang = language if language and language in policy.notices else policy.language
    notice = policy.notices.get(lang) if policy.notices else None
    views = rule_views(store, subject, policy, lang, decider)
    state = store.subject_state(subject)
    return {
        "subject": subject,
        "generated_at": format_time(store.clock()),
        "policy_version": policy.version,
        "language": lang,
        "machine_translated": bool(notice and notice.machine_translated),
        "accounts": state["accounts"],
        "uses": [v.to_dict() for v in views],
        "protected": [
            {"labels": sorted(p.labels), "purposes": list(p.purposes)} for p in policy.protected
        ],
        "history": [e.to_dict() for e in store.events(subject=subject)],
        "impact": store.impact(subject).to_dict(),
        "ledger_seq": state["ledger_seq"],
    }


def member_summary(
    store: Store, account: str, policy: Policy, decider: Decider | None = None
) -> dict[str, Any]:
    """For each (purpose, category) a member may have a say in: how many members are allowed
    and why (counts by reason)."""
    members = store.account_state(account)["members"]
    decider = decider or store.decider()
    rows = []
    with store.lock:
        now = decider.now_us()
        for rule in policy.rules:
            if rule.basis not in (Basis.CONSENT, Basis.LEGITIMATE_INTEREST):
                continue
            for p in rule.purposes:
                for c in rule.categories:
                    counts = Counter(str(decider.reason(m, p, c, (), now)) for m in members)
                    allowed = sum(n for r, n in counts.items() if Reason(r) in ALLOW_REASONS)
                    rows.append(
                        {
                            "purpose": p,
                            "category": c,
                            "rule": rule.id,
                            "allowed": allowed,
                            "denied": len(members) - allowed,
                            "reasons": dict(sorted(counts.items())),
                        }
                    )
    return {"account": account, "members": len(members), "purposes": rows}
