"""The transparency log over HTTP: checkpoints, consistency proofs, public keys, receipts with
inclusion proofs checked with nothing but the public keys, and the service's checkpointer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from api_support import Api

from consentry.api.checkpointer import Checkpointer
from consentry.ledger.checkpoint import NoteVerifier, read_checkpoint
from consentry.ledger.evidence import verify_receipt_offline
from consentry.ledger.merkle import verify_consistency

GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content.audio"]}


def test_checkpoint_needs_no_credentials_and_verifies_with_the_published_key(api: Api) -> None:
    keys = api.client.get("/v1/ledger/public-keys").json()
    verifier = NoteVerifier.parse(keys["log_verifier_key"])
    r = api.client.get("/v1/ledger/checkpoint")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    first = read_checkpoint(r.text, verifier)
    assert first.size == api.store.ledger.head()[0]
    as_json = api.client.get("/v1/ledger/checkpoint", headers={"Accept": "application/json"})
    assert as_json.json()["note"] == r.text and as_json.json()["size"] == first.size
    # More events, a new checkpoint, and a proof that it extends the first.
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    second = read_checkpoint(api.store.checkpoint().note, verifier)
    proof = api.client.get(
        f"/v1/ledger/consistency?first={first.size}&second={second.size}"
    ).json()["proof"]
    verify_consistency(
        first.size, first.root, second.size, second.root, [bytes.fromhex(h) for h in proof]
    )
    too_far = api.client.get(f"/v1/ledger/consistency?first=1&second={second.size + 5}")
    assert too_far.status_code == 422 and too_far.json()["field"] == "first"


def test_a_downloaded_receipt_verifies_offline_and_over_the_api(api: Api) -> None:
    event = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    receipt = api.client.get(event["receipt_url"], headers=api.bob).json()
    keys = api.client.get("/v1/ledger/public-keys").json()
    check = verify_receipt_offline(
        receipt, receipt_key=keys["receipt_public_key"], log_key=keys["log_verifier_key"]
    )
    assert check.record_id == event["id"]
    size = check.checkpoint.size
    again = api.client.get(f"{event['receipt_url']}?checkpoint_size={size}", headers=api.bob)
    assert again.json() == receipt
    missing = api.client.get(f"{event['receipt_url']}?checkpoint_size=1", headers=api.bob)
    assert missing.status_code == 404
    ok = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service).json()
    assert ok["valid"] and ok["checkpoint"]["size"] == size and ok["event"]["id"] == event["id"]
    receipt["evidence"]["event"]["purpose"] = "ai"
    bad = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service)
    assert bad.status_code == 422 and "hash" in bad.json()["detail"]


def test_verify_since_a_checkpoint_over_the_api(api: Api) -> None:
    note = api.client.get("/v1/ledger/checkpoint").text
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    r = api.client.post("/v1/ledger/verify", json={"since": note}, headers=api.platform)
    body = r.json()
    assert r.status_code == 200 and body["ok"] and body["since"]["ok"], body
    garbage = api.client.post("/v1/ledger/verify", json={"since": "hello"}, headers=api.platform)
    assert garbage.status_code == 422


def test_readyz_names_keys_kept_in_the_database(api: Api) -> None:
    body = api.client.get("/readyz").json()
    assert body["keys"] == {"receipt": "database", "log": "database"}
    assert any("kept in the database" in w for w in body["warnings"])


def test_the_checkpointer_signs_every_n_events_and_feeds_the_witness(
    api: Api, tmp_path: Path
) -> None:
    api.store.checkpoint_dir = tmp_path / "witness"
    checkpointer = Checkpointer(api.store, every_events=3, interval_s=0)
    assert checkpointer.run_once()  # the store's events so far
    assert not checkpointer.run_once()  # nothing new
    for _ in range(2):
        api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert not checkpointer.run_once()  # 2 new events: not yet
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert checkpointer.run_once()
    latest = api.store.latest_checkpoint()
    assert latest is not None and latest.size == api.store.ledger.head()[0]
    assert (tmp_path / "witness" / f"checkpoint-{latest.size:012d}.txt").read_text() == latest.note
    # By time: with interval_s, one new event is enough once the interval has passed.
    timed = Checkpointer(api.store, every_events=0, interval_s=1)
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert timed.due(api.store.ledger.head()[0], latest.size, now=timed._last_made + 2)
    assert not timed.due(api.store.ledger.head()[0], latest.size, now=timed._last_made)


def test_the_service_runs_its_checkpointer(make_api: Callable[..., Api]) -> None:
    api = make_api(checkpoint_every_events=1, checkpoint_interval_s=0)
    with api.client:  # runs the lifespan: the checkpointer thread starts and stops with it
        api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
        head = api.store.ledger.head()[0]
        deadline = time.monotonic() + 120  # the thread looks once a second; a loaded machine
        while time.monotonic() < deadline:
            latest = api.store.latest_checkpoint()
            if latest is not None and latest.size == head:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the service made no checkpoint within 30 s")
