"""Policy-as-code: loading, validation errors, publishing and diffs."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry import Store
from consentry.errors import PolicyConflict, PolicyError
from consentry.policy import Basis, Parties, load_policies, parse_policies
from support import MEETINGS, MUSIC, TEST_POLICY

BASE = """
id: t
version: "1"
effective: 2024-01-01T00:00:00Z
language: en
rules:
  - id: r1
    purposes: [ai.training]
    categories: [content]
    basis: consent
"""


def policy_text(extra: str = "", rules: str = "") -> str:
    return BASE + textwrap.indent(textwrap.dedent(rules), "  ") + textwrap.dedent(extra)


def test_shipped_policies_load() -> None:
    meetings = load_policies(MEETINGS)
    assert [p.version for p in meetings] == ["2023-07", "2023-08"]
    music = load_policies(MUSIC)
    assert len(music) >= 1
    for policy in meetings + music:
        assert {"en", "id", "fr"} <= set(policy.notices)
        assert not policy.notices[policy.language].machine_translated
        assert policy.notices["id"].machine_translated


def test_meetings_august_version_says_what_the_story_says() -> None:
    august = load_policies(MEETINGS)[-1]
    train = august.rule_for("ai.training", "content.audio")
    assert train is not None and train.basis is Basis.CONSENT and train.account_consent
    assert train.reconsent
    third = august.rule_for("ai.training.third_party", "content.chat")
    assert third is not None and third.basis is Basis.PROHIBITED
    assert {"health", "education_record"} <= august.protected_labels("ai.training")
    summary = august.rule_for("ai.feature.meeting_summary", "content.transcript")
    assert summary is not None and summary.account_enable
    delivery = august.rule_for("service.delivery", "content.recording")
    assert delivery is not None and delivery.basis is Basis.CONTRACT


def test_music_generative_training_needs_the_artists_opt_in() -> None:
    latest = load_policies(MUSIC)[-1]
    gen = latest.rule_for("ai.training.generative", "content.music")
    assert gen is not None and gen.basis is Basis.CONSENT and gen.parties is Parties.OWNER
    third = latest.rule_for("ai.training.third_party", "content.music")
    assert third is not None and third.basis is Basis.PROHIBITED


def test_defaults_and_options() -> None:
    (p,) = load_policies(TEST_POLICY)[:1]
    rule = p.rules_by_id["train-content"]
    assert rule.parties is Parties.ALL and rule.expires_after == timedelta(days=30)
    assert p.rules_by_id["deliver"].parties is Parties.OWNER


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (policy_text("langauge_x: 1\n"), "unknown key 'langauge_x'", None),
        (
            BASE.replace("basis: consent", "basis: consent\n    objections: true"),
            "unknown key 'objections'",
            "did you mean 'objection'?",
        ),
        (
            BASE.replace("[ai.training]", "[ai.trainig]"),
            "unknown purpose 'ai.trainig'",
            "did you mean 'ai.training'?",
        ),
        (
            BASE.replace("[content]", "[contnet]"),
            "unknown category 'contnet'",
            "did you mean 'content'?",
        ),
        (
            policy_text("protected:\n  - labels: [helth]\n    purposes: [ai]\n"),
            "unknown label 'helth'",
            "did you mean 'health'?",
        ),
        (BASE.replace("basis: consent", "basis: consnt"), "unknown basis", "did you mean"),
        (
            BASE.replace("basis: consent", "basis: contract\n    expires_after: P1D"),
            "only a consent rule can set expires_after",
            None,
        ),
        (
            BASE.replace("basis: consent", "basis: consent\n    objection: false"),
            "only a legitimate_interest rule",
            None,
        ),
        (
            BASE.replace("basis: consent", "basis: consent\n    expires_after: soon"),
            "not an ISO 8601 duration",
            "P365D",
        ),
        (BASE.replace("2024-01-01T00:00:00Z", "'2024-01-01T00:00:00'"), "no time zone", None),
        (BASE.replace('version: "1"\n', ""), "missing required key 'version'", None),
        (
            policy_text(
                rules="""\
          - id: r2
            purposes: [ai.training]
            categories: [content]
            basis: prohibited
        """
            ),
            "also covered by rule 'r1'",
            None,
        ),
        (
            policy_text(
                rules="""\
          - id: r1
            purposes: [ai]
            categories: [content]
            basis: prohibited
        """
            ),
            "used twice",
            None,
        ),
        (
            policy_text("notices:\n  fr: {title: t, summary: s, rules: {r1: x}}\n"),
            "authoritative language 'en'",
            None,
        ),
        (
            policy_text("notices:\n  en: {title: t, summary: s, rules: {}}\n"),
            "no text for rule 'r1'",
            None,
        ),
        (
            policy_text(
                "notices:\n  en: {title: t, summary: s, machine_translated: true, rules: {r1: x}}\n"
            ),
            "cannot be machine_translated",
            None,
        ),
        ("id: [unclosed", "not valid YAML", None),
    ],
)
def test_validation_errors_name_the_problem(text: str, message: str, hint: str | None) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policies(text)
    assert message in info.value.message
    if hint:
        assert hint in (info.value.hint or "")


def test_policy_additions_extend_the_taxonomy() -> None:
    (p,) = parse_policies(
        BASE.replace("[content]", "[content.whiteboard.ink]")
        + "categories: [content.whiteboard.ink]\n"
    )
    assert {"content.whiteboard", "content.whiteboard.ink"} <= p.taxonomy.categories


def test_digest_ignores_formatting_but_not_content() -> None:
    (a,) = parse_policies(BASE)
    (b,) = parse_policies("# a comment\n" + BASE.replace("    basis", "    basis"))
    (c,) = parse_policies(BASE.replace("consent", "contract"))
    assert a.digest == b.digest != c.digest


def test_published_versions_are_immutable(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    changed = TEST_POLICY.read_text().replace("summary: For tests.", "summary: Changed.", 1)
    path = tmp_path / "changed.yaml"
    path.write_text(changed)
    before = store.ledger.count()
    with pytest.raises(PolicyConflict, match="already published with different content"):
        store.publish(path)
    assert store.ledger.count() == before
    assert [r.published for r in store.publish(TEST_POLICY)] == [False, False]


def test_a_store_holds_one_policy_id(store: Store) -> None:
    with pytest.raises(PolicyConflict, match="holds policy 'testing'"):
        store.publish(MEETINGS)


def test_publish_missing_file(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError, match="does not exist"):
        store.publish(tmp_path / "nope.yaml")


def test_diff_explains_changes_and_stale_consents(make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(MEETINGS)
    store.give_consent("u1", "ai.training", ["content.audio"])  # clock: 2024, after 2023-08
    diff = store.diff("2023-07", "2023-08", language="en")
    tighter = {(s.purpose, s.category): s for s in diff.tighter}
    assert ("ai.training", "content") in tighter
    assert tighter[("ai.training", "content")].now == "consent"
    text = diff.render()
    assert "Allowed less under 2023-08" in text and "train-on-content" in text
    assert "no-third-party-training" in text
    # The reverse direction turns tightening into loosening.
    back = store.diff("2023-08", "2023-07")
    assert {(s.purpose, s.category) for s in back.looser} == set(tighter)
    for lang, phrase in (("id", "Apa yang berubah"), ("fr", "Ce qui change")):
        assert phrase in store.diff("2023-07", "2023-08", language=lang).render()


def test_diff_counts_consents_made_stale(make_store, clock) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from support import TEST_POLICY as tp

    clock.set(datetime(2024, 3, 1, tzinfo=UTC))
    store = make_store(tp)
    store.give_consent("a", "ai.training", ["content.audio", "content.video"])
    store.give_consent("b", "ai.training", ["content.chat"])
    diff = store.diff("v1", "v2")
    assert diff.stale == {"train-content": 3}
    assert "3 recorded consent(s) under rule train-content" in diff.render()


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(*(st.one_of(st.none(), st.integers(0, 999)) for _ in range(5))),
)
def test_durations_read_without_pydantic_equal_pydantics(parts: tuple[int | None, ...]) -> None:
    """The plain ISO 8601 forms are read by a regular expression (so deciding does not import
    pydantic); they must give exactly the timedelta pydantic gives, or the same refusal."""
    from datetime import timedelta

    from pydantic import TypeAdapter, ValidationError

    from consentry.policy.loader import _duration

    w, d, h, m, s = parts
    date_part = "".join(f"{n}{u}" for n, u in ((w, "W"), (d, "D")) if n is not None)
    time_part = "".join(f"{n}{u}" for n, u in ((h, "H"), (m, "M"), (s, "S")) if n is not None)
    text = "P" + date_part + ("T" + time_part if time_part else "")
    try:
        expected: timedelta | None = TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        expected = None
    if expected is None or expected <= timedelta(0):
        with pytest.raises(PolicyError):
            _duration(text, "retention.content")
    else:
        assert _duration(text, "retention.content") == expected
