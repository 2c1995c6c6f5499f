"""The functions written from the decision table answer as the reference does, for any plan.

``test_decide_kernels`` compiles plans from a policy; here the plans themselves are random
(any basis, any switch on or off, any record keys, stale and expiring consents), over random
states and times, so every combination of steps the table can switch on is written and run.
Every kernel is compared with tests/decide_reference.py: ``plan.decide``, the batch kernel
``plan.codes``, the reason cache's ``plan.timeless``, and a plan's ``fixed`` and
``answer_for_all``. A second test makes sure every reason a subject can get comes up.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.decide import Plan
from consentry.decision_table import REASONS_WITH_EVENT, STEPS, UNBOUNDED_US
from consentry.kernels import source
from consentry.policy.model import Basis
from consentry.reasons import (
    R_ACCOUNT_OFF,
    R_NO_BASIS,
    R_NO_CONSENT,
    R_PROHIBITED,
    REASONS,
    Reason,
)
from consentry.state import CONSENT_CODES, OBJECTION_CODES, State, pack
from decide_reference import reference_codes, reference_decide, reference_timeless

SUBJECTS = [f"s{i}" for i in range(5)]
ASKED = [*SUBJECTS, "never-seen", "s0"]
ACCOUNTS = ["a0", "a1", "a2"]
KEYS = 4  # record keys (pair ids) 0..3
T0 = 1_700_000_000_000_000
DAY = 86_400 * 10**6
#: Times fall on a five-day grid, so that a consent given exactly at a re-consent, or expiring
#: exactly at the time decided at, comes up often (the boundaries of ``<`` and ``<=``).
GRID = 5 * DAY
#: Every reason a subject can get (the item's reasons, a label and an unknown subject, are not
#: the subject's: see item_order).
SUBJECT_REASONS = set(Reason) - {Reason.PROTECTED_LABEL, Reason.UNKNOWN_SUBJECT}


def random_state(rng: random.Random) -> State:
    state = State()
    seq = 100
    for subject in SUBJECTS:
        if rng.random() < 0.6:
            # Sorted, as State keeps them (the reference sorts for itself).
            state.memberships[subject] = tuple(sorted(rng.sample(ACCOUNTS, rng.randint(1, 3))))
        for table, statuses in (
            (state.consents, list(CONSENT_CODES.values())),
            (state.objections, list(OBJECTION_CODES.values())),
        ):
            for key in rng.sample(range(KEYS), rng.randint(0, 2)):
                seq += 1
                at = T0 + rng.randint(-8, 8) * GRID
                table.setdefault(subject, {})[key] = pack(at, seq, rng.choice(statuses))
    return state


def make_plan(**fields: Any) -> Plan:
    """A plan made by hand: consent, looked up under record key 0, no switch, no expiry,
    unless ``fields`` say otherwise."""
    defaults: dict[str, Any] = {
        "purpose": "p", "category": "c", "policy": None, "policy_seq": 0, "rule": None,
        "protected": frozenset(), "basis": Basis.CONSENT, "parties_all": False,
        "account_enable": False, "account_consent": False, "objection": False, "pair_ids": (0,),
        "valid_from_us": 0, "expires_us": UNBOUNDED_US, "off": {}, "on": {}, "enabled": {},
        "disabled": {}, "choose": {}, "valid_until_us": UNBOUNDED_US, "generation": 0,
        "context": None,
    }  # fmt: skip
    return Plan(**(defaults | fields))


def random_plan(rng: random.Random) -> Plan:
    def accounts() -> list[str]:
        return [a for a in ACCOUNTS if rng.random() < 0.3]

    # Each account has one setting for the purpose at most: off, on, members_choose or none.
    setting = {a: rng.choice(["off", "on", "choose", None, None]) for a in ACCOUNTS}
    return make_plan(
        # An account context (the account the item belongs to) or none; "a3" has no member.
        context=rng.choice([None, None, *ACCOUNTS, "a3"]),
        basis=rng.choice([None, *Basis]),
        policy_seq=rng.choice([0, 7]),
        parties_all=rng.random() < 0.5,
        account_enable=rng.random() < 0.3,
        account_consent=rng.random() < 0.5,
        objection=rng.random() < 0.6,
        pair_ids=tuple(rng.sample(range(KEYS), rng.randint(0, KEYS))),
        valid_from_us=rng.choice([0, T0 - 10 * DAY, T0]),
        expires_us=rng.choice([UNBOUNDED_US, 30 * DAY, 5 * DAY]),
        off={a: rng.randint(1, 99) for a in ACCOUNTS if setting[a] == "off"},
        on={
            a: (seq, T0 + seq // 10 * GRID - 5 * GRID)  # times follow seqs, as in a ledger
            for a in ACCOUNTS
            if setting[a] == "on" and (seq := rng.randint(1, 99))
        },
        choose={a: rng.randint(1, 99) for a in ACCOUNTS if setting[a] == "choose"},
        enabled={a: rng.randint(1, 99) for a in accounts()},
        disabled={a: rng.randint(1, 99) for a in accounts()},
    )


def check_against_reference(rng: random.Random) -> set[int]:
    """Decide a random plan over a random state at random times with every kernel; each
    must answer as the reference. The reasons given."""
    state, plan = random_state(rng), random_plan(rng)
    seen: set[int] = set()
    for now in (T0 + rng.randint(-2, 16) * GRID for _ in range(3)):
        expected = [reference_decide(plan, state, s, now) for s in ASKED]
        got = [plan.decide(state, s, now) for s in ASKED]
        assert got == expected, source(plan)
        assert plan.codes(state, ASKED, now) == reference_codes(plan, state, ASKED, now)
        seen |= {code for code, _ in got}
        assert all(seq == 0 for code, seq in got if code not in REASONS_WITH_EVENT)
    if plan.expiring:
        assert plan.timeless is not None
        for s in ASKED:
            assert plan.timeless(state, s) == reference_timeless(plan, state, s), source(plan)
    else:
        assert plan.timeless is None
    assert plan.fixed == {None: R_NO_BASIS, Basis.PROHIBITED: R_PROHIBITED}.get(plan.basis, -1)
    if plan.answer_for_all >= 0:
        assert seen == {plan.answer_for_all}
    return seen


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_every_kernel_answers_as_the_reference(rng: random.Random) -> None:
    check_against_reference(rng)


def test_every_subject_reason_comes_up() -> None:
    """The random plans and states reach every reason a subject can get, so the property
    above compares every step and every answer of the table."""
    seen: set[int] = set()
    for seed in range(3000):
        seen |= check_against_reference(random.Random(seed))
        if {REASONS[c] for c in seen} == SUBJECT_REASONS:
            break
    assert {REASONS[c] for c in seen} == SUBJECT_REASONS


def test_every_step_of_the_table_is_written_for_some_plan() -> None:
    """No row of the table is dead: each one is on for some random plan and shows up in the
    source written for it."""
    written: set[str] = set()
    rng = random.Random(0)
    for _ in range(500):
        written |= {step.name for step in STEPS if f"# {step.name}:" in source(random_plan(rng))}
    assert written == {step.name for step in STEPS}


def test_an_account_switched_off_outweighs_the_subjects_consent() -> None:
    """One step by hand (``account_off``): what the random plans check in bulk."""
    state = State()
    state.memberships["s0"] = ("a0",)
    state.consents["s0"] = {0: pack(T0, 101, CONSENT_CODES["given"])}
    state.consents["s1"] = {0: pack(T0, 103, CONSENT_CODES["given"])}
    plan = make_plan(off={"a0": 102})
    assert plan.decide(state, "s0", T0) == (R_ACCOUNT_OFF, 102)
    assert plan.decide(state, "s2", T0) == (R_NO_CONSENT, 0)
    assert plan.codes(state, ["s0", "s2"], T0) == bytes([R_ACCOUNT_OFF, R_NO_CONSENT])
