"""Signed consent receipts."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from consentry import Store
from consentry.errors import InvalidInput, NotInitialised, SignatureInvalid
from consentry.ledger.receipts import (
    ReceiptSigner,
    new_private_key_pem,
    read_key_file,
    verify_signed,
    write_key_file,
)
from consentry.store import SIGNING_KEY
from support import TEST_POLICY


def test_receipt_has_the_27560_fields_and_verifies(store: Store) -> None:
    event = store.give_consent("u1", "ai.training", ["content.audio"], method="web", language="en")
    doc = store.receipt(event.id)
    r = doc["receipt"]
    assert r["record_id"] == event.id and r["pii_principal_id"] == "u1"
    assert r["jurisdiction"] == "EU" and r["pii_controllers"][0]["name"] == "Example Meetings Inc."
    notice = store.policy("v1").notices["en"]
    assert r["notice"] == {
        "policy_version": "v1",
        "notice_version": "v1",
        "language": "en",
        "notice_sha256": notice.digest(),
        "served_event": None,  # no notice.served event came before it
    }
    assert r["purposes"][0]["pii_categories"] == ["content.audio"]
    assert r["purposes"][0]["vocabulary"]["aipref"] == "train-ai"
    assert r["collection_method"] == "web" and r["status"] == "given"
    assert r["ledger"]["hash"] == event.hash
    assert store.verify_receipt(doc).record_id == event.id
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
    other = ReceiptSigner(new_private_key_pem())
    forged = other.sign(store.receipt(event.id)["receipt"])
    verify_signed(forged, other.public_key_b64())  # valid for its own key...
    with pytest.raises(SignatureInvalid, match="does not hold"):
        store.verify_receipt(forged)  # ...but not this store's


def test_only_consent_events_have_receipts(store: Store) -> None:
    event = store.add_member("u1", "acme")
    with pytest.raises(InvalidInput, match="only consent events"):
        store.receipt(event.id)
    with pytest.raises(InvalidInput, match="not a consentry receipt"):
        store.verify_receipt({"hello": 1})


# -- a signing key kept outside the database -------------------------------------------------


def test_a_store_made_with_a_key_file_never_holds_the_private_key(
    make_store: Any, tmp_path: Path
) -> None:
    key = tmp_path / "receipts.pem"
    kid = write_key_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    store = make_store(TEST_POLICY, signing_key_file=key)
    assert store.ledger.get_meta(SIGNING_KEY) is None  # only the public half is kept
    event = store.give_consent("u1", "ai.training", ["content.audio"])
    doc = store.receipt(event.id)
    assert jwt.get_unverified_header(doc["jws"])["kid"] == kid == store.signer().key_id
    # Verifying needs no private key: a store opened without the file verifies...
    verifier = Store(store.url)
    assert verifier.verify_receipt(doc).record_id == event.id
    # ...but cannot sign, and says why.
    with pytest.raises(NotInitialised, match="outside the database") as info:
        verifier.receipt(event.id)
    assert "CONSENTRY_SIGNING_KEY_FILE" in (info.value.hint or "")
    # init without the file does not slip a second, embedded key in.
    verifier.init()
    assert verifier.ledger.get_meta(SIGNING_KEY) is None
    verifier.close()


def test_the_wrong_key_file_is_refused(make_store: Any, tmp_path: Path) -> None:
    store = make_store(TEST_POLICY)  # keeps its own key
    event = store.give_consent("u1", "ai.training", ["content.audio"])
    other = tmp_path / "other.pem"
    write_key_file(other)
    wrong = Store(store.url, signing_key_file=other)
    with pytest.raises(InvalidInput, match="is not the key this store signs receipts with"):
        wrong.receipt(event.id)
    with pytest.raises(InvalidInput, match="is not the key this store signs receipts with"):
        wrong.init()
    wrong.close()


def test_bad_key_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist") as info:
        read_key_file(tmp_path / "missing.pem")
    assert "consentry receipt keygen" in (info.value.hint or "")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(InvalidInput, match="not an unencrypted PEM private key"):
        read_key_file(garbage)
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "rsa.pem").write_bytes(rsa_pem)
    with pytest.raises(InvalidInput, match="not an Ed25519 key"):
        read_key_file(tmp_path / "rsa.pem")
    key = tmp_path / "k.pem"
    write_key_file(key)
    before = key.read_bytes()
    with pytest.raises(InvalidInput, match="already exists"):
        write_key_file(key)
    assert key.read_bytes() == before


def test_a_bad_key_file_creates_no_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with pytest.raises(InvalidInput, match="does not exist"):
        Store(url, signing_key_file=tmp_path / "missing.pem").init()
    assert not (tmp_path / "new.db").exists() or not Store(url).ledger.is_initialised()
