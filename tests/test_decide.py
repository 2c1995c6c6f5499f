"""The decision algorithm: every reason code, specificity, as_of, accounts, parties, expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consentry import Reason, Store
from consentry.errors import AsOfOutOfRange, InvalidInput, ObjectionIgnored, UnknownName
from consentry.ledger.events import Draft, Kind
from support import FakeClock

T = "ai.training"
AUDIO = "content.audio"


def reason(
    store: Store, subjects: str | list[str], purpose: str, category: str, **kw: object
) -> Reason:
    return store.check(subjects, purpose, category, **kw).reason  # type: ignore[arg-type]


# -- one test per reason code -----------------------------------------------------------------


def test_contract(store: Store) -> None:
    d = store.check("u1", "service.delivery", "content.video")
    assert d.allowed and d.reason is Reason.CONTRACT and d.rule == "deliver"


def test_legitimate_interest(store: Store) -> None:
    d = store.check("u1", "improvement.product", "service_data.telemetry")
    assert d.allowed and d.reason is Reason.LEGITIMATE_INTEREST and d.rule == "improve-usage"


def test_consent(store: Store) -> None:
    event = store.give_consent("u1", T, [AUDIO])
    d = store.check("u1", T, AUDIO)
    assert d.allowed and d.reason is Reason.CONSENT
    assert event.seq in d.evidence


def test_account_consent(store: Store) -> None:
    store.add_member("u1", "acme")
    event = store.set_account("acme", T, "on")
    d = store.check("u1", T, AUDIO)
    assert d.allowed and d.reason is Reason.ACCOUNT_CONSENT and event.seq in d.evidence


def test_protected_label(store: Store) -> None:
    store.give_consent("u1", T, [AUDIO])
    d = store.check("u1", T, AUDIO, labels=["health"])
    assert not d.allowed and d.reason is Reason.PROTECTED_LABEL
    # The label protects training and improvement, not service delivery.
    assert store.check("u1", "service.delivery", AUDIO, labels=["health"]).allowed


def test_no_basis(store: Store) -> None:
    d = store.check("u1", "improvement", "content.audio")
    assert not d.allowed and d.reason is Reason.NO_BASIS and d.rule is None


def test_prohibited_whatever_anyone_chose(store: Store) -> None:
    store.give_consent("u1", "ai.training.third_party", [AUDIO])
    d = store.check("u1", "ai.training.third_party", AUDIO)
    assert not d.allowed and d.reason is Reason.PROHIBITED and d.rule == "no-third-party"


def test_not_enabled_then_enabled(store: Store) -> None:
    store.add_member("u1", "acme")
    assert reason(store, "u1", "ai.feature.summary", AUDIO) is Reason.NOT_ENABLED
    store.set_feature("acme", "ai.feature.summary", True)
    assert reason(store, "u1", "ai.feature.summary", AUDIO) is Reason.CONTRACT
    store.set_feature("acme", "ai.feature.summary", False)
    assert reason(store, "u1", "ai.feature.summary", AUDIO) is Reason.NOT_ENABLED


def test_not_enabled_without_account(store: Store) -> None:
    assert reason(store, "solo", "ai.feature.summary", AUDIO) is Reason.NOT_ENABLED


def test_feature_is_not_consent_to_train(store: Store) -> None:
    store.add_member("u1", "acme")
    store.set_feature("acme", "ai.feature.summary", True)
    assert reason(store, "u1", T, AUDIO) is Reason.NO_CONSENT


def test_account_off(store: Store) -> None:
    store.add_member("u1", "acme")
    store.set_account("acme", "improvement", "off")
    d = store.check("u1", "improvement", "service_data.usage")
    assert not d.allowed and d.reason is Reason.ACCOUNT_OFF


def test_account_off_does_not_touch_contract(store: Store) -> None:
    store.add_member("u1", "acme")
    store.set_account("acme", "service", "off")  # caps service.safety (legitimate interest)
    assert reason(store, "u1", "service.delivery", AUDIO) is Reason.CONTRACT
    # A setting of a contract purpose alone changes nothing: the Store refuses it (issue 9)...
    with pytest.raises(InvalidInput, match=r"no say over 'service\.delivery'"):
        store.set_account("acme", "service.delivery", "off")
    # ... and decisions ignore one in the ledger anyway (a bulk import, an older ledger).
    draft = Draft(
        kind=Kind.ACCOUNT_SETTING, account="acme", purpose="service.delivery", status="off"
    )
    store.append([draft])
    assert reason(store, "u1", "service.delivery", AUDIO) is Reason.CONTRACT


def test_objection(store: Store) -> None:
    event = store.object("u1", "improvement")
    d = store.check("u1", "improvement", "service_data.usage")
    assert not d.allowed and d.reason is Reason.OBJECTION and event.seq in d.evidence
    store.object("u1", "improvement", lift=True)
    assert reason(store, "u1", "improvement", "service_data.usage") is Reason.LEGITIMATE_INTEREST


def test_objection_not_allowed_by_rule(store: Store) -> None:
    with pytest.raises(ObjectionIgnored, match="cannot object to this individually"):
        store.object("u1", "service.safety")  # the rule says objection: false
    # One recorded all the same (e.g. before the rule changed) is still ignored.
    store.append(
        [Draft(kind=Kind.OBJECTION_RAISED, actor="u1", subject="u1", purpose="service.safety")]
    )
    assert reason(store, "u1", "service.safety", AUDIO) is Reason.LEGITIMATE_INTEREST


def test_withdrawn(store: Store) -> None:
    store.give_consent("u1", T, [AUDIO])
    store.withdraw_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.WITHDRAWN


def test_refused(store: Store) -> None:
    store.refuse_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.REFUSED


def test_stale_consent_after_reconsent_version(store: Store, clock: FakeClock) -> None:
    store.give_consent("u1", T, [AUDIO])  # 2024-03-01, under v1
    clock.set(datetime(2024, 6, 2, tzinfo=UTC))  # v2 (reconsent: true) is in effect
    d = store.check("u1", T, AUDIO)
    assert d.reason is Reason.STALE_CONSENT and d.policy_version == "v2"
    store.give_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.CONSENT


def test_expired(store: Store, clock: FakeClock) -> None:
    store.give_consent("u1", T, [AUDIO])
    clock.advance(days=29)
    assert reason(store, "u1", T, AUDIO) is Reason.CONSENT
    clock.advance(days=2)
    assert reason(store, "u1", T, AUDIO) is Reason.EXPIRED


def test_no_consent(store: Store) -> None:
    assert reason(store, "never-seen", T, AUDIO) is Reason.NO_CONSENT


# -- the finer points ---------------------------------------------------------------------------


def test_purpose_specificity_beats_category_specificity(store: Store) -> None:
    # generative-audio (ai.training.generative × content.audio, parties owner) is more specific
    # than train-content (ai.training × content): purpose depth first.
    d = store.check("u1", "ai.training.generative", AUDIO)
    assert d.rule == "generative-audio"
    assert store.check("u1", "ai.training.generative", "content.video").rule == "train-content"


def test_most_specific_consent_record_wins(store: Store) -> None:
    store.give_consent("u1", T, ["content"])
    store.withdraw_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.WITHDRAWN
    assert reason(store, "u1", T, "content.video") is Reason.CONSENT
    # A record for a more specific purpose answers before a broader one.
    store.refuse_consent("u1", "ai.training.feature", ["content.video"])
    assert reason(store, "u1", "ai.training.feature", "content.video") is Reason.REFUSED


def test_account_off_caps_a_members_consent(store: Store) -> None:
    store.add_member("u1", "acme")
    store.give_consent("u1", T, [AUDIO])
    store.set_account("acme", T, "off")
    assert reason(store, "u1", T, AUDIO) is Reason.ACCOUNT_OFF
    store.set_account("acme", T, "members_choose")
    assert reason(store, "u1", T, AUDIO) is Reason.CONSENT


def test_account_on_yields_to_a_members_own_withdrawal(store: Store) -> None:
    store.add_member("u1", "acme")
    store.set_account("acme", T, "on")
    store.withdraw_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.WITHDRAWN
    assert reason(store, "u2", T, AUDIO) is Reason.NO_CONSENT  # not a member
    store.add_member("u2", "acme")
    assert reason(store, "u2", T, AUDIO) is Reason.ACCOUNT_CONSENT


def test_account_on_goes_stale_with_reconsent(store: Store, clock: FakeClock) -> None:
    store.add_member("u1", "acme")
    store.set_account("acme", T, "on")
    clock.set(datetime(2024, 6, 2, tzinfo=UTC))
    assert reason(store, "u1", T, AUDIO) is Reason.STALE_CONSENT
    store.set_account("acme", T, "on")
    assert reason(store, "u1", T, AUDIO) is Reason.ACCOUNT_CONSENT


def test_leaving_an_account_drops_its_cap(store: Store) -> None:
    store.add_member("u1", "acme")
    store.give_consent("u1", T, [AUDIO])
    store.set_account("acme", T, "off")
    store.remove_member("u1", "acme")
    assert reason(store, "u1", T, AUDIO) is Reason.CONSENT


def test_parties_all_names_the_blocking_subject(store: Store) -> None:
    store.give_consent("host", T, [AUDIO])
    store.give_consent("guest2", T, [AUDIO])
    d = store.check(["host", "guest1", "guest2"], T, AUDIO)
    assert not d.allowed and d.reason is Reason.NO_CONSENT and d.subject == "guest1"
    assert [s.reason for s in d.subjects] == [Reason.CONSENT, Reason.NO_CONSENT, Reason.CONSENT]
    store.give_consent("guest1", T, [AUDIO])
    assert store.check(["host", "guest1", "guest2"], T, AUDIO).allowed


def test_parties_owner_only_asks_the_owner(store: Store) -> None:
    store.give_consent("artist", "ai.training.generative", [AUDIO])
    d = store.check(["artist", "featured"], "ai.training.generative", AUDIO)
    assert d.allowed and d.reason is Reason.CONSENT and len(d.subjects) == 1
    assert not store.check(["featured", "artist"], "ai.training.generative", AUDIO).allowed


def test_as_of_replays_the_past(store: Store, clock: FakeClock) -> None:
    clock.advance(hours=1)
    before = clock()
    clock.advance(hours=1)
    store.give_consent("u1", T, [AUDIO])
    clock.advance(days=1)
    between = clock()
    clock.advance(days=1)
    store.withdraw_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.WITHDRAWN
    assert reason(store, "u1", T, AUDIO, as_of=between) is Reason.CONSENT
    assert reason(store, "u1", T, AUDIO, as_of=before) is Reason.NO_CONSENT
    # Before the store published any policy there is no decision to replay: refused.
    with pytest.raises(AsOfOutOfRange, match="before the first policy version took effect"):
        reason(store, "u1", T, AUDIO, as_of="2024-02-01T00:00:00Z")


def test_as_of_uses_the_policy_version_in_effect_then(store: Store, clock: FakeClock) -> None:
    store.give_consent("u1", T, [AUDIO])
    clock.set(datetime(2024, 7, 1, tzinfo=UTC))
    assert store.check("u1", T, AUDIO).policy_version == "v2"
    past = store.check("u1", T, AUDIO, as_of="2024-03-15T00:00:00Z")
    assert past.policy_version == "v1" and past.reason is Reason.CONSENT


def test_as_of_before_any_policy_was_published(store: Store) -> None:
    with pytest.raises(AsOfOutOfRange, match="before the first policy version took effect"):
        store.check("u1", T, AUDIO, as_of="2020-01-01T00:00:00Z")
    with pytest.raises(AsOfOutOfRange, match="in the future"):
        store.check("u1", T, AUDIO, as_of="2999-01-01T00:00:00Z")


def test_as_of_needs_a_time_zone(store: Store) -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        store.check("u1", T, AUDIO, as_of="2024-03-01T00:00:00")


def test_unknown_names_suggest_the_nearest(store: Store) -> None:
    with pytest.raises(UnknownName) as info:
        store.check("u1", "ai.trainng", AUDIO)
    assert info.value.hint == "did you mean 'ai.training'?"
    with pytest.raises(UnknownName, match="category"):
        store.check("u1", T, "content.audoi")
    with pytest.raises(UnknownName, match="label"):
        store.check("u1", T, AUDIO, labels=["helth"])


def test_explain_names_events_rule_and_notice(store: Store) -> None:
    event = store.give_consent("u1", T, [AUDIO])
    data = store.explain(store.check("u1", T, AUDIO))
    assert data["rule"] == "train-content" and data["notice"] == "t"
    assert event.id in [e["event_id"] for e in data["evidence"]]


def test_snapshot_catches_up_with_other_writers(store: Store, clock: FakeClock) -> None:
    other = Store(store.url, clock=clock)
    assert reason(store, "u1", T, AUDIO) is Reason.NO_CONSENT
    other.give_consent("u1", T, [AUDIO])
    assert reason(store, "u1", T, AUDIO) is Reason.CONSENT
    # Without refreshing, the snapshot answers from memory (no database round trip).
    other.withdraw_consent("u1", T, [AUDIO])
    assert store.decider(refresh=False).reason("u1", T, AUDIO) is Reason.CONSENT
    assert store.decider().reason("u1", T, AUDIO) is Reason.WITHDRAWN
    other.close()


def test_check_many_matches_check(store: Store) -> None:
    store.give_consent("a", T, [AUDIO])
    store.refuse_consent("b", T, [AUDIO])
    assert store.check_many(["a", "b", "c"], T, AUDIO) == [
        Reason.CONSENT,
        Reason.REFUSED,
        Reason.NO_CONSENT,
    ]
