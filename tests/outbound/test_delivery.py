"""Webhook delivery over real loopback HTTP, on both backends: signatures, order after an
outage, retries and failure, isolation of a hanging endpoint, a worker killed mid-batch, and
two worker processes at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import standardwebhooks
from outbound_support import FAST_RETRY, deliverer, pump, settled, statuses
from webhook_receiver import Received, Receiver

from consentry import Store
from consentry.errors import SignatureInvalid
from consentry.outbound import signing, subscriptions
from consentry.outbound.delivery import RetrySchedule

ROOT = Path(__file__).resolve().parents[2]


def _by_subject(received: list[Received]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in received:
        seqs[r.data["subject"]].append(r.data["consentryseq"])
    return seqs


def _write(store: Store, subjects: int, each: int) -> list[str]:
    """Interleaved consents and withdrawals of several subjects; their event ids."""
    ids = []
    for i in range(each):
        for n in range(subjects):
            write = store.give_consent if i % 2 == 0 else store.withdraw_consent
            ids.append(write(f"u{n}", "ai.training", ["content.audio"]).id)
    return ids


def test_signatures_verify_with_the_standard_webhooks_package(
    any_store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(any_store, receiver.url)
    assert sub.secret is not None and sub.secret.startswith("whsec_")
    ids = _write(any_store, 2, 2)
    d = deliverer(any_store)
    pump(d, lambda: len(receiver.received) >= len(ids))
    d.stop()
    hook = standardwebhooks.Webhook(sub.secret)
    for r in receiver.received:
        payload = hook.verify(r.body, r.headers)
        assert payload["id"] == r.headers["webhook-id"]
        signing.verify(sub.secret, r.headers, r.body)  # our ten lines agree
        assert r.headers["content-type"] == "application/cloudevents+json"
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(ids)
    tampered = receiver.received[0].body.replace(b'"u', b'"x', 1)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        hook.verify(tampered, receiver.received[0].headers)
    with pytest.raises(SignatureInvalid):
        signing.verify(sub.secret, receiver.received[0].headers, tampered)
    other = signing.new_secret()
    with pytest.raises(SignatureInvalid):
        signing.verify(other, receiver.received[0].headers, receiver.received[0].body)


def test_a_receiver_down_for_a_while_gets_everything_in_order(
    any_store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(any_store, receiver.url)
    receiver.down = True
    ids = _write(any_store, 3, 6)
    d = deliverer(any_store)
    # Let it fail for a while: every subject's first message is tried and held back.
    pump(d, lambda: receiver.attempts >= 6)
    assert receiver.received == []
    assert statuses(any_store, sub.id) == {"pending": len(ids)}
    receiver.down = False
    pump(d, settled(any_store, sub.id, len(ids)))
    d.stop()
    got = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(got) == sorted(ids) and len(got) == len(ids)
    for subject, seqs in _by_subject(receiver.received).items():
        assert seqs == sorted(seqs), f"{subject}'s messages came out of order: {seqs}"
    rows = subscriptions.deliveries(any_store, sub.id, limit=100)
    assert all(r["status"] == "delivered" for r in rows)
    assert any(r["attempts"] > 1 for r in rows)


def test_an_endpoint_that_keeps_failing_is_given_up_on_then_replayed(
    store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(store, receiver.url)
    receiver.status = 500
    ids = _write(store, 2, 2)
    d = deliverer(store, retry=RetrySchedule(first_s=0.01, factor=2.0, total_s=0.05))
    # Each subject: its first message fails three times, then is given up on, then the next.
    pump(d, settled(store, sub.id, len(ids), "failed"))
    failed = subscriptions.deliveries(store, sub.id, failed=True)
    assert len(failed) == len(ids)
    assert {r["last_status"] for r in failed} == {500}
    assert all(r["attempts"] == len(RetrySchedule(0.01, 2.0, 0.05).waits()) + 1 for r in failed)
    receiver.status = 200
    first = min(r["seq"] for r in failed)
    subscriptions.replay(store, sub.id, first)
    pump(d, settled(store, sub.id, len(ids)))
    d.stop()
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(ids)


def test_a_hanging_endpoint_does_not_delay_another_subscription(
    store: Store, make_receiver: Callable[[], Receiver]
) -> None:
    hanging, healthy = make_receiver(), make_receiver()
    hanging.gate.clear()  # every request waits until the test lets it go
    subscriptions.create(store, hanging.url)
    fine = subscriptions.create(store, healthy.url)
    ids = _write(store, 4, 2)
    d = deliverer(store)
    d.start()
    try:
        healthy.wait_for(len(ids), timeout_s=30)
        assert hanging.received == []
        hanging.gate.set()
        hanging.wait_for(len(ids), timeout_s=30)
    finally:
        d.stop()
    assert statuses(store, fine.id) == {"delivered": len(ids)}


def test_the_retry_schedule_adds_up_to_about_a_day() -> None:
    waits = RetrySchedule().waits()
    assert waits[0] == 5 and waits[1] == 20
    assert sum(waits) == pytest.approx(86_400)
    jittered = [RetrySchedule().wait(1) for _ in range(50)]
    assert all(4 <= w <= 6 for w in jittered if w is not None) and len(set(jittered)) > 1
    assert RetrySchedule().wait(len(waits) + 1) is None


# -- worker processes ----------------------------------------------------------------------------


def _deliver_process(url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = dict(os.environ)
    environ.update(
        PYTHONPATH=str(ROOT / "src"),
        CONSENTRY_WEBHOOK_POLL_S="0.02",
        CONSENTRY_WEBHOOK_RETRY_FIRST_S="0.05",
        CONSENTRY_WEBHOOK_RETRY_FACTOR="2",
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-c", "from consentry.cli import app; app()", "--db", url, "deliver"],
        env=environ,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(
    any_store: Store, receiver: Receiver, tmp_path: Path
) -> None:
    sub = subscriptions.create(any_store, receiver.url)
    receiver.delay_s = 0.05  # slow enough that the kill lands in the middle of the batch
    ids = _write(any_store, 5, 8)
    log = tmp_path / "deliver.log"
    first = _deliver_process(
        any_store.url, log, CONSENTRY_WEBHOOK_LEASE_S="1", CONSENTRY_WEBHOOK_LANES="1"
    )
    try:
        _wait(lambda: len(receiver.received) >= 5, 60, "the first messages")
        first.kill()  # SIGKILL: no clean-up, its claims are left leased
        first.wait(10)
        assert len(receiver.received) < len(ids), "the kill came too late to test anything"
        receiver.delay_s = 0
        second = _deliver_process(any_store.url, log, CONSENTRY_WEBHOOK_LEASE_S="1")
        try:
            _wait(settled(any_store, sub.id, len(ids)), 60, "every message delivered")
        finally:
            _stop(second)
    finally:
        _stop(first)
    got = {r.headers["webhook-id"] for r in receiver.received}
    assert got == set(ids), log.read_text()
    for subject, seqs in _by_subject(receiver.received).items():
        firsts = list(dict.fromkeys(seqs))  # a resend after the kill may repeat a message
        assert firsts == sorted(firsts), f"{subject}: {seqs}"


@pytest.mark.slow
def test_two_worker_processes_do_not_send_a_message_twice(
    any_store: Store, receiver: Receiver, tmp_path: Path
) -> None:
    sub = subscriptions.create(any_store, receiver.url)
    log = tmp_path / "deliver.log"
    workers = [_deliver_process(any_store.url, log, CONSENTRY_WEBHOOK_BATCH="20") for _ in range(2)]
    try:
        ids = _write(any_store, 10, 20)
        _wait(settled(any_store, sub.id, len(ids)), 90, "every message delivered")
    finally:
        for w in workers:
            _stop(w)
    got = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(got) == sorted(ids), log.read_text()  # each exactly once
    for subject, seqs in _by_subject(receiver.received).items():
        assert seqs == sorted(seqs), f"{subject}: {seqs}"


def test_fast_retry_is_what_the_tests_use() -> None:
    assert FAST_RETRY.first_s < 1


def test_delivered_records_are_pruned_after_the_keeping_time(
    store: Store, receiver: Receiver
) -> None:
    sub = subscriptions.create(store, receiver.url)
    ids = _write(store, 1, 3)
    d = deliverer(store, keep_delivered_s=3600)
    pump(d, settled(store, sub.id, len(ids)))
    assert d.prune() == 0  # delivered just now: kept
    d = deliverer(store, keep_delivered_s=0)
    assert d.prune() == len(ids)
    assert statuses(store, sub.id) == {}


def test_a_slow_endpoint_never_outlives_the_claim(store: Store, receiver: Receiver) -> None:
    """Sending one subject's six messages to this endpoint takes longer than the lease: the
    lane gives the rest back at half the lease instead of letting the lease lapse (when
    another worker would send them again)."""
    sub = subscriptions.create(store, receiver.url, timeout_s=5)
    receiver.delay_s = 0.5
    ids = _write(store, 1, 6)
    first, second = (deliverer(store, lease_s=3.0, lanes=1) for _ in range(2))
    first.start()
    second.start()
    try:
        receiver.wait_for(len(ids), timeout_s=60)
        _wait(settled(store, sub.id, len(ids)), 30, "every message settled")
    finally:
        first.stop()
        second.stop()
    got = [r.headers["webhook-id"] for r in receiver.received]
    assert got == ids  # in order, each once
