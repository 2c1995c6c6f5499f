"""Read-only views the API's reports and the web pages share.

They answer questions a person or an administrator asks ("what do you do with my data and
may I say no?", "how many of our members allow training?") from the policy and the same
in-memory decisions the decision endpoint uses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# check_account_setting lives with the Store (the CLI and the library apply it too).
from ..account_rules import check_account_setting as check_account_setting
from ..decide import ALLOW_REASONS, Decision, Reason
from ..policy.model import Basis, Policy, Rule
from ..taxonomy import covers
from .context import Service

#: Top-level purpose groups, in the order a person reads them.
GROUPS = ("service", "improvement", "ai.feature", "ai.training")


def group_of(purpose: str) -> str:
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


def rule_views(svc: Service, subject: str, policy: Policy, language: str | None) -> list[RuleView]:
    """Every rule of ``policy`` with what it means for ``subject`` now."""
    notice = policy.notices.get(language or policy.language) if policy.notices else None
    if notice is None and policy.notices:
        notice = policy.notice()
    decider = svc.snapshot.decider()
    views = []
    with svc.snapshot.lock:
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
        _summarise(svc, view)
    return views


_CAPS = {Reason.ACCOUNT_OFF, Reason.NOT_ENABLED}


def _summarise(svc: Service, view: RuleView) -> None:
    allowed = [d.allowed for d in view.decisions]
    view.state = "on" if all(allowed) else ("off" if not any(allowed) else "partial")
    reasons = [d.reason for d in view.decisions]
    view.reasons = sorted({str(r) for r in reasons})
    view.own_choice = any(
        r in (Reason.CONSENT, Reason.WITHDRAWN, Reason.REFUSED, Reason.OBJECTION) for r in reasons
    )
    for d in view.decisions:
        if d.reason in _CAPS:
            view.capped_reason = str(d.reason)
            view.capped_by = _deciding_account(svc, d)
            break
    for d in view.decisions:
        if d.reason is Reason.ACCOUNT_CONSENT:
            view.agreed_by = _deciding_account(svc, d)
            break


def _deciding_account(svc: Service, decision: Decision) -> str | None:
    """The account whose event decided: the last evidence (the first may be the policy's own
    publication)."""
    seqs = [s for s in decision.evidence if s]
    if not seqs:
        return None
    try:
        return svc.store.event(seqs[-1]).account
    except Exception:  # pragma: no cover - an event that vanished: name no account
        return None


def account_on_allowed(policy: Policy, purpose: str) -> bool:
    """Whether the policy lets an account consent for its members to ``purpose``."""
    return any(
        rule.account_consent
        and any(covers(p, purpose) or covers(purpose, p) for p in rule.purposes)
        for rule in policy.rules
    )


def account_purposes(policy: Policy) -> list[dict[str, Any]]:
    """The purposes an account administrator sets (``off`` / ``members_choose`` / ``on``) and
    the AI features they switch on, from the policy's rules."""
    out: dict[str, dict[str, Any]] = {}
    for rule in policy.rules:
        if rule.basis in (Basis.PROHIBITED,):
            continue
        for p in rule.purposes:
            if rule.account_enable:
                entry = out.setdefault(
                    p,
                    {
                        "purpose": p,
                        "feature": True,
                        "setting": False,
                        "on_allowed": False,
                        "rules": [],
                    },
                )
                entry["feature"] = True
            elif rule.basis is not Basis.CONTRACT:
                entry = out.setdefault(
                    p,
                    {
                        "purpose": p,
                        "feature": False,
                        "setting": True,
                        "on_allowed": False,
                        "rules": [],
                    },
                )
                entry["setting"] = True
                entry["on_allowed"] = entry["on_allowed"] or rule.account_consent
            else:
                continue
            entry["rules"].append(rule.id)
    return sorted(out.values(), key=lambda e: (_group_rank(e["purpose"]), e["purpose"]))


def _group_rank(purpose: str) -> int:
    group = group_of(purpose)
    return GROUPS.index(group) if group in GROUPS else len(GROUPS)


def member_summary(svc: Service, account: str, policy: Policy) -> dict[str, Any]:
    """For each (purpose, category) a member may have a say in: how many members are allowed
    and why (counts by reason)."""
    members = svc.store.account_state(account)["members"]
    decider = svc.snapshot.decider()
    rows = []
    with svc.snapshot.lock:
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
