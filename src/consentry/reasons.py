"""Reason codes: why a decision came out as it did, and the small ints the hot paths use."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a decision came out as it did. Allow reasons name the basis that allowed it."""

    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONSENT = "consent"
    ACCOUNT_CONSENT = "account_consent"
    PROTECTED_LABEL = "protected_label"
    NO_BASIS = "no_basis"
    PROHIBITED = "prohibited"
    NOT_ENABLED = "not_enabled"
    ACCOUNT_OFF = "account_off"
    OBJECTION = "objection"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"
    STALE_CONSENT = "stale_consent"
    EXPIRED = "expired"
    NO_CONSENT = "no_consent"
    UNKNOWN_SUBJECT = "unknown_subject"  # the gate's answer for a subject never seen


ALLOW_REASONS = frozenset(
    {Reason.CONTRACT, Reason.LEGITIMATE_INTEREST, Reason.CONSENT, Reason.ACCOUNT_CONSENT}
)
DENY_REASONS = frozenset(Reason) - ALLOW_REASONS

# Reason indexes, so that the hot path compares small ints.
_REASONS = tuple(Reason)
_IDX = {r: i for i, r in enumerate(_REASONS)}
R_CONTRACT = _IDX[Reason.CONTRACT]
R_LI = _IDX[Reason.LEGITIMATE_INTEREST]
R_CONSENT = _IDX[Reason.CONSENT]
R_ACCOUNT_CONSENT = _IDX[Reason.ACCOUNT_CONSENT]
R_PROTECTED = _IDX[Reason.PROTECTED_LABEL]
R_NO_BASIS = _IDX[Reason.NO_BASIS]
R_PROHIBITED = _IDX[Reason.PROHIBITED]
R_NOT_ENABLED = _IDX[Reason.NOT_ENABLED]
R_ACCOUNT_OFF = _IDX[Reason.ACCOUNT_OFF]
R_OBJECTION = _IDX[Reason.OBJECTION]
R_WITHDRAWN = _IDX[Reason.WITHDRAWN]
R_REFUSED = _IDX[Reason.REFUSED]
R_STALE = _IDX[Reason.STALE_CONSENT]
R_EXPIRED = _IDX[Reason.EXPIRED]
R_NO_CONSENT = _IDX[Reason.NO_CONSENT]
ALLOW_IDX = frozenset(_IDX[r] for r in ALLOW_REASONS)
#: Reasons by code, as :meth:`Decider.codes` returns them.
REASONS = _REASONS
