"""The order in which an item's answer is decided: one tuple that every engine follows.

An item (a meeting recording, a message, a manifest row) is decided step by step; the first
step that answers decides it. ``Decider.check`` (one item), the gate's DuckDB stream and its
Spark engine (a manifest) and lineage (a dataset's rows, re-decided now) all follow
:data:`ITEM_ORDER`, so that adding or moving a step is one edit here plus each engine's
translation of that step.
"""

from __future__ import annotations

import enum


class ItemStep(enum.StrEnum):
    """One step of an item's decision, in :data:`ITEM_ORDER`."""

    #: The item's source URL opted out of AI training (robots.txt, TDM headers): deny
    #: ``source_opt_out``. Only the gate sees source URLs.
    SOURCE_OPT_OUT = "source_opt_out"
    #: The item carries a label the rule protects: deny ``protected_label``.
    PROTECTED_LABEL = "protected_label"
    #: The rule answers whatever the people (``prohibited``, ``no_basis``, a contract or
    #: legitimate interest nobody may object to).
    FIXED_ANSWER = "fixed_answer"
    #: Every party the rule considers (the owner, or every subject when the rule says
    #: ``parties: all``) must be allowed; the first one denied names the reason.
    PARTIES = "parties"
    #: A subject the store has never seen: deny ``unknown_subject`` (the gate's answer).
    UNKNOWN_SUBJECT = "unknown_subject"


#: The steps, first to last.
ITEM_ORDER: tuple[ItemStep, ...] = tuple(ItemStep)
