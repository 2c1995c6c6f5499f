"""The per-plan kernels answer exactly as the reference (tests/decide_reference.py) does.

Each compiled plan decides with functions written for it from the decision table
(``plan.decide``, the batch kernel ``plan.codes``); the readable version of the per-subject
algorithm is the test oracle ``reference_decide``. This test pins them together on random
states, for every purpose × category pair of the test policy, so an optimisation can never
change an answer.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.decide import compile_plan
from consentry.policy import load_policies
from consentry.state import State
from consentry.times import to_us
from decide_reference import reference_codes, reference_decide
from support import TEST_POLICY

POLICIES = load_policies(TEST_POLICY)
SUBJECTS = [f"s{i}" for i in range(6)]
ACCOUNTS = ["a0", "a1", "a2"]
PURPOSES = ["ai", "ai.training", "ai.training", "ai.training.generative", "improvement",
            "ai.feature.summary"]  # fmt: skip
CATEGORIES = ["", "content", "content.audio", "service_data"]
QUERY_PURPOSES = sorted(
    {"service.delivery", "service.safety", "improvement.product", "ai.training.feature",
     "ai.training.third_party", "ai.feature.summary", "ai.training.generative", "ai.training"}
)  # fmt: skip
QUERY_CATEGORIES = ["content.audio", "content.video", "service_data.usage"]
T0 = to_us(POLICIES[0].effective)

record = st.tuples(
    st.sampled_from(SUBJECTS),
    st.sampled_from(PURPOSES),
    st.sampled_from(CATEGORIES[1:]),
    st.sampled_from(["given", "given", "refused", "withdrawn"]),
    st.integers(T0 - 10**12, T0 + 2 * 10**13),
)
objection = st.tuples(
    st.sampled_from(SUBJECTS),
    st.sampled_from(["improvement", "improvement.product", "service.safety", "ai"]),
    st.sampled_from(CATEGORIES),
    st.sampled_from(["raised", "lifted"]),
)
account_row = st.tuples(
    st.sampled_from(ACCOUNTS),
    st.sampled_from(PURPOSES),
    st.integers(T0 - 10**12, T0 + 2 * 10**13),
)


@settings(max_examples=100, deadline=None)
@given(
    consents=st.lists(record, max_size=12),
    objections=st.lists(objection, max_size=6),
    members=st.lists(st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(ACCOUNTS)), max_size=6),
    settings_=st.lists(
        st.tuples(account_row, st.sampled_from(["off", "members_choose", "on"])), max_size=5
    ),
    features=st.lists(st.tuples(account_row, st.booleans()), max_size=4),
    now=st.integers(T0, T0 + 2 * 10**13),
)
def test_kernels_agree_with_the_reference(
    consents: list[tuple[str, str, str, str, int]],
    objections: list[tuple[str, str, str, str]],
    members: list[tuple[str, str]],
    settings_: list[tuple[tuple[str, str, int], str]],
    features: list[tuple[tuple[str, str, int], bool]],
    now: int,
) -> None:
    state = State()
    for i, policy in enumerate(POLICIES, start=1):
        state.add_policy(dict(policy.document), i, T0 - 10**13)
    seq = 10
    for s, p, c, status, at in consents:
        seq += 1
        state.set_consent(s, p, c, status, at, seq)
    for s, p, c, status in objections:
        seq += 1
        state.set_objection(s, p, c, status, T0, seq)
    for s, a in members:
        state.set_membership(s, a, True)
    for (a, p, at), value in settings_:
        seq += 1
        state.set_account(state.settings, a, p, value, seq, at)
    for (a, p, at), on in features:
        seq += 1
        state.set_account(state.features, a, p, "enabled" if on else "disabled", seq, at)
    subjects = [*SUBJECTS, "never-seen", "s0", "s1"]
    for p in QUERY_PURPOSES:
        for c in QUERY_CATEGORIES:
            plan = compile_plan(state, p, c, now)
            reference = [reference_decide(plan, state, s, now) for s in subjects]
            assert [plan.decide(state, s, now) for s in subjects] == reference, (p, c)
            codes = plan.codes(state, subjects, now)
            assert list(codes) == [r for r, _ in reference], (p, c)
            # The batch kernel against the batch oracle, byte for byte (the same bytes type).
            assert bytes(codes) == bytes(reference_codes(plan, state, subjects, now)), (p, c)
