"""Signed consent receipts (ISO/IEC TS 27560 / Kantara Consent Receipt fields, Ed25519)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..canonical import canonical_json
from ..errors import InvalidInput, SignatureInvalid
from ..taxonomy import PURPOSE_VOCABULARY, ancestors
from .events import CONSENT_KINDS, CONSENT_STATUS, Event

RECEIPT_SCHEMA = "https://consentry.dev/schemas/consent-receipt/1"


def new_private_key_pem() -> str:
    """A fresh Ed25519 key as unencrypted PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def write_key_file(path: str | Path) -> str:
    """Create a new Ed25519 signing key in ``path`` (PEM, readable by its owner only) and
    return its key id. An existing file is never overwritten."""
    target = Path(path)
    pem = new_private_key_pem()
    try:
        # O_EXCL: refuse to replace a key (receipts signed with it would no longer verify);
        # 0o600 from the start, not chmod-ed after the key was already written.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(
            f"{target} already exists", hint="choose a new file name; never replace a key file"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {target}: {exc.strerror}", field="file") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(pem)
    return ReceiptSigner(pem).key_id


def read_key_file(path: str | Path) -> str:
    """The PEM text of the Ed25519 signing key in ``path``, checked."""
    source = Path(path)
    try:
        pem = source.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InvalidInput(
            f"signing key file {source} does not exist",
            hint="create one with `consentry receipt keygen FILE`, or point "
            "CONSENTRY_SIGNING_KEY_FILE at the store's key",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read signing key file {source}: {exc}") from None
    ReceiptSigner(pem, source=str(source))  # fails clearly unless it is an Ed25519 key
    return pem


def key_id(public_key_b64: str) -> str:
    """The short id of a public key, as receipts name it (``signature.kid``)."""
    return hashlib.sha256(_unb64(public_key_b64)).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ReceiptSigner:
    """Signs and verifies receipts with the store's Ed25519 key."""

    def __init__(self, private_pem: str, *, source: str = "the store") -> None:
        try:
            key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise InvalidInput(
                f"the signing key in {source} is not an unencrypted PEM private key",
                hint="create one with `consentry receipt keygen FILE`",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(
                f"the signing key in {source} is not an Ed25519 key",
                hint="create one with `consentry receipt keygen FILE`",
            )
        self._key = key
        self.public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(_b64(self.public_raw))

    def public_key_b64(self) -> str:
        return _b64(self.public_raw)

    def sign(self, receipt: Mapping[str, Any]) -> dict[str, Any]:
        """The receipt with a detached Ed25519 signature over its canonical JSON."""
        signature = self._key.sign(canonical_json(dict(receipt)))
        return {
            "receipt": dict(receipt),
            "signature": {
                "alg": "EdDSA",
                "crv": "Ed25519",
                "kid": self.key_id,
                "public_key": self.public_key_b64(),
                "value": _b64(signature),
            },
        }


def verify_signed(document: Mapping[str, Any], trusted_public_key_b64: str | None = None) -> None:
    """Raise :class:`SignatureInvalid` unless ``document`` is a receipt signed by the key.

    With ``trusted_public_key_b64`` the signature must come from that key (the store's), not
    merely from the key the document carries.
    """
    try:
        receipt = document["receipt"]
        signature = document["signature"]
        public = signature["public_key"]
        value = _unb64(signature["value"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(
            "not a consentry receipt: expected 'receipt' and 'signature' objects",
            hint="use the JSON that `consentry receipt show` prints",
        ) from None
    if trusted_public_key_b64 is not None and public != trusted_public_key_b64:
        raise SignatureInvalid(
            "the receipt was signed by a key this store does not hold",
            hint="verify it against the store that issued it",
            kid=signature.get("kid"),
        )
    try:
        Ed25519PublicKey.from_public_bytes(_unb64(public)).verify(value, canonical_json(receipt))
    except (InvalidSignature, ValueError):
        raise SignatureInvalid(
            "the receipt's signature does not match its content: it was altered after signing",
            hint="ask the issuer for a fresh copy with `consentry receipt show`",
        ) from None


def build_receipt(event: Event, controller: Mapping[str, str]) -> dict[str, Any]:
    """The receipt fields for one consent event."""
    if event.kind not in CONSENT_KINDS:
        raise InvalidInput(
            f"event {event.id} is a {event.kind} event; only consent events have receipts",
            hint="pick a consent.given, consent.refused or consent.withdrawn event",
        )
    purpose = event.purpose or ""
    vocab: dict[str, str] = {}
    for key in reversed(ancestors(purpose)):
        vocab.update(PURPOSE_VOCABULARY.get(key, {}))
    # the do-not-train vocabularies come from their one, draft-versioned table
    from ..signals.vocab import purpose_terms

    vocab.update(purpose_terms(purpose))
    status = CONSENT_STATUS[event.kind]
    return {
        "schema": RECEIPT_SCHEMA,
        "schema_basis": ["ISO/IEC TS 27560:2023", "Kantara Consent Receipt v1.1"],
        "record_id": event.id,
        "consent_timestamp": event.at_text,
        "collection_method": event.method or "unspecified",
        "jurisdiction": controller.get("jurisdiction"),
        "pii_principal_id": event.subject,
        "pii_controllers": [
            {
                "name": controller.get("name"),
                "contact": controller.get("contact"),
                "url": controller.get("url"),
            }
        ],
        "notice": {
            "policy_version": event.policy_version,
            "notice_version": event.notice_version,
            "language": event.language,
        },
        "purposes": [
            {
                "purpose": purpose,
                "vocabulary": vocab,
                "consent_type": "explicit",
                "pii_categories": list(event.categories) or ["*"],
                "status": status,
            }
        ],
        "status": status,
        "actor": event.actor,
        "ledger": {"seq": event.seq, "hash": event.hash, "prev_hash": event.prev_hash},
    }
