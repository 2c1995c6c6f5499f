"""Read-only views the API's reports and the web pages share.

They answer questions a person or an administrator asks ("what do you do with my data and
may I say no?", "how many of our members allow training?") from the policy and the same
in-memory decisions the decision endpoint uses.
"""

from __future__ import annotations

from typing import Any

# check_account_setting lives with the Store (the CLI and the library apply it too).
from ..account_rules import check_account_setting as check_account_setting
from ..policy.model import Basis, Policy
from ..reports import GROUPS as GROUPS
from ..reports import RuleView as RuleView
from ..reports import group_of as group_of
from ..reports import kind_of as kind_of
from ..reports import member_summary as _member_summary
from ..reports import rule_views as _rule_views
from ..taxonomy import covers
from .context import Service


def rule_views(svc: Service, subject: str, policy: Policy, language: str | None) -> list[RuleView]:
    """Every rule of ``policy`` with what it means for ``subject`` now, decided by this
    worker's snapshot (:func:`consentry.reports.rule_views`)."""
    return _rule_views(svc.store, subject, policy, language, svc.snapshot.decider())


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
    """:func:`consentry.reports.member_summary`, decided by this worker's snapshot."""
    return _member_summary(svc.store, account, policy, svc.snapshot.decider())
