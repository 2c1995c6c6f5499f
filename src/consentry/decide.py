"""Deciding: compiled plans for fast checks, the :class:`Decider`, and explanations.

The algorithm for one subject (DESIGN.md's "Deciding") is one table,
:data:`consentry.decision_table.STEPS`; the order in which an item's answer is decided (a
protected label, an answer for everyone, every party) is :data:`consentry.item_order.ITEM_ORDER`.

Everything that does not depend on the subject is worked out once per (purpose, category) and
policy version in a :class:`Plan`, with functions written for it from the table
(:mod:`consentry.kernels`); a check is then a handful of dictionary lookups.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .decision_table import STEPS, UNBOUNDED_US, steps_on
from .errors import InvalidInput, unknown
from .item_order import ITEM_ORDER, ItemStep
from .kernels import Codes, Decide, Timeless, make_kernels
from .policy.model import Basis, Parties, Policy, Rule, consent_keys
from .reason_cache import UNSET, ReasonCache
from .reasons import (
    _REASONS,
    ALLOW_IDX,
    ALLOW_REASONS,
    DENY_REASONS,
    R_PROTECTED,
    REASONS,
    Reason,
)
from .state import PublishedPolicy, State
from .taxonomy import ancestors
from .times import Clock, to_us

__all__ = [
    "ALLOW_REASONS",
    "DENY_REASONS",
    "REASONS",
    "Decider",
    "Decision",
    "Plan",
    "Reason",
    "SubjectDecision",
    "compile_plan",
]

_tuple_new = tuple.__new__  # NamedTuples built without their Python-level __new__
_OUTCOMES = tuple((i in ALLOW_IDX, r) for i, r in enumerate(_REASONS))  # code -> (allowed, reason)


class SubjectDecision(NamedTuple):
    """The answer for one subject of an item."""

    subject: str
    allowed: bool
    reason: Reason
    evidence: tuple[int, ...]  # ledger seqs of the events that decided it


class Decision(NamedTuple):
    """Allow or deny, always with the reason, the rule and the events that decided it."""

    allowed: bool
    reason: Reason
    purpose: str
    category: str
    rule: str | None
    policy_version: str | None
    #: The subject whose answer decided: the blocking subject of a denial.
    subject: str | None
    #: Ledger positions (``seq``) of the events behind the decision, the policy's included.
    evidence: tuple[int, ...] = ()
    #: One answer per subject considered (several for a multi-party item).
    subjects: tuple[SubjectDecision, ...] = ()
    #: The account the item belongs to (the account context decided in), or None.
    account: str | None = None

    def to_dict(self, event_ids: dict[int, str] | None = None) -> dict[str, Any]:
        """JSON data for the decision; with ``event_ids``, evidence names events by id too."""
        ids = event_ids or {}
        return {
            "allowed": self.allowed,
            "decision": "allow" if self.allowed else "deny",
            "reason": str(self.reason),
            "purpose": self.purpose,
            "category": self.category,
            "rule": self.rule,
            "policy_version": self.policy_version,
            "subject": self.subject,
            "account": self.account,
            "evidence": [{"seq": s, "event_id": ids.get(s)} for s in self.evidence],
            "subjects": [
                {
                    "subject": d.subject,
                    "allowed": d.allowed,
                    "reason": str(d.reason),
                    "evidence": [{"seq": s, "event_id": ids.get(s)} for s in d.evidence],
                }
                for d in self.subjects
            ],
        }


@dataclass(eq=False)
class Plan:
    """Everything about (p, c) under one policy version that does not depend on the subject,
    and the functions that decide under it (``decide``, ``codes``, ``timeless``: see
    :mod:`consentry.kernels`)."""

    purpose: str
    category: str
    policy: Policy | None
    policy_seq: int
    rule: Rule | None
    protected: frozenset[str]
    basis: Basis | None
    parties_all: bool
    account_enable: bool
    account_consent: bool
    objection: bool
    #: Record keys to look up, most specific first.
    pair_ids: tuple[int, ...]
    valid_from_us: int
    expires_us: int
    #: Accounts whose most specific setting/feature for p is off / on / enabled, with the seq
    #: (``on`` also keeps when it was set: an account's consent goes stale and expires too).
    off: dict[str, int]
    on: dict[str, tuple[int, int]]
    enabled: dict[str, int]
    disabled: dict[str, int]
    #: Accounts whose most specific setting for p lets members choose, with the seq: with
    #: no account context they keep account consent from counting for their members.
    choose: dict[str, int]
    #: The plan holds until this time (when the next policy version takes effect).
    valid_until_us: int
    generation: int
    #: The account the item belongs to (its context: the meeting host's, the label's), or
    #: None: then the answer is the most protective over all the subject's accounts.
    context: str | None = None
    #: Derived once: what every decision under this plan names.
    rule_id: str | None = field(init=False)
    version: str | None = field(init=False)
    base_evidence: tuple[int, ...] = field(init=False)
    #: Whether the rule's consents expire (``expires_after``): answers then depend on time.
    expiring: bool = field(init=False)
    #: The rule's own answer, before any subject is looked at (``no_basis``, ``prohibited``),
    #: or -1.
    fixed: int = field(init=False)
    #: The answer every subject gets (``fixed``, or a contract or legitimate interest that no
    #: account switch or objection can change, ...), or -1: it depends on the subject.
    answer_for_all: int = field(init=False)
    #: The event behind ``answer_for_all`` (the content account's feature switch), or 0.
    seq_for_all: int = field(init=False)
    #: Whether answers are worth remembering per subject (see :mod:`consentry.reason_cache`):
    #: they depend on the subject.
    cacheable: bool = field(init=False)
    #: The remembered answers, when the decider keeps them.
    cache: ReasonCache | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rule_id = self.rule.id if self.rule else None
        self.version = self.policy.version if self.policy else None
        self.base_evidence = (self.policy_seq,) if self.policy_seq else ()
        self.expiring = self.expires_us != UNBOUNDED_US
        steps = steps_on(self)
        first = STEPS[steps[0]]
        self.fixed = first.answers[0].reason if first.fixed else -1
        alone = len(steps) == 1 and not first.reads
        self.answer_for_all = first.answers[-1].reason if alone else -1
        self.cacheable = self.answer_for_all < 0
        # Not fields: functions, written for this plan from the decision table.
        kernels = make_kernels(self, steps)
        # An answer for all reads nothing of the state or the subject.
        self.seq_for_all = kernels.decide(None, "", 0)[1] if alone else 0  # type: ignore[arg-type]
        #: (reason index, deciding seq or 0) for one subject at a time.
        self.decide: Decide = kernels.decide
        #: The reason index of each subject, one byte each (the batch kernel).
        self.codes: Codes = kernels.codes
        #: Under an expiring rule: (reason, seq, instant it turns ``expired``) as kept.
        self.timeless: Timeless | None = kernels.timeless


def compile_plan(
    state: State, purpose: str, category: str, at_us: int, account: str | None = None
) -> Plan:
    """Work out the subject-independent part of deciding (p, c) at ``at_us``, for an item of
    ``account`` (None: no account context)."""
    context = account
    if context is not None and context not in state.accounts:
        raise unknown("account", context, state.accounts, where="check")
    entry, next_us = state.policy_at(at_us)
    policy = entry.policy if entry else None
    if policy is not None:
        policy.taxonomy.purpose(purpose, where="check")
        policy.taxonomy.category(category, where="check")
    rule = policy.rule_for(purpose, category) if policy else None
    pair_ids = tuple(
        state.pairs[key] for key in consent_keys(purpose, category) if key in state.pairs
    )
    off: dict[str, int] = {}
    on: dict[str, tuple[int, int]] = {}
    choose: dict[str, int] = {}
    # list(): a snapshot taken at once, so another thread's write cannot change the dict
    # under this loop (writes apply events under the store's lock, plans compile outside it).
    for account, settings in list(state.settings.items()):
        found = _most_specific(settings, purpose)
        if found is not None:
            status, seq, at = found
            if status == "off":
                off[account] = seq
            elif status == "on":
                on[account] = (seq, at)
            else:
                choose[account] = seq
    enabled: dict[str, int] = {}
    disabled: dict[str, int] = {}
    for account, features in list(state.features.items()):
        found = _most_specific(features, purpose)
        if found is not None:
            status, seq, _ = found
            (enabled if status == "enabled" else disabled)[account] = seq
    return Plan(
        purpose=purpose,
        category=category,
        policy=policy,
        policy_seq=entry.seq if entry else 0,
        rule=rule,
        protected=policy.protected_labels(purpose) if policy else frozenset(),
        basis=rule.basis if rule else None,
        parties_all=bool(rule and rule.parties is Parties.ALL),
        account_enable=bool(rule and rule.account_enable),
        account_consent=bool(rule and rule.account_consent),
        objection=bool(rule and rule.objection),
        pair_ids=pair_ids,
        valid_from_us=_valid_from(state, entry, rule, at_us),
        expires_us=(
            int(rule.expires_after.total_seconds() * 1_000_000)
            if rule and rule.expires_after
            else UNBOUNDED_US
        ),
        off=off,
        on=on,
        enabled=enabled,
        disabled=disabled,
        choose=choose,
        valid_until_us=next_us if next_us is not None else UNBOUNDED_US,
        generation=state.generation,
        context=context,
    )


def _most_specific(
    table: dict[str, tuple[str, int, int]], purpose: str
) -> tuple[str, int, int] | None:
    for key in ancestors(purpose):
        found = table.get(key)
        if found is not None:
            return found
    return None


def _valid_from(state: State, entry: PublishedPolicy | None, rule: Rule | None, at_us: int) -> int:
    """Consents recorded before this time are stale: the latest ``effective`` of a version
    (up to the one in effect) whose same-id rule asked for re-consent."""
    if entry is None or rule is None:
        return 0
    current = to_us(entry.policy.effective)
    valid_from = 0
    for other in state.policies:
        if other.published_us > at_us:
            continue
        effective = to_us(other.policy.effective)
        if effective > current:
            continue
        same = other.policy.rules_by_id.get(rule.id)
        if same is not None and same.reconsent:
            valid_from = max(valid_from, effective)
    return valid_from


def _labels(labels: Iterable[str]) -> frozenset[str]:
    if isinstance(labels, str):
        raise InvalidInput("labels must be a list of names, not one string", field="labels")
    return frozenset(labels)


class Decider:
    """Decides over a :class:`State` with a cache of compiled plans."""

    def __init__(
        self,
        state: State,
        clock: Clock | None = None,
        *,
        remember: bool = True,
        max_caches: int = 32,
    ) -> None:
        """``remember``: keep each plan's answers per subject (a :class:`ReasonCache`) for a
        state that is asked again and again; leave it off for a one-off (an ``as_of`` replay).
        ``max_caches``: how many plans keep one at a time (each costs 5 bytes per subject, 13
        under a rule whose consents expire); plans beyond that decide every time."""
        self.state = state
        self._clock = clock
        self._remember = remember
        self._max_caches = max_caches
        self._caches = 0
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._generation = state.generation
        self._plans_until = UNBOUNDED_US

    def now_us(self) -> int:
        """The current time in microseconds (from the clock the decider was given)."""
        return time.time_ns() // 1000 if self._clock is None else to_us(self._clock())

    def plan(self, purpose: str, category: str, now_us: int, account: str | None = None) -> Plan:
        """The compiled plan for (p, c) now, for items of ``account`` (None: no context)."""
        state = self.state
        if state.generation != self._generation or now_us >= self._plans_until:
            self._plans.clear()
            self._caches = 0
            self._generation = state.generation
            self._plans_until = UNBOUNDED_US
        key = (purpose, category) if account is None else (purpose, category, account)
        plan = self._plans.get(key)
        if plan is None:
            plan = compile_plan(state, purpose, category, now_us, account)
            if self._remember and plan.cacheable and self._caches < self._max_caches:
                plan.cache = ReasonCache(state, plan)
                self._caches += 1
            self._plans[key] = plan
            self._plans_until = min(self._plans_until, plan.valid_until_us)
        return plan

    def _plan(self, purpose: str, category: str, now_us: int, account: str | None = None) -> Plan:
        """:meth:`plan`, with the common case (a cached plan still valid) first."""
        plan = self._plans.get(
            (purpose, category) if account is None else (purpose, category, account)
        )
        if (
            plan is None
            or plan.generation != self.state.generation
            or now_us >= plan.valid_until_us
        ):
            plan = self.plan(purpose, category, now_us, account)
        return plan

    def reason(
        self,
        subject: str,
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
        account: str | None = None,
    ) -> Reason:
        """Just the reason for one subject (in an item of ``account``): the fastest question
        to ask."""
        now = self.now_us() if now_us is None else now_us
        # self._plan(), inline: the hot path
        plan = self._plans.get(
            (purpose, category) if account is None else (purpose, category, account)
        )
        if plan is None or plan.generation != self.state.generation or now >= plan.valid_until_us:
            plan = self.plan(purpose, category, now, account)
        if labels and self._protects(plan, labels):
            return Reason.PROTECTED_LABEL
        cache = plan.cache
        if cache is None:
            return _REASONS[plan.decide(self.state, subject, now)[0]]
        state = self.state
        if cache.pos != state.changes:
            cache.sync()
        index = state.subject_index.get(subject, -1)
        codes = cache.codes
        if index < len(codes) - 1:
            code = codes[index]
            if code != UNSET:
                flips = cache.flips
                if flips is None or now < flips[index]:
                    return _REASONS[code]
                return Reason.EXPIRED
        return _REASONS[cache.answer(index, subject, now)[0]]

    def check(
        self,
        subjects: str | Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
        account: str | None = None,
    ) -> Decision:
        """The full decision for an item with one or more subjects (the first is the owner)
        that belongs to ``account`` (None: no account context; see docs/concepts.md), step
        by step in :data:`~consentry.item_order.ITEM_ORDER`."""
        now = self.now_us() if now_us is None else now_us
        # self._plan(), inline: the hot path
        plan = self._plans.get(
            (purpose, category) if account is None else (purpose, category, account)
        )
        if plan is None or plan.generation != self.state.generation or now >= plan.valid_until_us:
            plan = self.plan(purpose, category, now, account)
        if not labels and subjects.__class__ is str:
            # One subject, no labels: the common case, built without the general loop (no
            # label to protect; the answer for all and the one party are the kernel's).
            version, rule_id, base = plan.version, plan.rule_id, plan.base_evidence
            cache = plan.cache
            if cache is None:
                idx, seq = plan.decide(self.state, subjects, now)
            else:
                state = self.state
                if cache.pos != state.changes:
                    cache.sync()
                idx, seq = cache.answer(state.subject_index.get(subjects, -1), subjects, now)
            allowed, reason = _OUTCOMES[idx]
            evidence = (seq,) if seq else ()
            return _tuple_new(
                Decision,
                (allowed, reason, purpose, category, rule_id, version, subjects,
                 base + evidence,
                 (_tuple_new(SubjectDecision, (subjects, allowed, reason, evidence)),), account),
            )  # fmt: skip
        people = (subjects,) if isinstance(subjects, str) else tuple(subjects)
        if not people:
            raise InvalidInput("a check needs at least one subject", field="subjects")
        for step in _CHECK_STEPS:
            decision = step(self, plan, people, labels, now)
            if decision is not None:
                return decision
        raise AssertionError("the parties step answers every item")  # pragma: no cover

    def _protected_label(
        self, plan: Plan, people: tuple[str, ...], labels: Iterable[str], now: int
    ) -> Decision | None:
        """ItemStep.PROTECTED_LABEL: the item carries a label the policy protects for p."""
        if not labels or not self._protects(plan, labels):
            return None
        return _tuple_new(
            Decision,
            (False, Reason.PROTECTED_LABEL, plan.purpose, plan.category, plan.rule_id,
             plan.version, people[0], plan.base_evidence, (), plan.context),
        )  # fmt: skip

    def _answer_for_all(
        self, plan: Plan, people: tuple[str, ...], labels: Iterable[str], now: int
    ) -> Decision | None:
        """ItemStep.FIXED_ANSWER: the plan answers the same for every subject."""
        if plan.answer_for_all < 0:
            return None
        allowed, reason = _OUTCOMES[plan.answer_for_all]
        considered = people if plan.parties_all else people[:1]
        evidence = (plan.seq_for_all,) if plan.seq_for_all else ()
        answers = tuple(
            _tuple_new(SubjectDecision, (subject, allowed, reason, evidence))
            for subject in considered
        )
        return _tuple_new(
            Decision,
            (allowed, reason, plan.purpose, plan.category, plan.rule_id, plan.version,
             people[0], plan.base_evidence + evidence, answers, plan.context),
        )  # fmt: skip

    def _parties(
        self, plan: Plan, people: tuple[str, ...], labels: Iterable[str], now: int
    ) -> Decision:
        """ItemStep.PARTIES: every party the rule considers must be allowed; the first one
        denied names the reason."""
        considered = people if plan.parties_all else people[:1]
        answers = []
        blocking: SubjectDecision | None = None
        decide, state, cache = plan.decide, self.state, plan.cache
        if cache is not None and cache.pos != state.changes:
            cache.sync()
        for subject in considered:
            if cache is None:
                idx, seq = decide(state, subject, now)
            else:
                idx, seq = cache.answer(state.subject_index.get(subject, -1), subject, now)
            allowed, reason = _OUTCOMES[idx]
            answer = _tuple_new(SubjectDecision, (subject, allowed, reason, (seq,) if seq else ()))
            answers.append(answer)
            if not allowed and blocking is None:
                blocking = answer
        decider = blocking or answers[0]
        return _tuple_new(
            Decision,
            (blocking is None, decider.reason, plan.purpose, plan.category, plan.rule_id,
             plan.version, decider.subject, plan.base_evidence + decider.evidence,
             tuple(answers), plan.context),
        )  # fmt: skip

    def codes(
        self,
        subjects: Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
        account: str | None = None,
    ) -> bytes:
        """The reason of each subject alone (in an item of ``account``), as one byte per
        subject: ``REASONS[code]`` (``numpy.frombuffer(codes, numpy.uint8)`` reads them
        without a copy). A subject named several times is decided once. The batch form of
        :meth:`reason`."""
        now = self.now_us() if now_us is None else now_us
        plan = self._plan(purpose, category, now, account)
        if labels and self._protects(plan, labels):
            return bytes([R_PROTECTED]) * len(subjects)
        if plan.answer_for_all >= 0:
            return bytes([plan.answer_for_all]) * len(subjects)
        cache = plan.cache
        if cache is not None:
            if cache.pos != self.state.changes:
                cache.sync()
            return cache.codes_for(subjects, now)
        unique = dict.fromkeys(subjects)
        if len(unique) * 8 >= len(subjects) * 7:
            # Few repeats: deciding them again costs less than mapping answers back.
            return bytes(plan.codes(self.state, subjects, now))
        answers = dict(zip(unique, plan.codes(self.state, unique, now), strict=True))
        return bytes(map(answers.__getitem__, subjects))

    def reasons(
        self,
        subjects: Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
        account: str | None = None,
    ) -> list[Reason]:
        """The reason of each subject alone (a batch of single-subject checks)."""
        codes = self.codes(subjects, purpose, category, labels, now_us, account)
        return [_REASONS[c] for c in codes]

    @staticmethod
    def _protects(plan: Plan, labels: Iterable[str]) -> bool:
        """Whether the policy protects one of ``labels`` for the plan's purpose (each label
        must be one the policy knows)."""
        wanted = _labels(labels)
        if plan.policy is not None:
            for label in wanted:
                if label not in plan.policy.taxonomy.labels:
                    raise unknown("label", label, plan.policy.taxonomy.labels, where="check")
        return not plan.protected.isdisjoint(wanted)


_ItemStepOfCheck = Callable[[Decider, Plan, tuple[str, ...], Iterable[str], int], "Decision | None"]
#: What :meth:`Decider.check` does at each step of ITEM_ORDER (None: a step it does not take).
_CHECK_STEP: dict[ItemStep, _ItemStepOfCheck | None] = {
    ItemStep.SOURCE_OPT_OUT: None,  # only the gate sees an item's source URL
    ItemStep.PROTECTED_LABEL: Decider._protected_label,
    ItemStep.FIXED_ANSWER: Decider._answer_for_all,
    ItemStep.PARTIES: Decider._parties,
    # Unreachable: the parties step answers every item. A check decides a subject the store
    # has never seen like any other (no records: the rule's answer without them).
    ItemStep.UNKNOWN_SUBJECT: None,
}
#: Decider.check's steps, in ITEM_ORDER (a KeyError here: a new ItemStep to take or skip).
_CHECK_STEPS = tuple(step for s in ITEM_ORDER if (step := _CHECK_STEP[s]) is not None)
