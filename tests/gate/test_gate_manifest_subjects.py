"""The gate decides only the manifest's subjects, each under the groups of the categories the
manifest names it under, through the store's reason caches when live (issue 13 §2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from gate_support import MEETINGS, manifest

from consentry import Store
from consentry.gate import decisions
from consentry.gate.duck import decide_rows
from consentry.reason_cache import UNSET

AUDIO, VIDEO = "content.audio", "content.video"


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The subjects each batch of the decision table was decided for."""
    calls: list[list[str]] = []
    real = decisions._codes_and_seqs

    def spy(plan: Any, state: Any, subjects: Sequence[str], *args: Any) -> Any:
        calls.append(sorted(subjects))
        return real(plan, state, subjects, *args)

    monkeypatch.setattr(decisions, "_codes_and_seqs", spy)
    return calls


def rows(store: Store, items: list[tuple[str, list[str], str, list[str]]]) -> dict[str, Any]:
    table = decide_rows(store, manifest(items), purpose="ai.training")
    return {r["item_id"]: (r["allowed"], r["reason"]) for r in table.to_pylist()}


def per_category_store(make_store: Any, meetings: Any, subjects: int) -> Store:
    store: Store = make_store(meetings)
    for i in range(subjects):
        store.give_consent(f"s{i}", "ai.training", [AUDIO if i % 2 else VIDEO])
    return store


def test_only_the_manifests_pairs_are_decided(make_store: Any, decided: list[list[str]]) -> None:
    store = per_category_store(make_store, MEETINGS, 40)
    answers = rows(
        store,
        [
            ("a", ["s1"], AUDIO, []),
            ("b", ["s2"], VIDEO, []),
            ("c", ["s3", "s4"], AUDIO, []),  # two parties: both decided under audio
            ("d", ["s3"], VIDEO, []),
            ("e", ["nobody"], AUDIO, []),  # never seen: not decided at all
        ],
    )
    # Two groups (audio and video keep their consents apart); 40 subjects in the store, but
    # each group decided only the subjects the manifest names under its category.
    assert sorted(decided) == [["s1", "s3", "s4"], ["s2", "s3"]]
    assert answers == {
        "a": (True, "consent"),
        "b": (True, "consent"),
        "c": (False, "no_consent"),  # s4 consented to video only
        "d": (False, "no_consent"),  # s3 consented to audio only
        "e": (False, "unknown_subject"),
    }


def test_a_live_gate_shares_the_stores_reason_caches(make_store: Any, clock: Any) -> None:
    store = per_category_store(make_store, MEETINGS, 10)
    store.check_many(["s1"], "ai.training", AUDIO)  # the decider's audio plan, warm for s1
    answers = rows(store, [("a", ["s1"], AUDIO, []), ("b", ["s3"], AUDIO, [])])
    assert answers == {"a": (True, "consent"), "b": (True, "consent")}
    plan = store.decider(refresh=False).plan("ai.training", AUDIO, store.decider().now_us())
    assert plan.cache is not None
    index = store.state().subject_index
    # The gate decided s3 through the same cache, which now remembers it.
    assert plan.cache.codes[index["s3"]] != UNSET
    # A write forgets it, and the next gate decides it again, freshly.
    clock.advance(seconds=1)
    store.withdraw_consent("s3", "ai.training", [AUDIO])
    assert rows(store, [("b", ["s3"], AUDIO, [])]) == {"b": (False, "withdrawn")}


def test_an_as_of_gate_decides_without_the_caches(make_store: Any, clock: Any) -> None:
    store = per_category_store(make_store, MEETINGS, 4)
    at = clock()
    clock.advance(seconds=10)
    store.check_many(["s1"], "ai.training", AUDIO)
    store.withdraw_consent("s1", "ai.training", [AUDIO])
    table = decide_rows(
        store, manifest([("a", ["s1"], AUDIO, [])]), purpose="ai.training", as_of=at
    )
    assert [(r["allowed"], r["reason"]) for r in table.to_pylist()] == [(True, "consent")]
