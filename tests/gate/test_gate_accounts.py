"""The gate's ``account`` column (issue 12): each item decided in the context of the account
it belongs to, as ``Store.check(..., account=…)`` decides it; both engines agree; a bad
account names its row; and the order people joined their accounts in changes nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from gate_support import MEETINGS, manifest, meetings_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry import Store
from consentry.errors import InvalidInput
from consentry.gate.duck import decide_rows
from support import FakeClock

ACCOUNTS = [None, "acme", "beta", "gamma", "delta"]
KNOWN = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "hank", "gus", "ivy"]
PURPOSES = ["ai.training", "ai.feature.meeting_summary"]


def cross_org(store: Store) -> Store:
    """meetings_store's people (erin in acme: on; frank in beta: off; grace in gamma), plus a
    host of acme (hank), a guest from beta who opted in herself (gus), and ivy, in acme and
    delta (delta lets members choose); acme switched the meeting summary on, beta off."""
    store.add_member("hank", "acme")
    store.add_member("gus", "beta")
    store.give_consent("gus", "ai.training", ["content"])
    store.add_member("ivy", "delta")
    store.add_member("ivy", "acme")
    store.set_account("delta", "ai.training", "members_choose")
    store.set_feature("acme", "ai.feature.meeting_summary", True)
    store.set_feature("beta", "ai.feature.meeting_summary", False)
    return store


def random_rows(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    rows = [
        (
            f"item-{i:03d}",
            rng.sample(KNOWN, 1 if rng.random() < 0.6 else rng.randint(2, 3)),
            rng.choice(["content.audio", "content.video", "content.chat"]),
            [],
        )
        for i in range(n)
    ]
    return manifest(rows, account=[rng.choice(ACCOUNTS) for _ in range(n)])


@pytest.fixture
def xstore(make_store: Callable[..., Store]) -> Store:
    return cross_org(meetings_store(make_store))


@pytest.mark.parametrize("purpose", PURPOSES)
def test_every_row_is_decided_as_a_check_in_its_account(xstore: Store, purpose: str) -> None:
    t = random_rows(300, seed=len(purpose))
    got = decide_rows(xstore, t, purpose=purpose).to_pylist()
    seen = set()
    for row, item in zip(got, t.to_pylist(), strict=True):
        d = xstore.check(item["subject_ids"], purpose, item["category"], account=item["account"])
        blocking = None if d.allowed else d.subject
        assert (row["reason"], row["blocking_subject"]) == (str(d.reason), blocking), item
        seen.add((item["account"], str(d.reason)))
    # The contexts change answers: the same people get different reasons in different ones.
    reasons_by_context = {a: {r for c, r in seen if c == a} for a in ACCOUNTS}
    assert len({frozenset(r) for r in reasons_by_context.values()}) > 1


def test_a_guest_in_another_organisations_meeting(xstore: Store) -> None:
    """Acme's recording with a guest from beta: Acme's summary switch decides the feature;
    beta's off caps the guest's part of the training; acme's on speaks for hank only."""
    t = manifest(
        [
            ("acme-call", ["hank", "gus"], "content.audio", []),
            ("acme-call-host-only", ["hank"], "content.audio", []),
            ("beta-call", ["gus", "hank"], "content.audio", []),
        ],
        account=["acme", "acme", "beta"],
    )
    train = {r["item_id"]: r for r in decide_rows(xstore, t, purpose="ai.training").to_pylist()}
    assert (train["acme-call"]["reason"], train["acme-call"]["blocking_subject"]) == (
        "account_off",
        "gus",
    )
    assert train["acme-call-host-only"]["reason"] == "account_consent"
    # In beta's content acme's on does not speak for hank: hank has no choice of his own.
    assert train["beta-call"]["reason"] == "account_off"  # gus (the owner) first
    summary = decide_rows(xstore, t, purpose="ai.feature.meeting_summary").to_pylist()
    assert [r["reason"] for r in summary] == ["contract", "contract", "not_enabled"]


def test_a_bad_account_names_its_row(xstore: Store, tmp_path: Path) -> None:
    rows = [("a", ["hank"], "content.audio", []), ("b", ["hank"], "content.audio", [])]
    with pytest.raises(InvalidInput) as err:
        xstore.gate(manifest(rows, account=["acme", "acmee"]), purpose="ai.training",
                    out=tmp_path / "out")  # fmt: skip
    assert err.value.details["field"] == "account" and "unknown account 'acmee'" in str(err.value)
    assert "item 'b'" in str(err.value)
    with pytest.raises(InvalidInput, match="'account' is an empty string"):
        decide_rows(xstore, manifest(rows, account=["", None]), purpose="ai.training")
    assert not (tmp_path / "out").exists()


def test_the_gate_writes_and_records_a_manifest_with_accounts(
    xstore: Store, tmp_path: Path
) -> None:
    t = random_rows(120, seed=3)
    result = xstore.gate(t, purpose="ai.training", out=tmp_path / "ds")
    want = decide_rows(xstore, t, purpose="ai.training").to_pylist()
    assert result.allowed == sum(r["allowed"] for r in want)
    assert xstore.verify_dataset(tmp_path / "ds").ok


# -- order never matters: the gate and impact --------------------------------------------------


def _joined(tmp_path: Path, order: list[tuple[str, str]], n: int) -> Store:
    store = Store(f"sqlite:///{tmp_path}/o{n}.db", clock=FakeClock())
    store.init(policies=[MEETINGS])
    store.set_account("acme", "ai.training", "on")
    store.set_account("beta", "ai.training", "members_choose")
    store.set_account("gamma", "improvement", "off")
    store.set_feature("acme", "ai.feature.meeting_summary", True)
    for subject, account in order:
        store.add_member(subject, account)
    return store


MEMBERS = [(s, a) for s in ("p0", "p1", "p2") for a in ("acme", "beta", "gamma")]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    members=st.lists(st.sampled_from(MEMBERS), min_size=1, unique=True),
    data=st.data(),
)
def test_join_order_changes_no_gate_answer_and_no_impact(
    tmp_path_factory: Any, members: list[tuple[str, str]], data: Any
) -> None:
    tmp = tmp_path_factory.mktemp("order")
    shuffled = data.draw(st.permutations(members))
    one, two = _joined(tmp, members, 1), _joined(tmp, list(shuffled), 2)
    rows = [
        (f"i{i}", s, "content.audio", [])
        for i, s in enumerate([["p0"], ["p1"], ["p2"], ["p0", "p1"], ["p2", "p0"]])
    ]
    t = manifest(rows * 4, account=[a for a in ACCOUNTS[:4] for _ in rows])
    t = t.set_column(0, "item_id", pa.array([f"i{i}" for i in range(t.num_rows)]))
    try:
        for purpose in PURPOSES:
            a, b = (
                [
                    (r["allowed"], r["reason"], r["blocking_subject"])
                    for r in decide_rows(s, t, purpose=purpose).to_pylist()
                ]
                for s in (one, two)
            )
            assert a == b
        for n, s in enumerate((one, two)):
            s.gate(t, purpose="ai.training", out=tmp / f"ds{n}", dataset_name="calls")
        for person in ("p0", "p1", "p2"):
            impacts = [
                [(c.category, c.reason_now, c.allowed_now) for d in s.impact(person).datasets
                 for c in d.categories]
                for s in (one, two)
            ]  # fmt: skip
            assert impacts[0] == impacts[1]
    finally:
        one.close()
        two.close()


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_spark_agrees_with_duckdb_on_accounts(xstore: Store, spark: Any) -> None:
    from consentry.gate.spark import decide_rows as spark_rows

    def by_item(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        fields = ("allowed", "reason", "blocking_subject", "event_seq")
        return {r["item_id"]: tuple(r[f] for f in fields) for r in rows}

    t = random_rows(300, seed=11)
    for purpose in PURPOSES:
        want = by_item(decide_rows(xstore, t, purpose=purpose).to_pylist())
        for broadcast_rows in (None, 0):
            got = spark_rows(
                xstore, spark.createDataFrame(t), purpose=purpose, broadcast_rows=broadcast_rows
            ).collect()
            assert by_item([r.asDict() for r in got]) == want
    bad = manifest([("a", ["hank"], "content.audio", [])], account=["acmee"])
    with pytest.raises(InvalidInput, match="unknown account 'acmee'"):
        spark_rows(xstore, spark.createDataFrame(bad), purpose="ai.training").collect()
