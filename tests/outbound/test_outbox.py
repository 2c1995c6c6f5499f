"""The transactional outbox: one row per committed event, written in the event's transaction;
the CloudEvent each becomes; a withdrawal's impact."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from consentry import Store
from consentry.errors import IdempotencyConflict
from consentry.ledger import schema
from consentry.ledger.privileges import grants
from consentry.outbound.messages import parse, render
from support import MEETINGS


def _outbox(store: Store) -> list[tuple[int, str, str]]:
    o = schema.outbox
    query = select(o.c.seq, o.c.event_id, o.c.kind).order_by(o.c.seq)
    with store.ledger.engine.connect() as conn:
        return [(int(r[0]), str(r[1]), str(r[2])) for r in conn.execute(query)]


def _events(store: Store) -> list[tuple[int, str, str]]:
    return [(e.seq, e.id, str(e.kind)) for e in store.ledger.events()]


def test_every_committed_event_has_exactly_one_outbox_row(any_store: Store) -> None:
    s = any_store
    s.give_consent("u1", "ai.training", ["content.audio"])
    s.add_member("u1", "acme")
    s.withdraw_consent("u1", "ai.training", ["content.audio"])
    s.set_account("acme", "ai.training", "off")
    assert _outbox(s) == _events(s)
    assert len(_outbox(s)) == s.ledger.count()


def test_an_append_that_fails_leaves_no_outbox_row(any_store: Store) -> None:
    s = any_store
    s.give_consent("u1", "ai.training", ["content.audio"], idempotency_key="k1")
    before = _outbox(s)
    with pytest.raises(IdempotencyConflict):
        s.give_consent("u2", "ai.training", ["content.audio"], idempotency_key="k1")
    # A retry of the same request is the first event again: no second message either.
    s.give_consent("u1", "ai.training", ["content.audio"], idempotency_key="k1")
    assert _outbox(s) == before == _events(s)


def test_group_commits_write_one_outbox_row_per_event(any_store: Store) -> None:
    s = any_store
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(15):
                s.give_consent(f"t{n}-{i}", "ai.training", ["content.audio"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert _outbox(s) == _events(s)


def test_the_service_role_may_write_the_outbox_but_never_change_events() -> None:
    statements = grants("consentry_app")
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO "consentry_app"' in statements
    assert 'GRANT SELECT, INSERT ON events TO "consentry_app"' in statements
    derived = next(g for g in statements if "webhook_deliveries" in g)
    assert "webhook_subscriptions" in derived and "UPDATE" in derived


def test_the_events_triggers_still_refuse_updates(any_store: Store) -> None:
    from sqlalchemy import text

    with pytest.raises(Exception, match="append-only"), any_store.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE events SET method = 'x' WHERE seq = 1"))


def test_a_message_is_a_cloudevent_with_the_event_as_data(store: Store) -> None:
    event = store.withdraw_consent("u1", "ai.training", ["content.audio"])
    body = render(event, "urn:consentry:test")
    ce = parse(body)
    assert ce.get_id() == event.id
    assert ce.get_source() == "urn:consentry:test"
    assert ce.get_type() == "org.consentry.consent.withdrawn"
    assert ce.get_specversion() == "1.0"
    assert ce.get_subject() == "u1"
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_time() == event.at
    assert ce.get_extension("consentryseq") == event.seq
    assert ce.get_extension("consentrypolicy") == event.policy_version
    assert ce.get_data() == json.loads(json.dumps(event.to_dict()))
    assert render(event, "urn:consentry:test") == body  # the same bytes on every attempt


def test_an_account_event_names_the_account(store: Store) -> None:
    event = store.set_account("acme", "ai.training", "off")
    ce = parse(render(event, "urn:x"))
    assert ce.get_subject() == "acme" and ce.get_type() == "org.consentry.account.setting"


def test_a_withdrawal_message_carries_its_impact(make_store, tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    from gate_support_outbound import gate_one
    from outbound_support import deliverer, pump

    from consentry.outbound import subscriptions

    s = make_store(MEETINGS)
    s.give_consent("alice", "ai.training", ["content"])
    dataset = gate_one(s, tmp_path / "d", "alice")
    model = s.register_model("asr", [dataset], version="1")
    sub = subscriptions.create(s, receiver.url, types=["consent.*"])
    s.give_consent("bob", "ai.training", ["content"])
    s.withdraw_consent("alice", "ai.training", ["content"])
    d = deliverer(s)
    pump(d, lambda: len(receiver.received) >= 2)
    d.stop()
    # (two subjects: two ordering keys, sent in parallel lanes, so in either order)
    given, withdrawn = sorted((r.data for r in receiver.received), key=lambda m: m["consentryseq"])
    assert "impact" not in given["data"]  # a widening change carries none
    impact = withdrawn["data"]["impact"]
    assert [x["dataset_id"] for x in impact["datasets"]] == [dataset]
    assert impact["datasets"][0]["needs_action"] is True
    assert [m["id"] for m in impact["models"]] == [model.id]
    assert impact["models"][0]["needs_action"] is True
    assert "subject" not in impact  # named once, in the event
    assert subscriptions.get(s, sub.id).cursor_seq == s.ledger.head()[0]
