"""Data categories, purposes and labels, and dotted-key matching.

Categories and purposes are dotted, hierarchical keys: ``content`` covers ``content.audio``,
``ai.training`` covers ``ai.training.generative``. The empty key ``""`` is the root and covers
everything (an objection with no category names every category).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import InvalidInput, unknown

BUILTIN_CATEGORIES: tuple[str, ...] = (
    "content",
    "content.audio",
    "content.video",
    "content.chat",
    "content.recording",
    "content.transcript",
    "content.music",
    "content.image",
    "content.document",
    "service_data",
    "service_data.telemetry",
    "service_data.usage",
    "service_data.diagnostics",
)

BUILTIN_PURPOSES: tuple[str, ...] = (
    "service",
    "service.delivery",
    "service.safety",
    "improvement",
    "improvement.product",
    "ai",
    "ai.feature",
    "ai.training",
    "ai.training.feature",
    "ai.training.generative",
    "ai.training.third_party",
)

BUILTIN_LABELS: tuple[str, ...] = (
    "health",
    "education_record",
    "minor",
    "biometric",
    "financial",
    "precise_location",
)

#: Public vocabularies each built-in purpose maps to (W3C DPV, fideslang). The do-not-train
#: vocabularies (IETF aipref by draft, Content-Signal, CAWG) are in one table of their own,
#: ``consentry.signals.vocab`` (see :func:`consentry.signals.vocab.purpose_terms`).
PURPOSE_VOCABULARY: dict[str, dict[str, str]] = {
    "service.delivery": {"dpv": "dpv:ServiceProvision", "fideslang": "essential.service"},
    "service.safety": {
        "dpv": "dpv:FraudPreventionAndDetection",
        "fideslang": "essential.fraud_detection",
    },
    "improvement.product": {
        "dpv": "dpv:ImproveExistingProductsAndServices",
        "fideslang": "functional.service.improve",
    },
    "ai.training": {"dpv": "ai:ModelTraining", "fideslang": "train_ai_system"},
    "ai.training.feature": {"dpv": "ai:ModelTraining", "fideslang": "train_ai_system"},
    "ai.training.generative": {"dpv": "ai:ModelTraining", "fideslang": "train_ai_system"},
    "ai.training.third_party": {
        "dpv": "dpv:SellDataToThirdParties",
        "fideslang": "train_ai_system",
    },
}


def ancestors(key: str) -> list[str]:
    """``key`` and every key above it, most specific first, ending with the root ``""``.

    >>> ancestors("ai.training.generative")
    ['ai.training.generative', 'ai.training', 'ai', '']
    """
    out = []
    while key:
        out.append(key)
        key = key.rpartition(".")[0]
    out.append("")
    return out


def depth(key: str) -> int:
    """Number of dotted parts; the root has depth 0."""
    return key.count(".") + 1 if key else 0


def covers(general: str, specific: str) -> bool:
    """True when ``general`` is ``specific`` or one of its ancestors."""
    return (
        general == ""
        or general == specific
        or (specific.startswith(general) and specific[len(general)] == ".")
    )


def _valid_key(key: str) -> bool:
    return bool(key) and all(
        part and part.replace("_", "a").replace("-", "a").isalnum() and part == part.lower()
        for part in key.split(".")
    )


@dataclass(frozen=True)
class Taxonomy:
    """The known categories, purposes and labels: the built-ins plus a policy's additions."""

    categories: frozenset[str] = field(default_factory=lambda: frozenset(BUILTIN_CATEGORIES))
    purposes: frozenset[str] = field(default_factory=lambda: frozenset(BUILTIN_PURPOSES))
    labels: frozenset[str] = field(default_factory=lambda: frozenset(BUILTIN_LABELS))

    def extended(
        self,
        *,
        categories: Iterable[str] = (),
        purposes: Iterable[str] = (),
        labels: Iterable[str] = (),
    ) -> Taxonomy:
        """A taxonomy with these additions; parents of a new dotted key are added too."""
        return Taxonomy(
            categories=self.categories | _with_parents(categories, "category"),
            purposes=self.purposes | _with_parents(purposes, "purpose"),
            labels=self.labels | _checked(labels, "label"),
        )

    def category(self, key: str, *, where: str = "") -> str:
        """``key`` if it is a known category, else an error suggesting the nearest one."""
        if key not in self.categories:
            raise unknown("category", key, self.categories, where=where)
        return key

    def purpose(self, key: str, *, where: str = "") -> str:
        """``key`` if it is a known purpose (``ai.feature.<name>`` counts), else an error."""
        if key in self.purposes:
            return key
        raise unknown("purpose", key, self.purposes, where=where)

    def label(self, key: str, *, where: str = "") -> str:
        if key not in self.labels:
            raise unknown("label", key, self.labels, where=where)
        return key


def _checked(keys: Iterable[str], kind: str) -> frozenset[str]:
    out = set()
    for key in keys:
        if not isinstance(key, str) or not _valid_key(key):
            raise InvalidInput(
                f"invalid {kind} {key!r}",
                hint="use lower-case dotted names such as 'content.whiteboard'",
            )
        out.add(key)
    return frozenset(out)


def _with_parents(keys: Iterable[str], kind: str) -> frozenset[str]:
    out: set[str] = set()
    for key in _checked(keys, kind):
        out.update(k for k in ancestors(key) if k)
    return frozenset(out)


def iter_pairs(purposes: Iterable[str], categories: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Every (purpose, category) pair of two lists."""
    cats = list(categories)
    for p in purposes:
        for c in cats:
            yield p, c


DEFAULT_TAXONOMY = Taxonomy()
