"""The outbox is pruned of what no subscriber needs (and a replay still reaches past it); and
what a replay after a message failed for good does to one subject's order (the chosen,
documented behaviour: docs/integrating.md "Order, duplicates and replays")."""

from __future__ import annotations

import json

from outbound_support import deliverer, pump, settled, statuses
from sqlalchemy import func, select
from typer.testing import CliRunner
from webhook_receiver import Receiver

from consentry import Store
from consentry.cli import app as cli
from consentry.ledger import schema
from consentry.outbound import subscriptions
from consentry.outbound.delivery import RetrySchedule
from consentry.outbound.retention import prune
from consentry.times import to_us

GIVE_UP = RetrySchedule(first_s=0.01, factor=2.0, total_s=0.03)


def _now(store: Store) -> int:
    return to_us(store.clock())


def _outbox_seqs(store: Store) -> list[int]:
    o = schema.outbox
    with store.ledger.engine.connect() as conn:
        return list(conn.execute(select(o.c.seq).order_by(o.c.seq)).scalars())


def test_a_later_message_is_not_held_behind_one_that_failed_for_good_and_a_replay_resends_in_order(
    store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(store, receiver.url)
    receiver.status = 500
    first = store.give_consent("bob", "ai.training", ["content.audio"])
    d = deliverer(store, retry=GIVE_UP)
    pump(d, settled(store, sub.id, 1, "failed"))
    receiver.status = 204
    second = store.withdraw_consent("bob", "ai.training", ["content.audio"])
    # The withdrawal is not held back by the consent that failed for good: a narrowing change
    # must reach the receiver even though an earlier message never will without a replay.
    pump(d, settled(store, sub.id, 1))
    subscriptions.replay(store, sub.id, first.seq)
    pump(d, settled(store, sub.id, 2))
    d.stop()
    arrived = [(r.headers["webhook-id"], r.data["consentryseq"]) for r in receiver.received]
    # The replay sends the failed message and every later one of the subject again, in order.
    assert arrived == [(second.id, second.seq), (first.id, first.seq), (second.id, second.seq)]
    # A receiver that applies a subject's message only when its consentryseq is above the last
    # one it applied (the documented rule) ends with the withdrawal, the ledger's last word.
    applied: dict[str, tuple[int, str]] = {}
    for r in receiver.received:
        seq, subject = r.data["consentryseq"], r.data["subject"]
        if seq > applied.get(subject, (0, ""))[0]:
            applied[subject] = (seq, r.data["type"])
    assert applied["bob"] == (second.seq, "org.consentry.consent.withdrawn")


def test_the_outbox_is_pruned_of_what_every_subscriber_is_past(
    store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(store, receiver.url)
    early = [store.give_consent(f"u{i}", "ai.training", ["content.audio"]) for i in range(3)]
    d = deliverer(store)
    pump(d, settled(store, sub.id, 3))
    receiver.status = 500  # the subscriber stops acknowledging
    late = [store.give_consent(f"v{i}", "ai.training", ["content.audio"]) for i in range(2)]
    pump(d, lambda: statuses(store, sub.id).get("pending") == 2 and receiver.attempts >= 5)
    d.stop()
    assert (
        prune(
            store.ledger.engine,
            keep_delivered_s=3600,
            keep_outbox_s=3600,
            ledger_now_us=_now(store),
        ).outbox
        == 0
    )
    done = prune(
        store.ledger.engine, keep_delivered_s=0, keep_outbox_s=0, ledger_now_us=_now(store) + 1
    )
    # Everything up to the first message still pending went; what the subscriber has not
    # acknowledged is kept, and so is every row after it.
    assert done.deliveries == 3 and done.horizon == late[0].seq - 1
    assert _outbox_seqs(store) == [e.seq for e in late]
    head = store.ledger.head()[0]
    assert all(s > done.horizon for s in _outbox_seqs(store)) and head == late[-1].seq
    # A replay from before the horizon still sends every message, rendered from the ledger.
    receiver.status = 204
    subscriptions.replay(store, sub.id, early[0].seq)
    d = deliverer(store)
    pump(d, settled(store, sub.id, 5))
    d.stop()
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {e.id for e in early + late}


def test_without_subscriptions_old_outbox_rows_go(store: Store) -> None:
    for i in range(3):
        store.give_consent(f"u{i}", "ai.training", ["content.audio"])
    events = store.ledger.head()[0]  # the policy's and the three consents
    done = prune(
        store.ledger.engine, keep_delivered_s=0, keep_outbox_s=0, ledger_now_us=_now(store) + 1
    )
    assert done.outbox == events
    o = schema.outbox
    with store.ledger.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(o)).scalar_one() == 0
    assert store.ledger.head()[0] == events  # the ledger is untouched


def test_webhooks_prune_on_the_command_line(store: Store) -> None:
    store.give_consent("u1", "ai.training", ["content.audio"])
    db = ["--db", store.url]
    kept = CliRunner().invoke(cli, [*db, "webhooks", "prune", "--json"])
    assert kept.exit_code == 0, kept.output
    # The test clock's events are from 2024: older than the default week, so they go.
    events = store.ledger.head()[0]
    assert json.loads(kept.output) == {"deliveries": 0, "outbox": events, "horizon": None}
    again = CliRunner().invoke(cli, [*db, "webhooks", "prune", "--keep-days", "0"])
    assert again.exit_code == 0 and "0 outbox row(s)" in again.output
    bad = CliRunner().invoke(cli, [*db, "webhooks", "prune", "--keep-days", "-1"])
    assert bad.exit_code == 2
