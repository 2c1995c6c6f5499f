"""The gate answers every item exactly as the decision engine does, reason codes included.

Row by row against :meth:`Store.check` on random ledgers and manifests (hypothesis), plus
``unknown_subject`` for a subject the store has never seen.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from gate_support import MEETINGS, TEST_POLICY, manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry import Reason, Store
from consentry.errors import ObjectionIgnored
from consentry.gate.duck import decide_rows
from consentry.ledger.events import Draft, Kind
from consentry.times import format_time

ITEM_LEVEL = {Reason.PROTECTED_LABEL, Reason.NO_BASIS, Reason.PROHIBITED}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def expected(
    store: Store,
    subjects: Sequence[str],
    purpose: str,
    category: str,
    labels: Sequence[str],
    as_of: str | None,
) -> tuple[bool, str, str | None, int | None]:
    """What the gate must answer for one item, from the decision engine's answer: the engine's
    decision, except that a subject the store has never seen answers ``unknown_subject`` where
    its own answer would count (after the item-level reasons)."""
    d = store.check(list(subjects), purpose, category, list(labels), as_of=as_of)
    if d.reason in ITEM_LEVEL:
        return False, str(d.reason), subjects[0], None
    for answer in d.subjects:
        if not store.subject_state(answer.subject, as_of=as_of)["known"]:
            return False, "unknown_subject", answer.subject, None
        if not answer.allowed:
            return False, str(answer.reason), answer.subject, _seq(answer.evidence)
    first = d.subjects[0]
    return True, str(first.reason), None, _seq(first.evidence)


def _seq(evidence: Sequence[int]) -> int | None:
    return evidence[0] if evidence else None


def assert_rows_match(store: Store, table: Any, purpose: str, as_of: str | None) -> None:
    rows = decide_rows(store, table, purpose=purpose, as_of=as_of).to_pylist()
    assert len(rows) == table.num_rows
    items = table.to_pylist()
    for row, item in zip(rows, items, strict=True):
        want = expected(
            store, item["subject_ids"], purpose, item["category"], item["labels"], as_of
        )
        got = (row["allowed"], row["reason"], row["blocking_subject"], row["event_seq"])
        assert got == want, (item, got, want)


# -- every reason code, by hand -----------------------------------------------------------------


def test_every_reason_on_the_meetings_store(mstore: Store) -> None:
    t = manifest(
        [
            ("consent", ["alice"], "content.audio", []),
            ("account-consent", ["erin"], "content.video", []),
            ("refused", ["carol"], "content.audio", []),
            ("withdrawn", ["dave"], "content.audio", []),
            ("account-off", ["frank"], "content.audio", []),
            ("no-consent", ["grace"], "content.audio", []),
            ("unknown", ["zed"], "content.audio", []),
            ("protected", ["alice"], "content.audio", ["health"]),
            ("unprotected-label", ["alice"], "content.audio", ["minor"]),
            ("all-parties-ok", ["alice", "bob", "erin"], "content.audio", []),
            ("second-party-blocks", ["alice", "carol", "dave"], "content.audio", []),
            ("unknown-party", ["alice", "zed", "carol"], "content.audio", []),
            ("no-basis", ["alice"], "service_data.telemetry", []),
        ]
    )
    assert_rows_match(mstore, t, "ai.training", None)
    rows = {r["item_id"]: r for r in decide_rows(mstore, t, purpose="ai.training").to_pylist()}
    assert rows["second-party-blocks"]["blocking_subject"] == "carol"
    assert rows["unknown-party"]["reason"] == "unknown_subject"
    assert rows["unknown"]["reason"] == "unknown_subject"
    assert rows["account-consent"]["reason"] == "account_consent"
    assert rows["no-basis"]["reason"] == "no_basis"


def test_prohibited_and_not_enabled(mstore: Store) -> None:
    t = manifest([("a", ["alice"], "content.audio", []), ("b", ["zed"], "content.chat", [])])
    assert_rows_match(mstore, t, "ai.training.third_party", None)
    assert {r["reason"] for r in decide_rows(mstore, t, purpose="ai.training.third_party")
            .to_pylist()} == {"prohibited"}  # fmt: skip
    assert_rows_match(mstore, t, "ai.feature.meeting_summary", None)


def test_owner_rule_only_asks_the_owner(make_store: Any, clock: Any) -> None:
    s = make_store(TEST_POLICY)  # generative-audio: consent, parties: owner
    s.give_consent("o", "ai.training.generative", ["content.audio"])
    s.refuse_consent("p", "ai.training.generative", ["content.audio"])
    t = manifest([("x", ["o", "p", "nobody"], "content.audio", [])])
    assert_rows_match(s, t, "ai.training.generative", None)
    (row,) = decide_rows(s, t, purpose="ai.training.generative").to_pylist()
    assert row["allowed"] and row["reason"] == "consent"


def test_single_subject_column(mstore: Store) -> None:
    import pyarrow as pa

    t = pa.table(
        {
            "item_id": ["1", "2", "3"],
            "subject_id": ["alice", "carol", "zed"],
            "category": ["content.audio"] * 3,
        }
    )
    reasons = [r["reason"] for r in decide_rows(mstore, t, purpose="ai.training").to_pylist()]
    assert reasons == ["consent", "refused", "unknown_subject"]


def test_as_of_uses_the_ledger_as_it_was(make_store: Any, clock: Any, tmp_path: Path) -> None:
    s = make_store(MEETINGS)
    given = s.give_consent("alice", "ai.training", ["content"])
    before = clock.advance(days=1)
    clock.advance(days=1)
    s.withdraw_consent("alice", "ai.training", ["content"])
    t = manifest([("a", ["alice"], "content.audio", [])])
    past = format_time(before)
    assert_rows_match(s, t, "ai.training", past)
    assert decide_rows(s, t, purpose="ai.training", as_of=past)["reason"].to_pylist() == ["consent"]
    assert decide_rows(s, t, purpose="ai.training")["reason"].to_pylist() == ["withdrawn"]
    result = s.gate(t, purpose="ai.training", out=tmp_path / "o", as_of=past)
    assert result.allowed == 1 and result.ledger_seq == given.seq  # the watermark
    assert result.as_of == past


# -- random ledgers and manifests ---------------------------------------------------------------

SUBJECTS = ["s0", "s1", "s2", "s3"]
PARTIES = ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s9"]  # s9: never seen by the store
ACCOUNTS = ["a0", "a1"]
PURPOSES = ["ai.training", "ai.training", "ai.training", "ai.training.generative",
            "ai.training.generative", "ai.training.third_party", "improvement",
            "ai.feature.summary", "service.delivery"]  # fmt: skip
CATEGORIES = ["content", "content.audio", "content.audio", "content.video",
              "service_data.telemetry"]  # fmt: skip
ITEM_CATEGORIES = ["content.audio", "content.audio", "content.video", "content.whiteboard",
                   "service_data.telemetry"]  # fmt: skip
START = datetime(2024, 1, 2, tzinfo=UTC)  # v1 in effect; v2 (re-consent) from June

consent = st.tuples(
    st.sampled_from(["give", "give", "give", "refuse", "withdraw"]),
    st.sampled_from(SUBJECTS),
    st.sampled_from(["ai.training", "ai.training", "ai.training.generative", "improvement"]),
    st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True),
)
event = st.one_of(
    consent,
    consent,
    consent,
    st.tuples(
        st.just("object"),
        st.sampled_from(SUBJECTS),
        st.just("improvement"),
        st.lists(st.sampled_from(CATEGORIES), max_size=1),
    ),
    st.tuples(st.just("member"), st.sampled_from(SUBJECTS), st.sampled_from(ACCOUNTS), st.just([])),
    st.tuples(
        st.just("account"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["off", "members_choose", "on"]),
        st.just([]),
    ),
    st.tuples(st.just("feature"), st.sampled_from(ACCOUNTS), st.booleans(), st.just([])),
)
# Everyone but s3 belongs to an account from the start (so that most subjects are known).
members = st.lists(st.sampled_from(ACCOUNTS), min_size=3, max_size=3).map(
    lambda accts: [(("member", s, a, []), 0) for s, a in zip(SUBJECTS, accts, strict=False)]
)
steps = st.tuples(
    members, st.lists(st.tuples(event, st.integers(0, 45)), min_size=3, max_size=16)
).map(lambda pair: pair[0] + pair[1])
item = st.tuples(
    st.lists(st.sampled_from(PARTIES), min_size=1, max_size=3, unique=True),
    st.sampled_from(ITEM_CATEGORIES),
    st.lists(st.sampled_from(["health", "minor", "minor"]), max_size=1),
)
items = st.lists(item, min_size=1, max_size=10)


def build(root: Path, history: list[Any]) -> tuple[Store, list[datetime]]:
    clock = Clock(START)
    store = Store(f"sqlite:///{root}/s.db", clock=clock)
    store.init(policies=[TEST_POLICY])
    times = []
    for (kind, a, b, cats), days in history:
        clock.now += timedelta(days=days, seconds=1)
        times.append(clock.now)
        if kind in ("give", "refuse", "withdraw"):
            call = {"give": store.give_consent, "refuse": store.refuse_consent,
                    "withdraw": store.withdraw_consent}[kind]  # fmt: skip
            call(a, b, cats)
        elif kind == "object":
            try:
                store.object(a, b, cats)
            except ObjectionIgnored:  # refused now; a ledger may still hold one: decide it
                store.append(
                    [Draft(kind=Kind.OBJECTION_RAISED, actor=a, subject=a, purpose=b,
                           categories=tuple(sorted(set(cats))))]
                )  # fmt: skip
        elif kind == "member":
            store.add_member(a, b)
        elif kind == "account":
            store.set_account(a, "ai.training", b)
        else:
            store.set_feature(a, "ai.feature.summary", b)
    clock.now += timedelta(days=1)
    return store, times


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=steps, rows=items, purpose=st.sampled_from(PURPOSES), data=st.data())
def test_gate_equals_the_decision_engine_row_by_row(
    history: list[Any], rows: list[Any], purpose: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, times = build(Path(tmp), history)
        try:
            as_of = None
            if times and data.draw(st.booleans(), label="as_of"):
                as_of = format_time(data.draw(st.sampled_from(times), label="at"))
            t = manifest(
                [(f"i{n}", subj, cat, labels) for n, (subj, cat, labels) in enumerate(rows)]
            )
            assert_rows_match(store, t, purpose, as_of)
        finally:
            store.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=steps, rows=items, purpose=st.sampled_from(PURPOSES[:2]))
def test_gate_outputs_are_the_decided_rows(
    history: list[Any], rows: list[Any], purpose: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = build(Path(tmp), history)
        try:
            t = manifest(
                [(f"i{n}", subj, cat, labels) for n, (subj, cat, labels) in enumerate(rows)],
                payload=list(range(len(rows))),
            )
            decided = decide_rows(store, t, purpose=purpose).to_pylist()
            result = store.gate(t, purpose=purpose, out=Path(tmp) / "out")
            allowed = pq.read_table(result.paths["allowed"])
            excluded = pq.read_table(result.paths["excluded"]).to_pylist()
            assert sorted(allowed["item_id"].to_pylist()) == sorted(
                r["item_id"] for r in decided if r["allowed"]
            )
            assert allowed.column_names == t.column_names  # every column passes through
            want_excluded = sorted(
                (r["item_id"], r["reason"], r["blocking_subject"], r["event_seq"])
                for r in decided
                if not r["allowed"]
            )
            got = sorted(
                (r["item_id"], r["reason"], r["blocking_subject"], r["event_seq"]) for r in excluded
            )
            assert got == want_excluded
            counts: dict[str, int] = {}
            for r in decided:
                counts[r["reason"]] = counts.get(r["reason"], 0) + 1
            assert dict(result.by_reason) == counts
            assert store.verify_dataset(result.paths["report"].parent).ok
        finally:
            store.close()


def test_future_as_of_is_refused(mstore: Store, tmp_path: Path) -> None:
    from consentry.errors import InvalidInput

    t = manifest([("a", ["alice"], "content.audio", [])])
    with pytest.raises(InvalidInput, match="in the future"):
        mstore.gate(t, purpose="ai.training", out=tmp_path / "o", as_of="2999-01-01T00:00:00Z")
    assert not (tmp_path / "o").exists()


def test_expired_stale_objection_and_legitimate_interest(
    make_store: Any, clock: Any, tmp_path: Path
) -> None:
    clock.set(datetime(2024, 1, 10, tzinfo=UTC))
    s = make_store(TEST_POLICY)  # v1 from 2024-01-01 (consent expires after 30 days)
    s.give_consent("old", "ai.training", ["content"])
    s.object("objector", "improvement", ["service_data"])
    s.add_member("quiet", "acme")
    clock.set(datetime(2024, 3, 1, tzinfo=UTC))
    s.give_consent("fresh", "ai.training", ["content"])
    t = manifest(
        [
            ("expired", ["old"], "content.audio", []),
            ("ok", ["fresh"], "content.audio", []),
            ("multi", ["fresh", "old"], "content.audio", []),
        ]
    )
    assert_rows_match(s, t, "ai.training", None)
    reasons = decide_rows(s, t, purpose="ai.training")["reason"].to_pylist()
    assert reasons == ["expired", "consent", "expired"]
    clock.set(datetime(2024, 6, 15, tzinfo=UTC))  # v2 asks everyone to consent again
    assert_rows_match(s, t, "ai.training", None)
    assert decide_rows(s, t, purpose="ai.training")["reason"].to_pylist()[1] == "stale_consent"
    li = manifest(
        [("tel-1", ["objector"], "service_data.telemetry", []),
         ("tel-2", ["quiet"], "service_data.telemetry", [])]
    )  # fmt: skip
    assert_rows_match(s, li, "improvement", None)
    assert decide_rows(s, li, purpose="improvement")["reason"].to_pylist() == [
        "objection",
        "legitimate_interest",
    ]


def test_a_guest_email_in_a_manifest_is_decided_by_the_person(
    make_store: Any, clock: Any, tmp_path: Path
) -> None:
    # Issue 16 §3: the platform linked the email a person joined a meeting with as a guest
    # to their account; the manifest names the email; the person's own choices decide, now
    # and as_of a time after the link (not before it).
    s = make_store(MEETINGS)
    s.give_consent("alice", "ai.training", ["content"])
    t = manifest(
        [("a", ["guest@example.com"], "content.audio", []), ("b", ["alice"], "content.audio", [])]
    )
    before_link = format_time(clock.advance(days=1))
    clock.advance(days=1)
    s.link_subject("alice", "guest@example.com")
    after_link = format_time(clock.advance(days=1))
    clock.advance(days=1)
    assert decide_rows(s, t, purpose="ai.training")["reason"].to_pylist() == ["consent"] * 2
    assert decide_rows(s, t, purpose="ai.training", as_of=after_link)["reason"].to_pylist() == [
        "consent",
        "consent",
    ]
    assert decide_rows(s, t, purpose="ai.training", as_of=before_link)["reason"].to_pylist()[0] != (
        "consent"
    )
    result = s.gate(t, purpose="ai.training", out=tmp_path / "o")
    assert result.allowed == 2
    assert s.check("guest@example.com", "ai.training", "content.audio", as_of=after_link).allowed
    assert not s.check(
        "guest@example.com", "ai.training", "content.audio", as_of=before_link
    ).allowed
    # impact: the dataset holds the guest's item; the person sees it under either id
    assert [d.dataset.name for d in s.impact("alice").datasets] == [result.name]
    assert [d.dataset.name for d in s.impact("guest@example.com").datasets] == [result.name]
