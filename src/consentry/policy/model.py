"""The policy as consentry uses it: immutable, validated, with fast rule lookup."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from ..taxonomy import Taxonomy, ancestors, covers, depth


class Basis(enum.StrEnum):
    """Why a purpose may touch a category."""

    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONSENT = "consent"
    PROHIBITED = "prohibited"


class Parties(enum.StrEnum):
    """Whose say counts for an item with several subjects."""

    ALL = "all"
    OWNER = "owner"


@dataclass(frozen=True)
class Rule:
    """One rule: these purposes may touch these categories on this basis."""

    id: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    basis: Basis
    objection: bool = True
    account_enable: bool = False
    account_consent: bool = False
    parties: Parties = Parties.OWNER
    reconsent: bool = False
    expires_after: timedelta | None = None

    def match(self, purpose: str, category: str) -> tuple[int, int] | None:
        """This rule's specificity (purpose depth, category depth) for (p, c), if it matches."""
        best: tuple[int, int] | None = None
        for p in self.purposes:
            if not covers(p, purpose):
                continue
            for c in self.categories:
                if covers(c, category):
                    spec = (depth(p), depth(c))
                    if best is None or spec > best:
                        best = spec
        return best


@dataclass(frozen=True)
class Protection:
    """Items with one of these labels are never used for these purposes."""

    labels: frozenset[str]
    purposes: tuple[str, ...]


class RecipientRole(enum.StrEnum):
    """Who a recipient is to the controller (the DPV recipient classes)."""

    PROCESSOR = "processor"
    JOINT_CONTROLLER = "joint_controller"
    THIRD_PARTY = "third_party"


@dataclass(frozen=True)
class Recipient:
    """Someone the personal data is disclosed to, for these purposes (empty: every purpose)."""

    name: str
    role: RecipientRole
    purposes: tuple[str, ...] = ()
    url: str | None = None

    def receives_for(self, purpose: str) -> bool:
        return not self.purposes or any(covers(p, purpose) for p in self.purposes)


@dataclass(frozen=True)
class Notice:
    """The plain-language explanation of a policy version in one language."""

    language: str
    title: str
    summary: str
    rules: Mapping[str, str]
    machine_translated: bool = False

    def text(self) -> dict[str, Any]:
        """The exact text a person is shown, as JSON data: what :meth:`digest` covers."""
        return {
            "language": self.language,
            "title": self.title,
            "summary": self.summary,
            "rules": dict(self.rules),
            "machine_translated": self.machine_translated,
        }

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`text`: binds a record to the exact
        words served in this language (a reworded notice has another digest)."""
        from ..canonical import canonical_json, sha256_hex

        return sha256_hex(canonical_json(self.text()))


@dataclass(frozen=True)
class Policy:
    """One version of a policy. Published versions are immutable."""

    id: str
    version: str
    effective: datetime
    language: str
    taxonomy: Taxonomy
    rules: tuple[Rule, ...]
    protected: tuple[Protection, ...] = ()
    notices: Mapping[str, Notice] = field(default_factory=dict)
    controller: Mapping[str, str] = field(default_factory=dict)
    #: Who receives the data; ``None``: the policy does not say (an empty tuple says "nobody
    #: but the controller").
    recipients: tuple[Recipient, ...] | None = None
    #: How long data of a category is kept (the most specific category wins).
    retention: Mapping[str, timedelta] = field(default_factory=dict)
    #: The purposes a Global Privacy Control signal objects to or refuses (``gpc:
    #: {objects_to: [...]}``); None: the policy gives the signal no meaning.
    gpc_objects_to: tuple[str, ...] | None = None
    #: The validated document as plain JSON data; its canonical form is what is hashed.
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    digest: str = ""

    @cached_property
    def rules_by_id(self) -> dict[str, Rule]:
        return {rule.id: rule for rule in self.rules}

    def rule_for(self, purpose: str, category: str) -> Rule | None:
        """The most specific rule for (purpose, category): purpose depth first, then category."""
        best: Rule | None = None
        best_spec = (-1, -1)
        for rule in self.rules:
            spec = rule.match(purpose, category)
            if spec is not None and spec > best_spec:
                best, best_spec = rule, spec
        return best

    def protected_labels(self, purpose: str) -> frozenset[str]:
        """Labels that deny ``purpose`` whatever anyone chose."""
        out: set[str] = set()
        for protection in self.protected:
            if any(covers(p, purpose) for p in protection.purposes):
                out |= protection.labels
        return frozenset(out)

    def recipients_for(self, purpose: str) -> tuple[Recipient, ...] | None:
        """The recipients for ``purpose`` (None: the policy names none at all)."""
        if self.recipients is None:
            return None
        return tuple(r for r in self.recipients if r.receives_for(purpose))

    def retention_for(self, category: str) -> timedelta | None:
        """How long data of ``category`` is kept: the most specific retention that covers it."""
        for name in ancestors(category):
            if name in self.retention:
                return self.retention[name]
        return None

    def notice(self, language: str | None = None) -> Notice:
        """The notice in ``language``, or the authoritative one."""
        from ..errors import unknown

        lang = language or self.language
        if lang not in self.notices:
            raise unknown("language", lang, self.notices, where=f"policy {self.version} notices")
        return self.notices[lang]


def consent_keys(purpose: str, category: str) -> list[tuple[str, str]]:
    """Record keys that can answer for (p, c), most specific first (purpose depth first)."""
    return [(p, c) for p in ancestors(purpose) for c in ancestors(category)]
