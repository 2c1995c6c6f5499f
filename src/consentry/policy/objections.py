"""Whether an objection can stop anything under a policy: the rule the Store, the GPC signal
and the pages use before recording one."""

from __future__ import annotations

from ..taxonomy import covers
from .model import Basis, Policy


def objection_matters(policy: Policy, purpose: str, category: str | None) -> bool:
    """Whether an objection to ``purpose`` on ``category`` (None: every category) can stop
    anything under ``policy``: some (purpose, category) it covers is decided by a
    legitimate-interest rule that lets people object."""
    for rule in policy.rules:
        if rule.basis is not Basis.LEGITIMATE_INTEREST or not rule.objection:
            continue
        for p in rule.purposes:
            if not (covers(purpose, p) or covers(p, purpose)):
                continue
            narrower_p = p if covers(purpose, p) else purpose
            for c in rule.categories:
                if category is not None and not (covers(category, c) or covers(c, category)):
                    continue
                narrower_c = c if category is None or covers(category, c) else category
                # A more specific rule may decide the pair (and ignore objections).
                governing = policy.rule_for(narrower_p, narrower_c)
                if (
                    governing is not None
                    and governing.basis is Basis.LEGITIMATE_INTEREST
                    and governing.objection
                ):
                    return True
    return False
