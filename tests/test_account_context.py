"""Whose organisation decides (issue 12): the account an item belongs to, on both backends.

The rules (docs/concepts.md, "Accounts: whose organisation decides"):

* an AI feature (``account_enable``) follows the account the item belongs to;
* an account's ``off`` caps its own members, in its own content and in anyone else's;
* an account's ``on`` (account consent) speaks only for its members, in its own content;
* with no account given, the most protective answer over all the person's accounts: any
  ``off`` denies, a feature must be on in every one, and account consent counts only if every
  account with a setting for the purpose set it ``on`` (the oldest of them then decides).

A property test at the end permutes the order of memberships and of the other events that
commute, and requires the same answers, reasons and deciding accounts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry import Store
from consentry.errors import InvalidInput, UnknownName
from support import MEETINGS, TEST_POLICY, FakeClock

TRAIN = ("ai.training", "content.audio")
SUMMARY = ("ai.feature.summary", "content.audio")


def answer(store: Store, subject: str | list[str], p: str, c: str, **kw: Any) -> tuple[str, Any]:
    """(reason, the account whose event decided, or None) of a check, via ``explain``."""
    decision = store.check(subject, p, c, **kw)
    decided = store.explain(decision)["decided_by"]
    return str(decision.reason), decided and decided["account"]


# -- AI features follow the account the item belongs to --------------------------------------


def test_a_feature_follows_the_account_the_item_belongs_to(any_store: Store) -> None:
    s = any_store
    s.add_member("host", "acme")
    s.add_member("guest", "globex")
    s.set_feature("acme", "ai.feature.summary", True)
    s.set_feature("globex", "ai.feature.summary", False)
    # Acme's meeting: Acme switched the summary on; the guest's organisation did not, but the
    # recording is Acme's.
    assert answer(s, ["host", "guest"], *SUMMARY, account="acme")[0] == "contract"
    assert answer(s, "guest", *SUMMARY, account="acme")[0] == "contract"
    # Globex's content: Globex's switch decides, and the explanation names it.
    assert answer(s, "host", *SUMMARY, account="globex") == ("not_enabled", "globex")
    # No account given: the most protective answer over the person's own accounts.
    assert answer(s, "guest", *SUMMARY) == ("not_enabled", "globex")
    assert answer(s, "host", *SUMMARY)[0] == "contract"
    assert answer(s, "nobody", *SUMMARY) == ("not_enabled", None)


def test_an_account_that_never_switched_a_feature_gives_no_event(any_store: Store) -> None:
    any_store.add_member("host", "acme")
    decision = any_store.check("host", *SUMMARY, account="acme")
    assert str(decision.reason) == "not_enabled"
    assert decision.account == "acme"
    assert decision.subjects[0].evidence == ()


# -- off caps the account's own members ------------------------------------------------------


def test_an_accounts_off_caps_its_own_members_not_its_guests(any_store: Store) -> None:
    s = any_store
    s.add_member("host", "acme")
    s.add_member("guest", "globex")
    s.set_account("acme", "ai.training", "off")
    s.give_consent("host", "ai.training", ["content"])
    s.give_consent("guest", "ai.training", ["content"])
    assert answer(s, "host", *TRAIN, account="acme") == ("account_off", "acme")
    # The host's off caps the host in any content, also a guest's organisation's.
    assert answer(s, "host", *TRAIN, account="globex") == ("account_off", "acme")
    # The guest's part of Acme's meeting: Acme speaks for its own members only.
    assert answer(s, "guest", *TRAIN, account="acme") == ("consent", None)
    # The meeting as a whole (the rule considers every party): the host's part blocks it.
    decision = s.check(["guest", "host"], *TRAIN, account="acme")
    assert (str(decision.reason), decision.subject) == ("account_off", "host")


def test_a_guests_own_organisation_off_caps_their_part_of_shared_content(
    any_store: Store,
) -> None:
    s = any_store
    s.add_member("host", "acme")
    s.add_member("guest", "globex")
    s.set_account("acme", "ai.training", "on")
    s.set_account("globex", "ai.training", "off")
    s.give_consent("guest", "ai.training", ["content"])
    assert answer(s, "guest", *TRAIN, account="acme") == ("account_off", "globex")
    assert answer(s, "host", *TRAIN, account="acme") == ("account_consent", "acme")


def test_the_items_own_account_is_named_first_when_several_are_off(any_store: Store) -> None:
    s = any_store
    for account in ("acme", "zeta"):
        s.add_member("both", account)
        s.set_account(account, "ai.training", "off")
    assert answer(s, "both", *TRAIN, account="zeta") == ("account_off", "zeta")
    assert answer(s, "both", *TRAIN, account="acme") == ("account_off", "acme")
    # No context: the first by name, never by the order joined in.
    assert answer(s, "both", *TRAIN) == ("account_off", "acme")


# -- account consent speaks for members, in the account's own content ------------------------


def test_account_consent_speaks_only_for_members_in_its_own_content(any_store: Store) -> None:
    s = any_store
    s.add_member("host", "acme")
    s.add_member("guest", "globex")
    s.set_account("acme", "ai.training", "on")
    assert answer(s, "host", *TRAIN, account="acme") == ("account_consent", "acme")
    # A guest's part: only the guest's own choice counts.
    assert answer(s, "guest", *TRAIN, account="acme") == ("no_consent", None)
    s.give_consent("guest", "ai.training", ["content"])
    assert answer(s, "guest", *TRAIN, account="acme") == ("consent", None)
    # Acme's member in Globex's content: Acme's on does not speak there.
    assert answer(s, "host", *TRAIN, account="globex") == ("no_consent", None)
    # A person's own refusal outweighs their organisation's on.
    s.refuse_consent("host", "ai.training", ["content"])
    assert answer(s, "host", *TRAIN, account="acme")[0] == "refused"


def test_without_an_account_every_setting_must_agree(any_store: Store) -> None:
    s = any_store
    s.add_member("p", "acme")
    s.set_account("acme", "ai.training", "on")
    assert answer(s, "p", *TRAIN) == ("account_consent", "acme")
    # Another account of theirs that lets members choose: account consent no longer counts.
    s.add_member("p", "globex")
    s.set_account("globex", "ai.training", "members_choose")
    assert answer(s, "p", *TRAIN) == ("no_consent", None)
    assert answer(s, "p", *TRAIN, account="acme") == ("account_consent", "acme")
    # An account with no setting for the purpose has no say either way.
    s.add_member("q", "acme")
    s.add_member("q", "initech")
    assert answer(s, "q", *TRAIN) == ("account_consent", "acme")


def test_the_oldest_agreeing_setting_decides_and_expires_first(any_store: Store) -> None:
    s, clock = any_store, _clock(any_store)
    for account in ("zeta", "acme"):
        s.add_member("p", account)
    s.set_account("zeta", "ai.training", "on")  # the older one
    clock.advance(days=20)
    s.set_account("acme", "ai.training", "on")
    assert answer(s, "p", *TRAIN) == ("account_consent", "zeta")
    clock.advance(days=15)  # zeta's 30 days are up, acme's are not
    assert answer(s, "p", *TRAIN) == ("expired", "zeta")
    assert answer(s, "p", *TRAIN, account="acme") == ("account_consent", "acme")


def test_join_order_no_longer_flips_the_answer(tmp_path: Any) -> None:
    """The measured case of issue 12: alice and bob belong to the same two accounts, joined in
    opposite orders; one account switched ``on`` before the 2023-08 terms asked everyone
    again (stale), the other after."""
    clock = FakeClock(datetime(2023, 7, 28, tzinfo=UTC))
    with Store(f"sqlite:///{tmp_path}/s.db", clock=clock) as s:
        s.init(policies=[MEETINGS])
        s.add_member("alice", "acct_old")
        s.add_member("bob", "acct_new")
        s.set_account("acct_old", "ai.training", "on")
        clock.set(datetime(2023, 8, 10, tzinfo=UTC))
        s.add_member("alice", "acct_new")
        s.add_member("bob", "acct_old")
        s.set_account("acct_new", "ai.training", "on")
        item = ("ai.training", "content.audio")
        assert answer(s, "alice", *item) == answer(s, "bob", *item) == ("stale_consent", "acct_old")
        for person in ("alice", "bob"):
            assert answer(s, person, *item, account="acct_new") == ("account_consent", "acct_new")
            assert answer(s, person, *item, account="acct_old") == ("stale_consent", "acct_old")


# -- the other ways in: check_many, as_of, bad input ------------------------------------------


def test_check_many_and_as_of_take_the_account(any_store: Store) -> None:
    s, clock = any_store, _clock(any_store)
    s.add_member("host", "acme")
    s.add_member("guest", "globex")
    s.set_account("acme", "ai.training", "on")
    then = clock()
    clock.advance(hours=1)
    s.set_account("acme", "ai.training", "off")
    reasons = s.check_many(["host", "guest"], *TRAIN, account="acme")
    assert [str(r) for r in reasons] == ["account_off", "no_consent"]
    past = s.check("host", *TRAIN, as_of=then.isoformat(), account="acme")
    assert (str(past.reason), past.account) == ("account_consent", "acme")
    # The replay reads the context account's events even though the guest is no member.
    past = s.check("guest", *SUMMARY, as_of=then.isoformat(), account="acme")
    assert str(past.reason) == "not_enabled"


def test_an_unknown_or_malformed_account_is_refused(any_store: Store) -> None:
    s = any_store
    s.add_member("host", "acme")
    head = s.ledger.head()[0]
    with pytest.raises(UnknownName, match="unknown account 'acmee'") as err:
        s.check("host", *TRAIN, account="acmee")
    assert "acme" in (err.value.hint or "")
    with pytest.raises(UnknownName):
        s.check_many(["host"], *TRAIN, account="acmee")
    with pytest.raises(InvalidInput):
        s.check("host", *TRAIN, account="")
    with pytest.raises(UnknownName):
        s.check("host", *TRAIN, account="acmee", as_of="-0s")
    # Refused before anything was decided or written.
    assert s.ledger.head()[0] == head


def _clock(store: Store) -> FakeClock:
    clock = store.clock
    assert isinstance(clock, FakeClock)
    return clock


# -- order never matters ----------------------------------------------------------------------

PEOPLE = ["p0", "p1", "p2"]
ORGS = ["acme", "globex", "initech"]
PURPOSES = ["ai.training", "ai.feature.summary", "improvement"]
QUERIES = [
    (who, p, c)
    for who in (["p0"], ["p1"], ["p2"], ["p2", "p0", "p1"])
    for p, c in (TRAIN, SUMMARY, ("improvement", "service_data.usage"))
]

facts = st.fixed_dictionaries(
    {
        "members": st.lists(st.tuples(st.sampled_from(PEOPLE), st.sampled_from(ORGS)), unique=True),
        "settings": st.dictionaries(
            st.sampled_from(ORGS), st.sampled_from(["off", "members_choose", "on"])
        ),
        "features": st.dictionaries(st.sampled_from(ORGS), st.booleans()),
        "consents": st.dictionaries(st.sampled_from(PEOPLE), st.sampled_from(["give", "refuse"])),
    }
)


def _events(f: dict[str, Any]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [("member", s, a) for s, a in f["members"]]
    out += [("setting", a, v) for a, v in sorted(f["settings"].items())]
    out += [("feature", a, str(v)) for a, v in sorted(f["features"].items())]
    out += [("consent", s, v) for s, v in sorted(f["consents"].items())]
    return out


def _play(events: list[tuple[str, ...]], start: datetime) -> Store:
    clock = FakeClock(start)
    store = Store("sqlite://", clock=clock)
    store.init(policies=[TEST_POLICY])
    for kind, who, value in events:
        clock.advance(seconds=1)
        if kind == "member":
            store.add_member(who, value)
        elif kind == "setting":
            store.set_account(who, "ai.training", value)
        elif kind == "feature":
            store.set_feature(who, "ai.feature.summary", value == "True")
        else:
            call = store.give_consent if value == "give" else store.refuse_consent
            call(who, "ai.training", ["content"])
    return store


def _answers(store: Store) -> list[tuple[Any, ...]]:
    out = []
    for account in (None, *sorted(store.state().accounts)):
        for who, p, c in QUERIES:
            d = store.check(who, p, c, account=account)
            by = store.explain(d)["decided_by"]
            out.append(
                (account, tuple(who), p, d.allowed, str(d.reason), d.subject, by and by["account"])
            )
        out.append(
            ("many", account, tuple(map(str, store.check_many(PEOPLE, *TRAIN, account=account))))
        )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(f=facts, data=st.data())
def test_the_order_of_commuting_events_never_changes_an_answer(
    f: dict[str, Any], data: Any
) -> None:
    """Memberships in any order, interleaved anywhere with settings, switches and consents:
    the same answers, reasons and deciding accounts. (The settings keep their relative order:
    with no context the oldest agreeing ``on`` decides, and which is oldest is a fact.)"""
    events = _events(f)
    settings_ = [e for e in events if e[0] == "setting"]
    others = data.draw(st.permutations([e for e in events if e[0] != "setting"]))
    # Settings back in their order, at drawn places among the rest.
    shuffled = list(others)
    for e in settings_:
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), e)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    one, two = _play(events, start), _play(shuffled, start)
    try:
        assert _answers(one) == _answers(two)
    finally:
        one.close()
        two.close()


def test_join_order_alone_on_a_large_random_case() -> None:
    """A fixed case with every kind of fact, joined in opposite orders."""
    f = {
        "members": [(p, a) for p in PEOPLE for a in ORGS],
        "settings": {"acme": "on", "globex": "members_choose"},
        "features": {"acme": True, "initech": False},
        "consents": {"p1": "give"},
    }
    events = _events(f)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    members = [e for e in events if e[0] == "member"]
    rest = [e for e in events if e[0] != "member"]
    one, two = _play(members + rest, start), _play(members[::-1] + rest, start)
    try:
        assert _answers(one) == _answers(two)
    finally:
        one.close()
        two.close()


def test_the_worked_example_of_docs_concepts(backend_url: str) -> None:
    """docs/concepts.md, "Worked example: a cross-organisation meeting", row by row."""
    with Store(backend_url, clock=FakeClock()) as s:
        s.init(policies=[MEETINGS])
        s.add_member("alice", "acme")
        s.add_member("zoe", "globex")
        s.add_member("ivy", "initech")
        s.add_member("ivy", "acme")
        s.set_account("acme", "ai.training", "off")
        s.set_feature("acme", "ai.feature.meeting_summary", True)
        s.set_account("globex", "improvement", "on")
        s.set_account("initech", "ai.training", "on")
        s.give_consent("zoe", "ai.training", ["content"])
        summary = ("ai.feature.meeting_summary", "content.transcript")
        train = ("ai.training", "content.audio")
        improve = ("improvement", "content.audio")
        assert answer(s, "zoe", *summary, account="acme") == ("contract", None)
        assert answer(s, "zoe", *summary) == ("not_enabled", None)
        assert answer(s, "zoe", *train, account="acme") == ("consent", None)
        both = s.check(["alice", "zoe"], *train, account="acme")
        assert (str(both.reason), both.subject) == ("account_off", "alice")
        assert s.explain(both)["decided_by"]["account"] == "acme"
        assert answer(s, "zoe", *improve, account="acme") == ("no_consent", None)
        assert answer(s, "zoe", *improve, account="globex") == ("account_consent", "globex")
        assert answer(s, "ivy", *train, account="initech") == ("account_off", "acme")
        assert answer(s, "ivy", *train) == ("account_off", "acme")
