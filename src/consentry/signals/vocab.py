"""The one table: consentry's purposes and each opt-out vocabulary's terms for them.

consentry thinks in four **uses** of content (its own terms, stable across drafts):

==================  =====================================================================
use                 meaning
==================  =====================================================================
``train-genai``     training (or fine-tuning) a model used to generate synthetic content
``train-other``     training any other model (recommendation, tagging, fraud, search)
``ai-input``        content given to a trained model as input (RAG, grounding, summaries)
``search``          a search index and results that link to the content
==================  =====================================================================

Each platform purpose covers one or more uses (:data:`PURPOSE_USES`); each vocabulary names
some of the uses (:data:`AIPREF_LABELS`, :data:`CONTENT_SIGNAL_KEYS`, :data:`CAWG_ENTRIES`).
A use that no standard term covers is published in consentry's own terms
(:data:`OWN_TERMS`), never forced into a label whose definition does not cover it.

**IETF aipref** changes between drafts, so its labels are versioned: :data:`AIPREF_CURRENT`
is the draft consentry publishes (only labels it defines), and :data:`AIPREF_LABELS` says, for
every label any draft defined, which draft(s) defined it and which uses it covered there.
Reading accepts every label as its draft defined it and reports the draft with the finding.

Updating when a draft changes: see ``docs/signals.md`` ("Updating the vocabulary table").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .. import taxonomy
from ..errors import InvalidInput

# -- uses ------------------------------------------------------------------------------------

TRAIN_GENAI: Final = "train-genai"
TRAIN_OTHER: Final = "train-other"
AI_INPUT: Final = "ai-input"
SEARCH: Final = "search"

#: consentry's uses, in the order they are reported.
USES: tuple[str, ...] = (TRAIN_GENAI, TRAIN_OTHER, AI_INPUT, SEARCH)
TRAINING_USES: frozenset[str] = frozenset({TRAIN_GENAI, TRAIN_OTHER})

USE_MEANING: dict[str, str] = {
    TRAIN_GENAI: "training a model used to generate synthetic content",
    TRAIN_OTHER: "training a model that does not generate content (recommendation, tagging…)",
    AI_INPUT: "giving the content to a trained AI model as input (RAG, grounding, summaries)",
    SEARCH: "a search index whose results link to the content",
}

# -- platform purposes -----------------------------------------------------------------------

#: consentry purpose (taxonomy key; the most specific ancestor applies) → the uses it covers.
PURPOSE_USES: dict[str, tuple[str, ...]] = {
    "ai.training": (TRAIN_GENAI, TRAIN_OTHER),
    "ai.training.generative": (TRAIN_GENAI,),
    "ai.training.feature": (TRAIN_OTHER,),
    "ai.training.third_party": (TRAIN_GENAI, TRAIN_OTHER),
    "ai.feature": (AI_INPUT,),
}

#: Names a caller may give instead of a consentry purpose: a vocabulary's own term.
#: ``ai-use`` (aipref, removed August 2025) is accepted for old callers and means ai-input.
PURPOSE_ALIASES: dict[str, tuple[str, ...]] = {
    "train-ai": (TRAIN_GENAI,),  # as the current aipref draft defines it
    "ai-train": (TRAIN_GENAI, TRAIN_OTHER),  # Content-Signal: training or fine-tuning
    "train-genai": (TRAIN_GENAI,),
    "train-other": (TRAIN_OTHER,),
    "ai-input": (AI_INPUT,),
    "ai-use": (AI_INPUT,),
    "search": (SEARCH,),
}

# -- IETF aipref -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AiprefDraft:
    """One draft of the aipref vocabulary: its name, date and the labels it defines."""

    name: str
    date: str
    labels: tuple[str, ...]
    verified: bool  # whether the label list was read from the draft itself (see docs)


#: The drafts consentry knows, oldest first. The last one is what consentry publishes.
AIPREF_DRAFTS: tuple[AiprefDraft, ...] = (
    AiprefDraft("draft-keller-aipref-vocab-01", "2025-03", ("tdm", "genai"), False),
    AiprefDraft(
        "draft-ietf-aipref-vocab-00/-01",
        "2025-04/06",
        ("bots", "train-ai", "train-genai", "search"),
        False,
    ),
    AiprefDraft("ai-output proposal (WG branch)", "2025-06", ("ai-output",), True),
    AiprefDraft(
        "draft-ietf-aipref-vocab-02",
        "2025-07",
        ("all", "train-ai", "train-genai", "ai-use", "search"),
        True,
    ),
    AiprefDraft(
        "draft-ietf-aipref-vocab-03", "2025-08", ("all", "train-ai", "train-genai", "search"), True
    ),
    AiprefDraft("draft-ietf-aipref-vocab-08", "2026-09-14", ("train-ai", "search"), True),
)

#: The draft consentry publishes: only its labels are ever written.
AIPREF_CURRENT: Final = AIPREF_DRAFTS[-1].name
AIPREF_PUBLISHED: tuple[str, ...] = AIPREF_DRAFTS[-1].labels


@dataclass(frozen=True, slots=True)
class LabelMeaning:
    """What one aipref label covered in the draft(s) that defined it that way.

    ``uses`` maps each covered use to a rank: the label's specificity for that use. The
    vocabulary's hierarchy says a preference for a more specific category overrides one for
    a more general category, so when several labels speak about a use, the highest rank
    decides (equal ranks combine most-restrictively).
    """

    label: str
    drafts: str
    uses: Mapping[str, int]


_ALL_USES_BROADLY = {TRAIN_GENAI: 0, TRAIN_OTHER: 0, AI_INPUT: 0, SEARCH: 0}

#: Every aipref label, with the uses it covered as its draft(s) defined it. One label may
#: have several entries when its meaning changed (``train-ai`` narrowed to generative models).
AIPREF_LABELS: dict[str, tuple[LabelMeaning, ...]] = {
    "train-ai": (
        LabelMeaning("train-ai", AIPREF_CURRENT, {TRAIN_GENAI: 2}),
        LabelMeaning(
            "train-ai",
            "draft-ietf-aipref-vocab-00 to -03 (AI Training: any model)",
            {TRAIN_OTHER: 2},
        ),
    ),
    "search": (LabelMeaning("search", AIPREF_CURRENT, {SEARCH: 3}),),
    "train-genai": (
        LabelMeaning("train-genai", "draft-ietf-aipref-vocab-00 to -03", {TRAIN_GENAI: 3}),
    ),
    "ai-use": (LabelMeaning("ai-use", "draft-ietf-aipref-vocab-00 to -02", {AI_INPUT: 2}),),
    "all": (LabelMeaning("all", "draft-ietf-aipref-vocab-02 to -03", _ALL_USES_BROADLY),),
    "bots": (LabelMeaning("bots", "draft-ietf-aipref-vocab-00/-01", _ALL_USES_BROADLY),),
    "ai-output": (
        LabelMeaning("ai-output", "ai-output proposal (WG branch, 2025)", {AI_INPUT: 2, SEARCH: 1}),
    ),
    "tdm": (
        LabelMeaning(
            "tdm", "draft-keller-aipref-vocab (TDM)", {TRAIN_GENAI: 0, TRAIN_OTHER: 0, AI_INPUT: 0}
        ),
    ),
    "genai": (
        LabelMeaning(
            "genai", "draft-keller-aipref-vocab (Generative AI Training)", {TRAIN_GENAI: 3}
        ),
    ),
    "inference": (LabelMeaning("inference", "pre-WG proposals (AI inference)", {AI_INPUT: 2}),),
}

#: Every label consentry reads (any draft).
AIPREF_KNOWN: frozenset[str] = frozenset(AIPREF_LABELS)

# -- Content-Signal (contentsignals.org; draft-romm-aipref-contentsignals-00) ------------------

CONTENT_SIGNAL_SOURCE: Final = "draft-romm-aipref-contentsignals-00 / contentsignals.org"

#: Content-Signal key → the uses it covers.
CONTENT_SIGNAL_KEYS: dict[str, tuple[str, ...]] = {
    "search": (SEARCH,),
    "ai-input": (AI_INPUT,),
    "ai-train": (TRAIN_GENAI, TRAIN_OTHER),
}

# -- CAWG training-and-data-mining assertion v1.0 ---------------------------------------------

CAWG_SOURCE: Final = "CAWG Training and Data Mining Assertion 1.0 (cawg.training-mining)"

#: CAWG entry (without prefix) → the uses it covers. ``data_mining`` covers every use.
CAWG_ENTRIES: dict[str, tuple[str, ...]] = {
    "ai_generative_training": (TRAIN_GENAI,),
    "ai_training": (TRAIN_GENAI, TRAIN_OTHER),
    "ai_inference": (AI_INPUT,),
    "data_mining": (TRAIN_GENAI, TRAIN_OTHER, AI_INPUT),
}

# -- consentry's own terms -----------------------------------------------------------------------

#: How consentry states a use that no published standard term covers (robots.txt comment and
#: the tdmrep.json policy): ``consentry:<use>``.
OWN_TERMS: dict[str, str] = {use: f"consentry:{use}" for use in USES}


def aipref_label_for(use: str) -> str | None:
    """The current draft's label that covers exactly ``use``, or None when none does."""
    for label in AIPREF_PUBLISHED:
        for meaning in AIPREF_LABELS[label]:
            if meaning.drafts == AIPREF_CURRENT and use in meaning.uses:
                return label
    return None


def uses_of(purpose: str) -> tuple[str, ...]:
    """The uses a purpose (consentry purpose or vocabulary term) covers.

    >>> uses_of("ai.training.feature")
    ('train-other',)
    >>> uses_of("train-ai")
    ('train-genai',)
    """
    alias = PURPOSE_ALIASES.get(purpose)
    if alias is not None:
        return alias
    for key in taxonomy.ancestors(purpose):
        found = PURPOSE_USES.get(key)
        if found:
            return found
    raise InvalidInput(
        f"purpose {purpose!r} is not a use any do-not-train signal speaks about",
        hint="use a purpose under ai.training or ai.feature, or one of "
        + ", ".join(sorted(PURPOSE_ALIASES)),
        field="purpose",
        value=purpose,
    )


@dataclass(frozen=True, slots=True)
class LabelFinding:
    """What a set of aipref preferences says about one use, and the label and draft it used."""

    allowed: bool
    label: str
    drafts: str


def read_use(preferences: Mapping[str, bool], use: str) -> LabelFinding | None:
    """What explicit aipref ``preferences`` (label → allowed) say about ``use``, if anything.

    Each label is read as the draft that defined it defined it; the most specific label that
    covers ``use`` decides, and labels equally specific combine most-restrictively.

    >>> read_use({"train-ai": False}, "train-other").drafts
    'draft-ietf-aipref-vocab-00 to -03 (AI Training: any model)'
    >>> read_use({"all": True, "train-genai": False}, "train-genai").allowed
    False
    """
    best_rank = -1
    best: LabelFinding | None = None
    for label, allowed in preferences.items():
        for meaning in AIPREF_LABELS.get(label, ()):
            rank = meaning.uses.get(use)
            if rank is None:
                continue
            if rank > best_rank or (rank == best_rank and not allowed):
                best_rank, best = rank, LabelFinding(allowed, label, meaning.drafts)
    return best


def purpose_terms(purpose: str) -> dict[str, str]:
    """Each do-not-train vocabulary's term(s) for a consentry purpose ({} when none speaks).

    >>> purpose_terms("ai.training")["aipref"], purpose_terms("ai.training")["consentry"]
    ('train-ai', 'consentry:train-other')
    """
    try:
        uses = uses_of(purpose)
    except InvalidInput:
        return {}
    labels = [label for use in uses if (label := aipref_label_for(use)) is not None]
    own = [OWN_TERMS[use] for use in uses if aipref_label_for(use) is None]
    signal = [k for k, covered in CONTENT_SIGNAL_KEYS.items() if set(covered) & set(uses)]
    out: dict[str, str] = {}
    if labels:
        out["aipref"] = ", ".join(dict.fromkeys(labels))
        out["aipref_draft"] = AIPREF_CURRENT
    if own:
        out["consentry"] = ", ".join(own)
    out["content-signal"] = ", ".join(signal)
    return out


def table_rows() -> list[dict[str, str]]:
    """The table as rows (purpose, uses and each vocabulary's term), for docs and the CLI."""
    rows = []
    for purpose, uses in PURPOSE_USES.items():
        for use in uses:
            label = aipref_label_for(use)
            signal = [k for k, v in CONTENT_SIGNAL_KEYS.items() if use in v]
            cawg = [f"cawg.{k}" for k, v in CAWG_ENTRIES.items() if use in v]
            rows.append(
                {
                    "purpose": purpose,
                    "use": use,
                    "aipref": label or f"(none in {AIPREF_CURRENT}: {OWN_TERMS[use]})",
                    "content-signal": ", ".join(signal),
                    "cawg": ", ".join(cawg),
                }
            )
    return rows
