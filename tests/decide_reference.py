"""The decision algorithm for one subject, written plainly: the oracle of the generated kernels.

consentry decides with functions written per compiled plan from one table
(``consentry.decision_table`` and ``consentry.kernels``). This is the same algorithm as
DESIGN.md's "Deciding" states it, step by step with ordinary branches, reading the compiled
plan's fields and the state's records; the kernel tests compare the two on random states,
plans and times. It is the reference, so it shares nothing with the table: a change to the
algorithm is made in the table and here, and the tests say whether the two agree.
"""

from __future__ import annotations

from consentry.decide import Plan
from consentry.policy.model import Basis
from consentry.reasons import (
    R_ACCOUNT_CONSENT,
    R_ACCOUNT_OFF,
    R_CONSENT,
    R_CONTRACT,
    R_EXPIRED,
    R_LI,
    R_NO_BASIS,
    R_NO_CONSENT,
    R_NOT_ENABLED,
    R_OBJECTION,
    R_PROHIBITED,
    R_REFUSED,
    R_STALE,
    R_WITHDRAWN,
)
from consentry.state import State, unpack

#: The instant an answer that never turns turns (the reason cache's NEVER).
NEVER = (1 << 63) - 1
_LONG_AGO = -(1 << 62)


def reference_decide(plan: Plan, state: State, subject: str, now_us: int) -> tuple[int, int]:
    """(reason index, deciding seq or 0) for one subject."""
    basis = plan.basis
    if basis is None:  # 2. no rule
        return R_NO_BASIS, 0
    if basis is Basis.PROHIBITED:  # 3.
        return R_PROHIBITED, 0
    # Memberships in any order: the reference sorts them itself (the answer and the event
    # named must never depend on the order people joined in).
    accounts = sorted(state.memberships.get(subject, ()))
    context = plan.context
    if plan.account_enable:  # 4. AI features follow the account the item belongs to
        if context is not None:
            if context not in plan.enabled:
                return R_NOT_ENABLED, plan.disabled.get(context, 0)
        else:  # no context: every account of the subject must have enabled it
            if not accounts:
                return R_NOT_ENABLED, 0
            for account in accounts:
                if account not in plan.enabled:
                    return R_NOT_ENABLED, plan.disabled.get(account, 0)
    if basis is not Basis.CONTRACT:  # 5. an account's off caps its own members
        if context is not None and context in accounts and context in plan.off:
            return R_ACCOUNT_OFF, plan.off[context]
        for account in accounts:
            seq = plan.off.get(account)
            if seq is not None:
                return R_ACCOUNT_OFF, seq
    if basis is Basis.CONTRACT:  # 6.
        return R_CONTRACT, 0
    if basis is Basis.LEGITIMATE_INTEREST:  # 7.
        if plan.objection:
            record = _most_specific(plan, state.objections.get(subject))
            if record is not None:
                _, seq, status = unpack(record)
                if status:
                    return R_OBJECTION, seq
        return R_LI, 0
    record = _most_specific(plan, state.consents.get(subject))  # 8.
    if record is not None:
        at, seq, status = unpack(record)
        if status == 2:
            return R_REFUSED, seq
        if status == 3:
            return R_WITHDRAWN, seq
        return _given(plan, at, seq, now_us, R_CONSENT)
    if plan.account_consent:
        found = _account_consent(plan, accounts)
        if found is not None:
            seq, at = found
            return _given(plan, at, seq, now_us, R_ACCOUNT_CONSENT)
    return R_NO_CONSENT, 0


def _account_consent(plan: Plan, accounts: list[str]) -> tuple[int, int] | None:
    """The account setting ``on`` that consents for the subject, (seq, at), or None.

    With a context: only the item's own account speaks, and only for its members. Without:
    only if every account of the subject with a setting for the purpose set it on; then the
    oldest of those settings (it goes stale and expires first)."""
    if plan.context is not None:
        return plan.on.get(plan.context) if plan.context in accounts else None
    settings = [plan.on.get(a) for a in accounts if a in plan.on or a in plan.choose]
    if not settings or any(s is None for s in settings):
        return None
    return min((s for s in settings if s is not None), key=lambda s: (s[1], s[0]))


def reference_codes(plan: Plan, state: State, subjects: list[str], now_us: int) -> bytearray:
    """The reason index of each subject, one byte each."""
    return bytearray(reference_decide(plan, state, s, now_us)[0] for s in subjects)


def reference_timeless(plan: Plan, state: State, subject: str) -> tuple[int, int, int]:
    """(reason, seq, instant it turns ``expired``) as a reason cache keeps it: decided before
    anything expired; an allowing consent turns when its time is up, anything else never."""
    code, seq = reference_decide(plan, state, subject, _LONG_AGO)
    if code == R_CONSENT:
        at = next(
            unpack(v)[0]
            for v in (state.consents.get(subject) or {}).values()
            if unpack(v)[1] == seq
        )
        return code, seq, at + plan.expires_us
    if code == R_ACCOUNT_CONSENT:
        at = next(at for s, at in plan.on.values() if s == seq)
        return code, seq, at + plan.expires_us
    return code, seq, NEVER


def _most_specific(plan: Plan, records: dict[int, int] | None) -> int | None:
    for pid in plan.pair_ids:
        if records and pid in records:
            return records[pid]
    return None


def _given(plan: Plan, at: int, seq: int, now_us: int, allowed: int) -> tuple[int, int]:
    if at < plan.valid_from_us:
        return R_STALE, seq
    if plan.expiring and at + plan.expires_us <= now_us:
        return R_EXPIRED, seq
    return allowed, seq
