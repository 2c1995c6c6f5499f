"""Deciding: the algorithm of DESIGN.md, compiled plans for fast checks, and explanations.

For one subject, purpose p, category c, labels L at time t:

1. a label of L the policy protects for p            -> deny ``protected_label``
2. the most specific rule for (p, c); none           -> deny ``no_basis``
3. ``prohibited``                                    -> deny ``prohibited``
4. the rule needs an account to enable p, not done   -> deny ``not_enabled``
5. an account of the subject set p ``off``           -> deny ``account_off`` (not for contract)
6. ``contract``                                      -> allow
7. ``legitimate_interest``                           -> allow unless objected (``objection``)
8. ``consent``: the subject's most specific record   -> allow, or ``withdrawn``, ``refused``,
   ``stale_consent``, ``expired``; no record: an account set p ``on`` and the rule lets accounts
   consent for members -> allow (``account_consent``), else ``no_consent``. An account's
   ``on`` is a consent too: it goes stale and expires by the same rule.

Everything that does not depend on the subject is worked out once per (p, c) and policy
version in a :class:`Plan`; a check is then a handful of dictionary lookups.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import InvalidInput, unknown
from .policy.model import Basis, Parties, Policy, Rule, consent_keys
from .reason_cache import UNSET, ReasonCache
from .reasons import (
    _REASONS,
    ALLOW_IDX,
    ALLOW_REASONS,
    DENY_REASONS,
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
    R_PROTECTED,
    R_REFUSED,
    R_STALE,
    R_WITHDRAWN,
    REASONS,
    Reason,
)
from .state import AT_SHIFT, SEQ_MASK, PublishedPolicy, State
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

_NEVER = 1 << 62


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
    """Everything about (p, c) under one policy version that does not depend on the subject."""

    purpose: str
    category: str
    policy: Policy | None
    policy_seq: int
    rule: Rule | None
    protected: frozenset[str]
    #: A subject-independent answer (no_basis, prohibited), or -1.
    fixed: int
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
    #: The plan holds until this time (when the next policy version takes effect).
    valid_until_us: int
    generation: int
    #: Derived once: what every decision under this plan names.
    rule_id: str | None = field(init=False)
    version: str | None = field(init=False)
    base_evidence: tuple[int, ...] = field(init=False)
    #: Whether the rule's consents expire (``expires_after``): answers then depend on time.
    expiring: bool = field(init=False)
    #: Whether answers are worth remembering per subject (see :mod:`consentry.reason_cache`):
    #: they depend on the subject.
    cacheable: bool = field(init=False)
    #: The remembered answers, when the decider keeps them.
    cache: ReasonCache | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rule_id = self.rule.id if self.rule else None
        self.version = self.policy.version if self.policy else None
        self.base_evidence = (self.policy_seq,) if self.policy_seq else ()
        self.expiring = self.expires_us != _NEVER
        self.cacheable = self.fixed < 0 and not (
            self.basis is Basis.CONTRACT and not self.account_enable
        )
        # Each plan decides with a function made for it (see _specialise): same answers as
        # the method below, without the branches and lookups that cannot apply to it.
        self.decide = _specialise(self)  # type: ignore[method-assign,assignment]
        self.codes = _specialise_codes(self)  # type: ignore[method-assign,assignment]

    def consented_at(self, state: State, subject: str, seq: int) -> tuple[int, bool]:
        """When the consent recorded as event ``seq`` that decided for ``subject`` was given,
        and whether an account gave it (its ``on`` setting) rather than the subject."""
        records = state.consents.get(subject)
        if records:
            for pid in self.pair_ids:
                value = records.get(pid)
                if value is not None and (value >> 2) & SEQ_MASK == seq:
                    return value >> AT_SHIFT, False
        for account in state.memberships.get(subject, ()):
            found = self.on.get(account)
            if found is not None and found[0] == seq:
                return found[1], True
        raise LookupError(f"event {seq} is no consent of {subject!r} under plan {self.purpose}")

    def codes(self, state: State, subjects: Collection[str], now_us: int) -> bytearray:
        """The reason index of each subject, one byte each: the reference version of the
        batch. Instances carry a specialised equivalent under the same name."""
        return bytearray(self.decide(state, subject, now_us)[0] for subject in subjects)

    def decide(self, state: State, subject: str, now_us: int) -> tuple[int, int]:
        """(reason index, deciding seq or 0) for one subject: the reference version of the
        algorithm. Instances carry a specialised equivalent under the same name."""
        if self.fixed >= 0:
            return self.fixed, 0
        accounts = state.memberships.get(subject, ())
        if self.account_enable:
            if not accounts:
                return R_NOT_ENABLED, 0
            for account in accounts:
                if account not in self.enabled:
                    return R_NOT_ENABLED, self.disabled.get(account, 0)
        basis = self.basis
        if basis is not Basis.CONTRACT and accounts and self.off:
            for account in accounts:
                seq = self.off.get(account)
                if seq is not None:
                    return R_ACCOUNT_OFF, seq
        if basis is Basis.CONTRACT:
            return R_CONTRACT, 0
        if basis is Basis.LEGITIMATE_INTEREST:
            if self.objection:
                records = state.objections.get(subject)
                if records:
                    for pid in self.pair_ids:
                        value = records.get(pid)
                        if value is not None:
                            if value & 3:
                                return R_OBJECTION, (value >> 2) & SEQ_MASK
                            break
            return R_LI, 0
        records = state.consents.get(subject)
        if records:
            for pid in self.pair_ids:
                value = records.get(pid)
                if value is None:
                    continue
                code = value & 3
                seq = (value >> 2) & SEQ_MASK
                if code == 1:
                    at = value >> AT_SHIFT
                    if at < self.valid_from_us:
                        return R_STALE, seq
                    if at + self.expires_us <= now_us:
                        return R_EXPIRED, seq
                    return R_CONSENT, seq
                return (R_REFUSED if code == 2 else R_WITHDRAWN), seq
        if self.account_consent and accounts and self.on:
            for account in accounts:
                found = self.on.get(account)
                if found is not None:
                    seq, at = found
                    if at < self.valid_from_us:
                        return R_STALE, seq
                    if at + self.expires_us <= now_us:
                        return R_EXPIRED, seq
                    return R_ACCOUNT_CONSENT, seq
        return R_NO_CONSENT, 0


_Decide = Callable[[State, str, int], tuple[int, int]]


def _specialise(plan: Plan) -> _Decide:
    """``plan.decide`` made for this plan: the branches that cannot apply to it are left out,
    and its constants are closure variables instead of attribute lookups. The hot path."""
    if plan.fixed >= 0:
        fixed = (plan.fixed, 0)
        return lambda state, subject, now_us: fixed
    basis = plan.basis
    enable = plan.account_enable
    enabled, disabled = plan.enabled, plan.disabled
    off = plan.off if basis is not Basis.CONTRACT else {}
    on = plan.on if plan.account_consent else {}
    pair_ids = plan.pair_ids
    valid_from, expires = plan.valid_from_us, plan.expires_us
    no_account: tuple[str, ...] = ()
    not_enabled = (R_NOT_ENABLED, 0)

    if basis is Basis.CONTRACT:
        contract = (R_CONTRACT, 0)
        if not enable:
            return lambda state, subject, now_us: contract

        def decide_contract(state: State, subject: str, now_us: int) -> tuple[int, int]:
            accounts = state.memberships.get(subject)
            if not accounts:
                return not_enabled
            for account in accounts:
                if account not in enabled:
                    return R_NOT_ENABLED, disabled.get(account, 0)
            return contract

        return decide_contract

    if basis is Basis.LEGITIMATE_INTEREST:
        li = (R_LI, 0)
        objection = plan.objection and bool(pair_ids)

        def decide_li(state: State, subject: str, now_us: int) -> tuple[int, int]:
            if enable or off:
                accounts = state.memberships.get(subject) or no_account
                if enable:
                    if not accounts:
                        return not_enabled
                    for account in accounts:
                        if account not in enabled:
                            return R_NOT_ENABLED, disabled.get(account, 0)
                if off:
                    for account in accounts:
                        seq = off.get(account)
                        if seq is not None:
                            return R_ACCOUNT_OFF, seq
            if objection:
                records = state.objections.get(subject)
                if records:
                    for pid in pair_ids:
                        value = records.get(pid)
                        if value is not None:
                            if value & 3:
                                return R_OBJECTION, (value >> 2) & SEQ_MASK
                            break
            return li

        return decide_li

    no_consent = (R_NO_CONSENT, 0)
    need_accounts = bool(enable or off or on)

    def decide_consent(state: State, subject: str, now_us: int) -> tuple[int, int]:
        if need_accounts:
            accounts = state.memberships.get(subject) or no_account
            if enable:
                if not accounts:
                    return not_enabled
                for account in accounts:
                    if account not in enabled:
                        return R_NOT_ENABLED, disabled.get(account, 0)
            if off:
                for account in accounts:
                    seq = off.get(account)
                    if seq is not None:
                        return R_ACCOUNT_OFF, seq
        if pair_ids:
            records = state.consents.get(subject)
            if records:
                for pid in pair_ids:
                    value = records.get(pid)
                    if value is None:
                        continue
                    code = value & 3
                    seq = (value >> 2) & SEQ_MASK
                    if code == 1:
                        at = value >> AT_SHIFT
                        if at < valid_from:
                            return R_STALE, seq
                        if at + expires <= now_us:
                            return R_EXPIRED, seq
                        return R_CONSENT, seq
                    return (R_REFUSED if code == 2 else R_WITHDRAWN), seq
        if on:
            for account in accounts:
                found = on.get(account)
                if found is not None:
                    seq, at = found
                    if at < valid_from:
                        return R_STALE, seq
                    if at + expires <= now_us:
                        return R_EXPIRED, seq
                    return R_ACCOUNT_CONSENT, seq
        return no_consent

    return decide_consent


_Codes = Callable[[State, Collection[str], int], bytearray]


def _specialise_codes(plan: Plan) -> _Codes:
    """``plan.codes`` made for this plan: the algorithm of ``_specialise`` for many subjects
    in one loop, reason indexes only (no evidence, no tuples, no call per subject), one loop
    per basis, constants in closure variables."""
    if plan.fixed >= 0:
        fixed = bytes([plan.fixed])
        return lambda state, subjects, now_us: bytearray(fixed * len(subjects))
    basis = plan.basis
    enable = plan.account_enable
    enabled = plan.enabled
    off = plan.off if basis is not Basis.CONTRACT else {}
    on = plan.on if plan.account_consent else {}
    pair_ids = plan.pair_ids
    valid_from, expires = plan.valid_from_us, plan.expires_us
    need_accounts = bool(enable or off or on)
    r_not_enabled, r_off, r_objection = R_NOT_ENABLED, R_ACCOUNT_OFF, R_OBJECTION
    r_consent, r_account_consent, r_no_consent = R_CONSENT, R_ACCOUNT_CONSENT, R_NO_CONSENT
    r_stale, r_expired, r_refused, r_withdrawn = R_STALE, R_EXPIRED, R_REFUSED, R_WITHDRAWN
    shift = AT_SHIFT

    if basis is not Basis.CONSENT:
        if basis is Basis.CONTRACT and not enable:
            contract = bytes([R_CONTRACT])
            return lambda state, subjects, now_us: bytearray(contract * len(subjects))
        allowed = R_CONTRACT if basis is Basis.CONTRACT else R_LI
        objection = basis is Basis.LEGITIMATE_INTEREST and plan.objection and bool(pair_ids)

        def codes_allowed(state: State, subjects: Collection[str], now_us: int) -> bytearray:
            """Contract behind an account switch, or legitimate interest."""
            memberships = state.memberships.get
            objections = state.objections.get
            out = bytearray()
            put = out.append
            account: str | None
            for subject in subjects:
                if need_accounts:
                    accounts = memberships(subject)
                    if accounts:
                        if enable:
                            for account in accounts:
                                if account not in enabled:
                                    break
                            else:
                                account = None
                            if account is not None:
                                put(r_not_enabled)
                                continue
                        if off:
                            for account in accounts:
                                if account in off:
                                    break
                            else:
                                account = None
                            if account is not None:
                                put(r_off)
                                continue
                    elif enable:
                        put(r_not_enabled)
                        continue
                if objection:
                    records = objections(subject)
                    if records:
                        for pid in pair_ids:
                            value = records.get(pid)
                            if value is not None:
                                break
                        else:
                            value = 0
                        if value & 3:
                            put(r_objection)
                            continue
                put(allowed)
            return out

        return codes_allowed

    def codes_consent(state: State, subjects: Collection[str], now_us: int) -> bytearray:
        memberships = state.memberships.get
        consents = state.consents.get
        out = bytearray()
        put = out.append
        accounts: tuple[str, ...] | None = None
        account: str | None
        value: int | None
        for subject in subjects:
            if need_accounts:
                accounts = memberships(subject)
                if accounts:
                    if enable:
                        for account in accounts:
                            if account not in enabled:
                                break
                        else:
                            account = None
                        if account is not None:
                            put(r_not_enabled)
                            continue
                    if off:
                        for account in accounts:
                            if account in off:
                                break
                        else:
                            account = None
                        if account is not None:
                            put(r_off)
                            continue
                elif enable:
                    put(r_not_enabled)
                    continue
            records = consents(subject)
            if records:
                for pid in pair_ids:  # the most specific record decides
                    value = records.get(pid)
                    if value is not None:
                        code = value & 3
                        if code == 1:
                            at = value >> shift
                            put(
                                r_stale
                                if at < valid_from
                                else r_expired
                                if at + expires <= now_us
                                else r_consent
                            )
                        else:
                            put(r_refused if code == 2 else r_withdrawn)
                        break
                else:
                    value = None
                if value is not None:
                    continue
            if accounts and on:
                for account in accounts:
                    found = on.get(account)
                    if found is not None:
                        at = found[1]
                        put(
                            r_stale
                            if at < valid_from
                            else r_expired
                            if at + expires <= now_us
                            else r_account_consent
                        )
                        break
                else:
                    put(r_no_consent)
                continue
            put(r_no_consent)
        return out

    return codes_consent


def compile_plan(state: State, purpose: str, category: str, at_us: int) -> Plan:
    """Work out the subject-independent part of deciding (p, c) at ``at_us``."""
    entry, next_us = state.policy_at(at_us)
    policy = entry.policy if entry else None
    if policy is not None:
        policy.taxonomy.purpose(purpose, where="check")
        policy.taxonomy.category(category, where="check")
    rule = policy.rule_for(purpose, category) if policy else None
    fixed = -1
    if rule is None:
        fixed = R_NO_BASIS
    elif rule.basis is Basis.PROHIBITED:
        fixed = R_PROHIBITED
    pair_ids = tuple(
        state.pairs[key] for key in consent_keys(purpose, category) if key in state.pairs
    )
    off: dict[str, int] = {}
    on: dict[str, tuple[int, int]] = {}
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
        fixed=fixed,
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
            else _NEVER
        ),
        off=off,
        on=on,
        enabled=enabled,
        disabled=disabled,
        valid_until_us=next_us if next_us is not None else _NEVER,
        generation=state.generation,
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
        self._plans: dict[tuple[str, str], Plan] = {}
        self._generation = state.generation
        self._plans_until = _NEVER

    def now_us(self) -> int:
        """The current time in microseconds (from the clock the decider was given)."""
        return time.time_ns() // 1000 if self._clock is None else to_us(self._clock())

    def plan(self, purpose: str, category: str, now_us: int) -> Plan:
        state = self.state
        if state.generation != self._generation or now_us >= self._plans_until:
            self._plans.clear()
            self._caches = 0
            self._generation = state.generation
            self._plans_until = _NEVER
        plan = self._plans.get((purpose, category))
        if plan is None:
            plan = compile_plan(state, purpose, category, now_us)
            if self._remember and plan.cacheable and self._caches < self._max_caches:
                plan.cache = ReasonCache(state, plan)
                self._caches += 1
            self._plans[(purpose, category)] = plan
            self._plans_until = min(self._plans_until, plan.valid_until_us)
        return plan

    def _plan(self, purpose: str, category: str, now_us: int) -> Plan:
        """:meth:`plan`, with the common case (a cached plan still valid) first."""
        plan = self._plans.get((purpose, category))
        if (
            plan is None
            or plan.generation != self.state.generation
            or now_us >= plan.valid_until_us
        ):
            plan = self.plan(purpose, category, now_us)
        return plan

    def reason(
        self,
        subject: str,
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
    ) -> Reason:
        """Just the reason for one subject: the fastest question to ask."""
        now = self.now_us() if now_us is None else now_us
        plan = self._plans.get((purpose, category))  # self._plan(), inline: the hot path
        if plan is None or plan.generation != self.state.generation or now >= plan.valid_until_us:
            plan = self.plan(purpose, category, now)
        if labels:
            wanted = _labels(labels)
            self._check_labels(plan, wanted)
            if not plan.protected.isdisjoint(wanted):
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
    ) -> Decision:
        """The full decision for an item with one or more subjects (the first is the owner)."""
        now = self.now_us() if now_us is None else now_us
        plan = self._plans.get((purpose, category))  # self._plan(), inline: the hot path
        if plan is None or plan.generation != self.state.generation or now >= plan.valid_until_us:
            plan = self.plan(purpose, category, now)
        version, rule_id, base = plan.version, plan.rule_id, plan.base_evidence
        if not labels and subjects.__class__ is str:
            # One subject, no labels: the common case, built without the general loop.
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
                 (_tuple_new(SubjectDecision, (subjects, allowed, reason, evidence)),)),
            )  # fmt: skip
        people = (subjects,) if isinstance(subjects, str) else tuple(subjects)
        if not people:
            raise InvalidInput("a check needs at least one subject", field="subjects")
        if labels:
            wanted = _labels(labels)
            self._check_labels(plan, wanted)
            hit = plan.protected & wanted
            if hit:
                return _tuple_new(
                    Decision,
                    (False, Reason.PROTECTED_LABEL, purpose, category, rule_id, version,
                     people[0], base, ()),
                )  # fmt: skip
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
            allowed = idx in ALLOW_IDX
            answer = _tuple_new(
                SubjectDecision, (subject, allowed, _REASONS[idx], (seq,) if seq else ())
            )
            answers.append(answer)
            if not allowed and blocking is None:
                blocking = answer
        decider = blocking or answers[0]
        return _tuple_new(
            Decision,
            (blocking is None, decider.reason, purpose, category, rule_id, version,
             decider.subject, base + decider.evidence, tuple(answers)),
        )  # fmt: skip

    def codes(
        self,
        subjects: Sequence[str],
        purpose: str,
        category: str,
        labels: Iterable[str] = (),
        now_us: int | None = None,
    ) -> bytes:
        """The reason of each subject alone, as one byte per subject: ``REASONS[code]``
        (``numpy.frombuffer(codes, numpy.uint8)`` reads them without a copy). A subject
        named several times is decided once. The batch form of :meth:`reason`."""
        now = self.now_us() if now_us is None else now_us
        plan = self._plan(purpose, category, now)
        if labels:
            wanted = _labels(labels)
            self._check_labels(plan, wanted)
            if not plan.protected.isdisjoint(wanted):
                return bytes([R_PROTECTED]) * len(subjects)
        if plan.fixed >= 0:
            return bytes([plan.fixed]) * len(subjects)
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
    ) -> list[Reason]:
        """The reason of each subject alone (a batch of single-subject checks)."""
        return [_REASONS[c] for c in self.codes(subjects, purpose, category, labels, now_us)]

    @staticmethod
    def _check_labels(plan: Plan, labels: frozenset[str]) -> None:
        if plan.policy is not None:
            for label in labels:
                if label not in plan.policy.taxonomy.labels:
                    raise unknown("label", label, plan.policy.taxonomy.labels, where="check")
