"""Signed consent receipts."""

from __future__ import annotations

import copy

import pytest

from consentry import Store
from consentry.errors import InvalidInput, SignatureInvalid
from consentry.ledger.receipts import ReceiptSigner, new_private_key_pem, verify_signed


def test_receipt_has_the_27560_fields_and_verifies(store: Store) -> None:
    event = store.give_consent("u1", "ai.training", ["content.audio"], method="web", language="en")
    doc = store.receipt(event.id)
    r = doc["receipt"]
    assert r["record_id"] == event.id and r["pii_principal_id"] == "u1"
    assert r["jurisdiction"] == "EU" and r["pii_controllers"][0]["name"] == "Example Meetings Inc."
    assert r["notice"] == {"policy_version": "v1", "notice_version": "v1", "language": "en"}
    assert r["purposes"][0]["pii_categories"] == ["content.audio"]
    assert r["purposes"][0]["vocabulary"]["aipref"] == "train-ai"
    assert r["collection_method"] == "web" and r["status"] == "given"
    assert r["ledger"]["hash"] == event.hash
    assert store.verify_receipt(doc).id == event.id
    # Deterministic: the same event always yields the same signed receipt.
    assert store.receipt(event.id) == doc


def test_withdrawal_has_a_receipt_too(store: Store) -> None:
    store.give_consent("u1", "ai.training", ["content.audio"])
    event = store.withdraw_consent("u1", "ai.training", ["content.audio"])
    assert store.receipt(event.id)["receipt"]["status"] == "withdrawn"


def test_altered_receipt_is_refused(store: Store) -> None:
    event = store.give_consent("u1", "ai.training", ["content.audio"])
    doc = copy.deepcopy(store.receipt(event.id))
    doc["receipt"]["status"] = "withdrawn"
    with pytest.raises(SignatureInvalid, match="altered"):
        store.verify_receipt(doc)


def test_receipt_signed_by_another_key_is_refused(store: Store) -> None:
    event = store.give_consent("u1", "ai.training", ["content.audio"])
    forged = ReceiptSigner(new_private_key_pem()).sign(store.receipt(event.id)["receipt"])
    verify_signed(forged)  # valid for its own key...
    with pytest.raises(SignatureInvalid, match="does not hold"):
        store.verify_receipt(forged)  # ...but not this store's


def test_only_consent_events_have_receipts(store: Store) -> None:
    event = store.add_member("u1", "acme")
    with pytest.raises(InvalidInput, match="only consent events"):
        store.receipt(event.id)
    with pytest.raises(InvalidInput, match="not a consentry receipt"):
        store.verify_receipt({"hello": 1})
