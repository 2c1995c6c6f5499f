"""Policy-as-code: YAML loading and validation, versions, diffs and notices."""

from .loader import load_policies, load_policy, parse_policies, parse_policy
from .model import Basis, Notice, Parties, Policy, Protection, Rule

__all__ = [
    "Basis",
    "Notice",
    "Parties",
    "Policy",
    "Protection",
    "Rule",
    "load_policies",
    "load_policy",
    "parse_policies",
    "parse_policy",
]
