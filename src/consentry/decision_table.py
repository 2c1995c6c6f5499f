"""The decision algorithm for one subject, as one table: DESIGN.md's "Deciding", steps 2 to 8.

Each :class:`Step` says when it is on for a compiled plan (``on``), what it looks up for a
subject (``reads``, ``find``), when it answers (``found``) and what (``answers``: the reason,
the event that decided, and whether the answer is a consent that expires). The first step
that answers decides. :mod:`consentry.kernels` writes, per compiled plan, the functions that
decide from this table: one subject with its deciding event (``plan.decide``), many subjects
at once (``plan.codes``, the gate's batch kernel) and an answer as the reason cache keeps it
(``plan.timeless``); tests/decide_reference.py is the readable version they are tested
against. Adding a step is a row here plus its test (see docs/architecture.md).

Step 1 (a protected label) concerns the item, not the subject: :mod:`consentry.item_order`.

The text in ``find``, ``found`` and ``answers`` is Python, run inside the generated function,
where these names are defined:

* per subject, from ``reads``: ``accounts`` (the subject's accounts, a tuple), and for a
  ``consent`` or ``objection`` read ``value``: the subject's most specific record for the
  plan's (purpose, category), or ``None``, with its fields (``at``, ``seq``, ``status``:
  :data:`consentry.state.RECORD_FIELDS`) decoded once ``found`` holds;
* per plan (:data:`PLAN_VALUES`): ``enabled``, ``disabled``, ``off``, ``on``, ``choose``,
  ``valid_from``, ``expires``, and for a plan with an account context (the account the item
  belongs to, ``Plan.context``) ``context`` and its own ``context_disabled``, ``context_off``,
  ``context_on``;
* ``now_us``, the time decided at, in :attr:`Answer.when` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .policy.model import Basis
from .reasons import (
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
from .state import CONSENT_CODES

if TYPE_CHECKING:
    from .decide import Plan

#: A plan's time bound that is no bound (no expiry, no next policy version).
UNBOUNDED_US = 1 << 62


@dataclass(frozen=True)
class Answer:
    """One answer a step can give."""

    #: The reason index (``consentry.reasons.R_*``).
    reason: int
    #: A condition (Python) for this answer; empty: it answers whenever the step does.
    when: str = ""
    #: The deciding event's ``seq`` (Python); 0: no event decided.
    seq: str = "0"
    #: Whether the answer can happen under a plan (None: whenever the step is on).
    on: Callable[[Plan], bool] | None = None
    #: For an allowing consent: when it was given (Python). Under a rule with
    #: ``expires_after`` the answer is ``expired`` from that instant plus ``expires`` on.
    given_at: str | None = None


@dataclass(frozen=True)
class Step:
    """One step of the algorithm."""

    #: The step's name (the reason it gives, or the basis that allows).
    name: str
    #: What it checks, in words (docs and generated code).
    checks: str
    #: Whether the step is on for a compiled plan.
    on: Callable[[Plan], bool]
    #: Answers, tried in order once ``found`` holds; an unconditional last one means the
    #: step always answers when found (else it may fall through to the next step).
    answers: tuple[Answer, ...]
    #: The subject's data it looks up: ``accounts``, ``consent``, ``objection``.
    reads: tuple[str, ...] = ()
    #: Lines (Python) that look for what decides, before ``found`` is tested.
    find: tuple[str, ...] = ()
    #: When the step answers (Python); empty: always.
    found: str = ""
    #: Lines (Python) that unpack what was found, once ``found`` holds.
    unpack: tuple[str, ...] = ()
    #: The answer comes from the rule alone, before any subject is looked at
    #: (``Plan.fixed``: the gate and lineage read it).
    fixed: bool = False


def first_account(condition: str) -> tuple[str, ...]:
    """Lines that find ``blocker``: the subject's first account (by name: memberships are
    kept sorted, so never by the order they joined in) for which ``condition`` holds (None:
    none does)."""
    return (
        "blocker = None",
        "for account in accounts:",
        f"    if {condition}:",
        "        blocker = account",
        "        break",
    )


def consent_in_force(allowed: int, seq: str, given_at: str) -> tuple[Answer, ...]:
    """A consent that was given (by the subject, or by an account's ``on``): stale if given
    before the latest re-consent, ``expired`` once its time is up, else ``allowed``."""
    return (
        Answer(R_STALE, f"{given_at} < valid_from", seq, on=lambda plan: plan.valid_from_us > 0),
        Answer(allowed, seq=seq, given_at=given_at),
    )


#: The steps, first to last. The last step on for a plan must answer unconditionally.
STEPS: tuple[Step, ...] = (
    Step(
        "no_basis",
        "no rule covers (purpose, category): deny by default",
        on=lambda plan: plan.basis is None,
        answers=(Answer(R_NO_BASIS),),
        fixed=True,
    ),
    Step(
        "prohibited",
        "the rule prohibits the use, whatever anyone chose",
        on=lambda plan: plan.basis is Basis.PROHIBITED,
        answers=(Answer(R_PROHIBITED),),
        fixed=True,
    ),
    Step(
        "content_not_enabled",
        "the item belongs to an account (its context) that has not switched the AI feature "
        "on: a feature follows the account the content belongs to, whoever the subject is",
        on=lambda plan: (
            plan.account_enable and plan.context is not None and plan.context not in plan.enabled
        ),
        answers=(Answer(R_NOT_ENABLED, seq="context_disabled"),),
    ),
    Step(
        "not_enabled",
        "no account context, and the rule needs accounts to enable the purpose (an AI "
        "feature): the subject is in no account, or in one that has not enabled it (the most "
        "protective answer over all the subject's accounts)",
        on=lambda plan: plan.account_enable and plan.context is None,
        reads=("accounts",),
        find=first_account("account not in enabled"),
        found="not accounts or blocker is not None",
        # disabled.get(None, 0) is 0: in no account, no event decided.
        answers=(Answer(R_NOT_ENABLED, seq="disabled.get(blocker, 0)"),),
    ),
    Step(
        "content_account_off",
        "the subject is a member of the account the item belongs to, and it set the purpose "
        "off (it names that account first; not for contract)",
        on=lambda plan: (
            plan.basis is not Basis.CONTRACT
            and plan.context is not None
            and plan.context in plan.off
        ),
        reads=("accounts",),
        found="context in accounts",
        answers=(Answer(R_ACCOUNT_OFF, seq="context_off"),),
    ),
    Step(
        "account_off",
        "an account of the subject set the purpose off: an account caps its own members, "
        "also in another account's content (not for contract)",
        on=lambda plan: plan.basis is not Basis.CONTRACT and bool(plan.off),
        reads=("accounts",),
        find=first_account("account in off"),
        found="blocker is not None",
        answers=(Answer(R_ACCOUNT_OFF, seq="off[blocker]"),),
    ),
    Step(
        "contract",
        "the basis is contract: allow",
        on=lambda plan: plan.basis is Basis.CONTRACT,
        answers=(Answer(R_CONTRACT),),
    ),
    Step(
        "objection",
        "legitimate interest, and the rule lets subjects object: the subject's most specific "
        "objection record is raised",
        on=lambda plan: (
            plan.basis is Basis.LEGITIMATE_INTEREST and plan.objection and bool(plan.pair_ids)
        ),
        reads=("objection",),
        found="value is not None",
        answers=(Answer(R_OBJECTION, when="status", seq="seq"),),
    ),
    Step(
        "legitimate_interest",
        "the basis is legitimate interest (and nobody objected): allow",
        on=lambda plan: plan.basis is Basis.LEGITIMATE_INTEREST,
        answers=(Answer(R_LI),),
    ),
    Step(
        "consent",
        "the subject's most specific consent record decides",
        on=lambda plan: plan.basis is Basis.CONSENT and bool(plan.pair_ids),
        reads=("consent",),
        found="value is not None",
        answers=(
            Answer(R_REFUSED, f"status == {CONSENT_CODES['refused']}", "seq"),
            Answer(R_WITHDRAWN, f"status == {CONSENT_CODES['withdrawn']}", "seq"),
            *consent_in_force(R_CONSENT, "seq", "at"),
        ),
    ),
    Step(
        "content_account_consent",
        "no consent record of the subject's own, the rule lets accounts consent for members, "
        "and the subject is a member of the account the item belongs to, which set it on",
        on=lambda plan: (
            plan.basis is Basis.CONSENT
            and plan.account_consent
            and plan.context is not None
            and plan.context in plan.on
        ),
        reads=("accounts",),
        found="context in accounts",
        unpack=("seq, at = context_on",),
        answers=consent_in_force(R_ACCOUNT_CONSENT, "seq", "at"),
    ),
    Step(
        "account_consent",
        "no account context, no consent record of the subject's own, and the rule lets "
        "accounts consent for members: every account of the subject with a setting for the "
        "purpose set it on (one that lets members choose speaks for no one); the oldest "
        "of those settings decides (the most protective: it goes stale and expires first)",
        on=lambda plan: (
            plan.basis is Basis.CONSENT
            and plan.account_consent
            and plan.context is None
            and bool(plan.on)
        ),
        reads=("accounts",),
        find=(
            "found = None",
            "for account in accounts:",
            "    setting = on.get(account)",
            "    if setting is None:",
            "        if account in choose:",
            "            found = None",
            "            break",
            # (seq, at): the smallest seq is the oldest setting (times follow the chain).
            "    elif found is None or setting < found:",
            "        found = setting",
        ),
        found="found is not None",
        unpack=("seq, at = found",),
        answers=consent_in_force(R_ACCOUNT_CONSENT, "seq", "at"),
    ),
    Step(
        "no_consent",
        "nobody gave consent: deny",
        on=lambda plan: plan.basis is Basis.CONSENT,
        answers=(Answer(R_NO_CONSENT),),
    ),
)

#: What the table's Python may name of a compiled plan.
PLAN_VALUES: dict[str, Callable[[Plan], Any]] = {
    "enabled": lambda plan: plan.enabled,
    "disabled": lambda plan: plan.disabled,
    "off": lambda plan: plan.off,
    "on": lambda plan: plan.on,
    "choose": lambda plan: plan.choose,
    "context": lambda plan: plan.context,
    "context_disabled": lambda plan: plan.disabled.get(plan.context or "", 0),
    "context_off": lambda plan: plan.off.get(plan.context or "", 0),
    "context_on": lambda plan: plan.on.get(plan.context or ""),
    "valid_from": lambda plan: plan.valid_from_us,
    "expires": lambda plan: plan.expires_us,
}

#: Where a step's ``reads`` come from in the state.
READS = {"accounts": "memberships", "consent": "consents", "objection": "objections"}

#: Reasons that name the event that decided (the others come from the rule alone).
REASONS_WITH_EVENT = frozenset(
    {R_EXPIRED} | {a.reason for s in STEPS for a in s.answers if a.seq != "0"}
)

#: Reasons a consent that expires can give: the allowing ones, and ``expired``. The reason
#: cache keeps these with the instant they turn (see ``Plan.timeless``).
EXPIRING_REASONS = frozenset(
    {R_EXPIRED} | {a.reason for s in STEPS for a in s.answers if a.given_at is not None}
)


def steps_on(plan: Plan) -> tuple[int, ...]:
    """Which steps (their indexes in :data:`STEPS`) are on for ``plan``, up to the first that
    always answers."""
    out = []
    for i, step in enumerate(STEPS):
        if step.on(plan):
            out.append(i)
            if always_answers(step):
                return tuple(out)
    raise AssertionError(f"no step always answers for plan {plan.purpose} {plan.category}")


def always_answers(step: Step) -> bool:
    """Whether the step answers whatever it finds."""
    return not step.found and not step.answers[-1].when


def answers_on(step: Step, plan: Plan) -> tuple[int, ...]:
    """Which of the step's answers (their indexes) can happen under ``plan``."""
    return tuple(i for i, a in enumerate(step.answers) if a.on is None or a.on(plan))
