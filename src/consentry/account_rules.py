"""Which account settings and AI features mean something under a policy.

An account's setting (``off`` / ``members_choose`` / ``on``) or feature switch that no rule
would ever read is refused rather than recorded as a meaningless event: the CLI, the library,
the API and the admin console all go through :meth:`consentry.Store.set_account` and
:meth:`consentry.Store.set_feature`, which apply these checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidInput
from .policy.model import Basis, Policy, Rule
from .taxonomy import covers


def deciding_rules(policy: Policy, purpose: str) -> list[Rule]:
    """The rules that decide ``purpose`` or a purpose beneath it (for any category): where a
    more specific rule overrides a broader one for ``purpose`` (e.g. a prohibition of
    ``ai.training.third_party`` under a consent rule for ``ai.training``), only it counts."""
    found: dict[str, Rule] = {}
    for rule in policy.rules:
        for p in rule.purposes:
            if covers(purpose, p):  # the rule is at or beneath the purpose: it decides there
                found[rule.id] = rule
            elif covers(p, purpose):  # broader: it decides unless a more specific rule does
                for category in rule.categories:
                    winner = policy.rule_for(purpose, category)
                    if winner is not None:
                        found[winner.id] = winner
    return list(found.values())


def _capped(rule: Rule) -> bool:
    """Whether an account's setting changes what ``rule`` decides (contract and prohibited
    rules ignore account settings)."""
    return rule.basis in (Basis.CONSENT, Basis.LEGITIMATE_INTEREST)


def check_account_setting(policy: Policy, purpose: str, setting: str) -> None:
    """Refuse a setting no rule of ``policy`` would apply, naming the policy's reason."""
    rules = deciding_rules(policy, purpose)
    capped = [r for r in rules if _capped(r)]
    if not capped:
        why = ", ".join(f"rule {r.id!r} is {r.basis.value}" for r in rules) or "no rule names it"
        raise InvalidInput(
            f"policy {policy.version} gives accounts no say over {purpose!r} ({why}): an "
            f"account setting for it would change nothing",
            hint="accounts set purposes whose rules are based on consent or legitimate "
            "interest; see the purposes on the admin console or `consentry policy show`",
            field="purpose",
        )
    if setting == "on" and not any(r.account_consent for r in capped):
        raise InvalidInput(
            f"policy {policy.version} does not let an account consent for its members to "
            f"{purpose!r}",
            hint="choose 'off' or 'members_choose'; 'on' is for rules with account_consent",
            field="setting",
        )


def check_feature(policy: Policy, purpose: str) -> None:
    """Refuse switching a purpose that is no AI feature of ``policy`` (no account_enable)."""
    if not any(r.account_enable for r in deciding_rules(policy, purpose)):
        raise InvalidInput(
            f"policy {policy.version} has no AI feature {purpose!r} that an account switches "
            "on (no rule with account_enable)",
            hint="switch features named by the policy's account_enable rules, e.g. "
            "ai.feature.meeting_summary",
            field="purpose",
        )


def check_account_change(kind: str, policies: Sequence[Policy], purpose: str, status: str) -> None:
    """Refuse an ``account.setting`` (``status`` off / members_choose / on) or
    ``account.feature`` change that none of ``policies`` (the version in effect first, then
    those scheduled after it) would apply; the reason given is the first version's."""
    first: InvalidInput | None = None
    for policy in policies:
        try:
            if kind == "account.setting":
                check_account_setting(policy, purpose, status)
            else:
                check_feature(policy, purpose)
            return
        except InvalidInput as exc:
            first = first or exc
    if first is not None:
        raise first
