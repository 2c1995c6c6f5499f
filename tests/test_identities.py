"""Identities and aliases (issue 16 §3): one person under several ids, on both backends.

Decisions, the gate's decision table and ``impact`` resolve an alias to its person; the merge
of two people's choices keeps the more protective of those made before the link; the rules
on who may be linked to whom are the store's; every link and unlink is an event the ledger
verifies and the SQL state audit checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from consentry import Reason, Store
from consentry.cli import app as cli
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.gate.decisions import known_subjects
from consentry.state import CONSENT_PROTECTIVE, State, merge_records, pack, unpack
from consentry.store import load_state
from support import FakeClock

T = "ai.training"
AUDIO = "content.audio"
VIDEO = "content.video"


def reason(store: Store, subject: str, category: str = AUDIO) -> Reason:
    return store.check(subject, T, category).reason


def _consistent(store: Store) -> None:
    """The ledger verifies, the tables are what the events imply, and a state loaded from
    the tables is the live one."""
    result = store.verify()
    assert result.ok and not result.divergences, result
    loaded = load_state(store.ledger)
    live = store.state()
    for table in ("consents", "objections"):
        assert named(loaded, table) == named(live, table)
    assert loaded.memberships == live.memberships
    assert loaded.person_of == live.person_of


def named(state: State, table: str) -> dict[str, dict[tuple[str, str], int]]:
    """A state's records by (purpose, category), not by its own pair numbers (which follow
    the order the records were read in)."""
    names = {pid: key for key, pid in state.pairs.items()}
    records: dict[str, dict[int, int]] = getattr(state, table)
    return {s: {names[p]: v for p, v in r.items()} for s, r in records.items()}


def test_an_alias_is_decided_by_the_persons_choices(any_store: Store) -> None:
    any_store.give_consent("u1", T, [AUDIO])
    assert reason(any_store, "guest@example.com") is not Reason.CONSENT
    event = any_store.link_subject("u1", "guest@example.com", actor="svc")
    assert event.subject == "u1" and event.payload == {"alias": "guest@example.com"}
    assert reason(any_store, "guest@example.com") is Reason.CONSENT
    # a multi-party item with the alias among its subjects, too
    d = any_store.check(["guest@example.com", "u1"], T, AUDIO)
    assert d.allowed
    assert any_store.aliases("guest@example.com")["subject"] == "u1"
    assert any_store.subject_ids("guest@example.com") == ["u1", "guest@example.com"]
    # the choice made later under the alias is the person's
    any_store.withdraw_consent("guest@example.com", T, [AUDIO])
    assert reason(any_store, "u1") is Reason.WITHDRAWN
    _consistent(any_store)
    any_store.unlink_subject("u1", "guest@example.com")
    # each id decides by the choices made under it alone again
    assert reason(any_store, "u1") is Reason.CONSENT
    assert reason(any_store, "guest@example.com") is Reason.WITHDRAWN
    assert any_store.aliases("u1") == {"subject": "u1", "aliases": []}
    _consistent(any_store)


def test_merging_two_people_the_more_protective_choice_wins(
    any_store: Store, clock: FakeClock
) -> None:
    any_store.give_consent("u1", T, [AUDIO, VIDEO])
    clock.advance(minutes=1)
    any_store.refuse_consent("phone:+33", T, [AUDIO])
    clock.advance(minutes=1)
    any_store.object("phone:+33", "improvement", ["service_data"])
    clock.advance(minutes=1)
    any_store.link_subject("u1", "phone:+33")
    # audio: a consent and a refusal made before the link: the refusal stands for both ids
    assert reason(any_store, "u1") is Reason.REFUSED
    assert reason(any_store, "phone:+33") is Reason.REFUSED
    # video: only u1 chose; the alias now has u1's consent
    assert reason(any_store, "phone:+33", VIDEO) is Reason.CONSENT
    # the objection made under the alias covers the person
    assert not any_store.check("u1", "improvement", "service_data.usage").allowed
    # a choice made after the link is the person's newest word, under either id
    clock.advance(minutes=1)
    any_store.give_consent("u1", T, [AUDIO])
    assert reason(any_store, "phone:+33") is Reason.CONSENT
    _consistent(any_store)


def test_who_may_be_linked_to_whom(any_store: Store) -> None:
    any_store.link_subject("u1", "a1")
    with pytest.raises(InvalidInput):
        any_store.link_subject("u1", "u1")
    with pytest.raises(Conflict, match="already an alias"):
        any_store.link_subject("u1", "a1")
    # an alias names one person: another cannot take it over by linking it
    with pytest.raises(Conflict, match="alias of another person"):
        any_store.link_subject("u2", "a1")
    # no chains: an alias cannot be a person's primary id, a person cannot become an alias
    with pytest.raises(Conflict, match="itself an alias"):
        any_store.link_subject("a1", "x")
    with pytest.raises(Conflict, match="aliases of its own"):
        any_store.link_subject("u2", "u1")
    with pytest.raises(NotFound):
        any_store.unlink_subject("u2", "a1")  # only the person it names can let it go
    with pytest.raises(InvalidInput):
        any_store.link_subject("u1", "bad\x00id")
    assert any_store.subject_ids("a1") == ["u1", "a1"]
    # each refusal wrote nothing
    assert [e.kind for e in any_store.log(limit=3)][-1] == "subject.linked"
    _consistent(any_store)


def test_a_retried_link_is_recorded_once(any_store: Store) -> None:
    first = any_store.link_subject("u1", "a1", idempotency_key="k1")
    again = any_store.link_subject("u1", "a1", idempotency_key="k1")
    assert again.id == first.id


def test_the_gate_table_and_impact_see_the_person(any_store: Store) -> None:
    any_store.refuse_consent("u1", T, [AUDIO])
    any_store.link_subject("u1", "guest@example.com")
    state = any_store.state()
    assert "guest@example.com" in known_subjects(state)
    assert state.consents["guest@example.com"] == state.consents["u1"]
    impact = any_store.impact("guest@example.com")
    assert impact.known


def test_a_relink_after_unlink_and_the_state_survives_a_reload(
    make_store: Callable[..., Store],
) -> None:
    from support import TEST_POLICY

    store = make_store(TEST_POLICY)
    store.give_consent("a1", T, [AUDIO])
    store.link_subject("u1", "a1")
    store.unlink_subject("u1", "a1")
    store.link_subject("u2", "a1")
    assert store.subject_ids("a1") == ["u2", "a1"]
    assert store.aliases("u1")["aliases"] == []
    fresh = Store(store.url, clock=store.clock)
    assert fresh.subject_ids("a1") == ["u2", "a1"]
    assert reason(fresh, "u2") is Reason.CONSENT
    fresh.close()


# -- the merge rule, as a property --------------------------------------------------------------

RECORD = st.tuples(st.integers(0, 100), st.integers(1, 3))  # (at, consent status code)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(st.lists(RECORD, max_size=1), min_size=1, max_size=4),
    joined=st.integers(0, 100),
)
def test_the_merge_rule(records: list[list[tuple[int, int]]], joined: int) -> None:
    owns = [{0: pack(at, 1, code)} for rs in records for at, code in rs]
    merged = merge_records(owns, joined, CONSENT_PROTECTIVE)
    if not owns:
        assert merged == {}
        return
    choices = [unpack(o[0]) for o in owns]
    at, _seq, code = unpack(merged[0])
    after = [c for c in choices if c[0] >= joined]
    if after:  # the newest choice made since the join stands
        assert at == max(c[0] for c in choices)
    elif any(c[2] in CONSENT_PROTECTIVE for c in choices):
        # all made before: a refusal or withdrawal wins over any consent
        assert code in CONSENT_PROTECTIVE
    else:
        assert at == min(c[0] for c in choices)  # the older consent (it lapses first)


def test_an_unlinked_state_is_what_it_was(any_store: Store) -> None:
    any_store.give_consent("u1", T, [AUDIO])
    any_store.refuse_consent("a1", T, [VIDEO])
    before = State()
    before.apply_all(any_store.ledger.events())
    any_store.link_subject("u1", "a1")
    any_store.unlink_subject("u1", "a1")
    after = load_state(any_store.ledger)
    assert named(after, "consents") == named(before, "consents")


def test_the_commands(tmp_path: Path, clock: FakeClock) -> None:
    from support import TEST_POLICY

    url = f"sqlite:///{tmp_path}/cli.db"
    store = Store(url, clock=clock)
    store.init(policies=[TEST_POLICY])
    store.refuse_consent("u1", T, [AUDIO])
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", url, "subject", "link", "u1", "guest@example.com"])
    assert result.exit_code == 0, result.output
    assert "linked guest@example.com to u1" in result.output
    result = runner.invoke(cli, ["--db", url, "check", T, AUDIO, "-s", "guest@example.com"])
    assert "refused" in result.output
    result = runner.invoke(cli, ["--db", url, "subject", "aliases", "guest@example.com", "--json"])
    assert json.loads(result.output)["subject"] == "u1"
    # the same refusals as the library and the API, with the same words
    result = runner.invoke(cli, ["--db", url, "subject", "link", "u2", "guest@example.com"])
    assert result.exit_code != 0 and "alias of another person" in result.output
    result = runner.invoke(cli, ["--db", url, "subject", "unlink", "u1", "guest@example.com"])
    assert result.exit_code == 0 and "unlinked" in result.output
    result = runner.invoke(cli, ["--db", url, "subject", "aliases", "u1"])
    assert "no aliases" in result.output


def test_the_export_holds_the_events_of_every_id(any_store: Store) -> None:
    import io
    import zipfile

    any_store.refuse_consent("guest@example.com", T, [AUDIO])
    any_store.give_consent("u1", T, [VIDEO])
    any_store.link_subject("u1", "guest@example.com")
    with zipfile.ZipFile(io.BytesIO(any_store.export_subject("u1"))) as z:
        events = json.loads(z.read("events.json"))
    assert {e["subject"] for e in events} == {"u1", "guest@example.com"}
    assert [e["kind"] for e in events][-1] == "subject.linked"
