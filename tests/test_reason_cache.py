"""Remembered answers (``consentry.reason_cache``) never differ from deciding afresh.

A decider that keeps its answers is driven through random interleavings of writes (consents,
objections, memberships, account settings and features) and questions (single checks,
multi-subject checks, batches); after every question its answers must equal those of a
decider that remembers nothing, asked at the same moment about the same state.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry import state as state_module
from consentry.decide import REASONS, Decider, Reason, compile_plan
from consentry.policy import load_policies
from consentry.reason_cache import NEVER, NO_SEQ, UNSET
from consentry.state import State
from consentry.times import to_us
from support import TEST_POLICY

POLICIES = load_policies(TEST_POLICY)
SUBJECTS = [f"s{i}" for i in range(5)]
ACCOUNTS = ["a0", "a1"]
PURPOSES = ["ai", "ai.training", "ai.training.generative", "improvement", "ai.feature.summary"]
CATEGORIES = ["content", "content.audio", "service_data"]
QUERIES = [
    ("ai.training", "content.audio"),
    ("ai.training.generative", "content.video"),
    ("improvement.product", "content.audio"),
    ("improvement.product", "service_data.usage"),
    ("ai.feature.summary", "content.audio"),
    ("service.delivery", "content.audio"),
]
T0 = to_us(POLICIES[-1].effective)
DAY = 86_400 * 10**6
ASKED = [*SUBJECTS, "never-seen", "new-0", "new-1"]

write = st.one_of(
    st.tuples(
        st.just("consent"),
        st.sampled_from(ASKED),
        st.sampled_from(PURPOSES),
        st.sampled_from(CATEGORIES),
        st.sampled_from(["given", "refused", "withdrawn"]),
    ),
    st.tuples(
        st.just("objection"),
        st.sampled_from(SUBJECTS),
        st.sampled_from(["improvement", "ai"]),
        st.sampled_from(CATEGORIES),
        st.sampled_from(["raised", "lifted"]),
    ),
    st.tuples(st.just("member"), st.sampled_from(ASKED), st.sampled_from(ACCOUNTS), st.booleans()),
    st.tuples(
        st.just("setting"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(PURPOSES),
        st.sampled_from(["off", "members_choose", "on"]),
    ),
    st.tuples(st.just("feature"), st.sampled_from(ACCOUNTS), st.sampled_from(PURPOSES)),
)
#: When a question is asked: the test policy's training consents expire after 30 days, so
#: questions far apart in time see remembered consents turn into ``expired`` (and back, when
#: asked about an earlier moment).
when = st.sampled_from([0, 10**9, 29 * DAY, 31 * DAY, 400 * DAY])
question = st.one_of(
    st.tuples(st.just("check"), st.sampled_from(QUERIES), st.sampled_from(ASKED), when),
    st.tuples(
        st.just("item"),
        st.sampled_from(QUERIES),
        st.lists(st.sampled_from(ASKED), min_size=1, max_size=4),
        when,
    ),
    st.tuples(
        st.just("batch"),
        st.sampled_from(QUERIES),
        st.lists(st.sampled_from(ASKED), max_size=12),
        when,
    ),
)


def new_state() -> State:
    """The test policies, and every record key the writes below use already numbered: a new
    key recompiles the plans (and starts their caches afresh), which would hide the cache's
    own bookkeeping from these tests."""
    state = State()
    for i, policy in enumerate(POLICIES, start=1):
        state.add_policy(dict(policy.document), i, T0 - 10**13)
    for purpose in [*PURPOSES, "improvement"]:
        for category in CATEGORIES:
            state.pair_id(purpose, category)
    return state


def apply(state: State, step: tuple, seq: int) -> None:
    kind = step[0]
    at = T0 + seq
    if kind == "consent":
        _, subject, purpose, category, status = step
        state.set_consent(subject, purpose, category, status, at, seq)
    elif kind == "objection":
        _, subject, purpose, category, status = step
        state.set_objection(subject, purpose, category, status, at, seq)
    elif kind == "member":
        _, subject, account, member = step
        state.set_membership(subject, account, member)
    elif kind == "setting":
        _, account, purpose, status = step
        state.set_account(state.settings, account, purpose, status, seq, at)
    else:
        _, account, purpose = step
        state.set_account(state.features, account, purpose, "enabled", seq, at)


def ask(decider: Decider, step: tuple) -> object:
    kind, (purpose, category), who, later = step
    now = T0 + later
    if kind == "check":
        return (
            decider.check(who, purpose, category, (), now),
            decider.reason(who, purpose, category, (), now),
        )
    if kind == "item":
        return decider.check(who, purpose, category, (), now)
    return decider.codes(who, purpose, category, (), now)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.one_of(write, question, question), max_size=40))
def test_remembered_answers_equal_fresh_ones(steps: list[tuple]) -> None:
    state = new_state()
    remembering = Decider(state)
    now = T0 + 10**9
    seq = 100
    for step in steps:
        if step[0] in ("check", "item", "batch"):
            fresh = Decider(state, remember=False)
            assert ask(remembering, step) == ask(fresh, step), step
        else:
            seq += 1
            apply(state, step, seq)
    # Finally, everyone about everything.
    fresh = Decider(state, remember=False)
    for purpose, category in QUERIES:
        for subject in ASKED:
            assert remembering.check(subject, purpose, category, (), now) == fresh.check(
                subject, purpose, category, (), now
            )
        assert remembering.codes(ASKED, purpose, category, (), now) == fresh.codes(
            ASKED, purpose, category, (), now
        )


def test_plans_that_depend_only_on_the_subject_remember() -> None:
    state = new_state()
    state.set_consent("s0", "ai.training", "content", "given", T0, 101)
    decider = Decider(state)
    now = T0 + 10**9
    assert decider.reason("s0", "ai.training", "content.audio", (), now) is Reason.CONSENT
    plan = decider.plan("ai.training", "content.audio", now)
    assert plan.cache is not None
    index = state.subject_index["s0"]
    assert plan.cache.codes[index] != UNSET and plan.cache.seqs[index] != NO_SEQ
    # A contract without an account switch answers the same for everyone: nothing to keep.
    assert decider.plan("service.delivery", "content.audio", now).cache is None
    # An as_of replay asks once: it keeps nothing.
    assert Decider(state, remember=False).plan("ai.training", "content.audio", now).cache is None


def test_a_write_is_seen_by_the_next_check() -> None:
    state = new_state()
    decider = Decider(state)
    now = T0 + 10**9
    ask_ = ("ai.training", "content.audio", (), now)
    assert decider.reason("s0", *ask_) is Reason.NO_CONSENT
    assert decider.codes(["s0", "s1"], *ask_) == bytes([list(Reason).index(Reason.NO_CONSENT)]) * 2
    state.set_consent("s0", "ai.training", "content", "given", T0, 101)
    assert decider.reason("s0", *ask_) is Reason.CONSENT
    assert decider.check("s0", *ask_).evidence[-1] == 101
    state.set_consent("s0", "ai.training", "content.audio", "withdrawn", T0 + 5, 102)
    assert decider.reason("s0", *ask_) is Reason.WITHDRAWN
    assert list(decider.codes(["s0", "s1"], *ask_)) == [
        list(Reason).index(Reason.WITHDRAWN),
        list(Reason).index(Reason.NO_CONSENT),
    ]


def test_forgotten_changes_start_the_cache_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the state drops old change numbers before a cache looked, the cache forgets all."""
    monkeypatch.setattr(state_module, "_TOUCHED_KEPT", 4)
    state = new_state()
    decider = Decider(state)
    now = T0 + 10**9
    ask_ = ("ai.training", "content.audio", (), now)
    assert decider.codes(SUBJECTS, *ask_) == bytes([list(Reason).index(Reason.NO_CONSENT)]) * 5
    for i, subject in enumerate(SUBJECTS * 2):
        state.set_consent(subject, "ai.training", "content", "given", T0, 200 + i)
    assert state.touched[0] > 0  # the oldest changes were dropped
    fresh = Decider(state, remember=False)
    assert decider.codes(SUBJECTS, *ask_) == fresh.codes(SUBJECTS, *ask_)
    assert all(decider.reason(s, *ask_) is Reason.CONSENT for s in SUBJECTS)


def test_a_subject_newer_than_the_cache_is_decided_not_kept() -> None:
    """A subject numbered after the cache last looked (a write racing a read) is decided
    directly and never lands in the never-seen slot."""
    state = new_state()
    state.set_consent("s0", "ai.training", "content", "refused", T0, 299)  # the pair exists
    decider = Decider(state)
    now = T0 + 10**9
    ask_ = ("ai.training", "content.audio", (), now)
    assert decider.reason("nobody", *ask_) is Reason.NO_CONSENT
    plan = decider.plan("ai.training", "content.audio", now)
    assert plan.cache is not None
    cache = plan.cache
    # Record a new subject without letting the cache sync (as if it raced the read).
    state.set_consent("late", "ai.training", "content", "given", T0, 300)
    index = state.subject_index["late"]
    assert index >= len(cache.codes) - 1
    code, seq = cache.answer(index, "late", now)
    assert (code, seq) == (list(Reason).index(Reason.CONSENT), 300)
    assert bytes(cache.codes_for(["late", "nobody"], now)) == bytes(
        [list(Reason).index(Reason.CONSENT), list(Reason).index(Reason.NO_CONSENT)]
    )
    assert cache.codes[-1] == list(Reason).index(Reason.NO_CONSENT)  # never-seen slot intact


def test_concurrent_writes_and_reads_settle_on_fresh_answers() -> None:
    """Readers in threads while a writer changes consents: once the writer stops, every
    remembered answer is the fresh one."""
    state = new_state()
    decider = Decider(state)
    now = T0 + 10**9
    subjects = [f"t{i}" for i in range(200)]
    lock = threading.Lock()  # the store's lock: writers hold it, readers do not
    stop = threading.Event()

    def writer() -> None:
        for i in range(3000):
            subject = subjects[(i * 7) % len(subjects)]
            status = ("given", "withdrawn", "refused")[i % 3]
            with lock:
                state.set_consent(subject, "ai.training", "content", status, T0 + i, 1000 + i)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            decider.codes(subjects, "ai.training", "content.audio", (), now)
            for s in subjects[:20]:
                decider.reason(s, "ai.training", "content.audio", (), now)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = Decider(state, remember=False)
    ask_ = ("ai.training", "content.audio", (), now)
    assert decider.codes(subjects, *ask_) == fresh.codes(subjects, *ask_)
    for s in subjects:
        assert decider.check(s, *ask_) == fresh.check(s, *ask_)


def test_compiled_plan_without_a_decider_keeps_nothing() -> None:
    state = new_state()
    assert compile_plan(state, "ai.training", "content.audio", T0 + 1).cache is None


def test_a_remembered_consent_expires_on_time_in_every_path() -> None:
    """Training consents expire after 30 days in the test policy: a remembered ``consent``
    turns into ``expired`` when asked later, and back when asked about an earlier moment,
    whether asked by ``reason``, ``check``, ``codes`` or an item's check; an account's ``on``
    (consent for its members) expires the same way."""
    state = new_state()
    state.set_consent("s0", "ai.training", "content", "given", T0 + 5, 105)
    state.set_membership("s1", "a0", True)
    state.set_account(state.settings, "a0", "ai.training", "on", 106, T0 + 6)
    decider = Decider(state)
    fresh = Decider(state, remember=False)
    question = ("ai.training", "content.audio", ())
    for later, own, by_account in (
        (0, Reason.CONSENT, Reason.ACCOUNT_CONSENT),
        (31 * DAY, Reason.EXPIRED, Reason.EXPIRED),
        (DAY, Reason.CONSENT, Reason.ACCOUNT_CONSENT),
        (400 * DAY, Reason.EXPIRED, Reason.EXPIRED),
    ):
        now = T0 + later
        for ask_first in ("codes", "reason"):  # whichever fills the cache, all must agree
            if ask_first == "codes":
                got = decider.codes(["s0", "s1"], *question, now)
                assert [REASONS[c] for c in got] == [own, by_account], later
            assert decider.reason("s0", *question, now) is own, later
            assert decider.reason("s1", *question, now) is by_account, later
            assert decider.check("s0", *question, now) == fresh.check("s0", *question, now)
            assert decider.check(["s1", "s0"], *question, now) == fresh.check(
                ["s1", "s0"], *question, now
            )
            got = decider.codes(["s0", "s1", "s0"], *question, now)
            assert [REASONS[c] for c in got] == [own, by_account, own], later


def test_plans_beyond_max_caches_decide_every_time() -> None:
    state = new_state()
    state.set_consent("s0", "ai.training", "content", "given", T0 + 5, 105)
    decider = Decider(state, max_caches=1)
    fresh = Decider(state, remember=False)
    now = T0 + 10**9
    first = decider.plan("ai.training", "content.audio", now)
    second = decider.plan("improvement.product", "content.audio", now)
    assert first.cache is not None and second.cache is None
    for purpose, category in QUERIES:
        assert decider.codes(ASKED, purpose, category, (), now) == fresh.codes(
            ASKED, purpose, category, (), now
        )


def test_a_record_replaced_between_deciding_and_keeping_is_no_error() -> None:
    """Under an expiring rule the cache looks up when the deciding consent was given; if a
    write replaced that record in between, it keeps the answer until the next sync forgets
    it, instead of failing the check."""
    state = new_state()
    state.set_consent("s0", "ai.training", "content", "given", T0 + 5, 105)
    decider = Decider(state)
    now = T0 + 10**9
    plan = decider.plan("ai.training", "content.audio", now)
    assert plan.cache is not None and plan.cache.expiring
    code, seq = plan.decide(state, "s0", now)
    state.set_consent("s0", "ai.training", "content", "withdrawn", T0 + 6, 106)  # the race
    assert plan.cache._timeless("s0", code, seq) == (code, NEVER)
    assert decider.reason("s0", "ai.training", "content.audio", (), now) is Reason.WITHDRAWN
