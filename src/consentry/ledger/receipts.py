"""Signed consent receipts (ISO/IEC TS 27560 / Kantara Consent Receipt fields, Ed25519)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..canonical import canonical_json
from ..errors import InvalidInput, SignatureInvalid
from ..taxonomy import PURPOSE_VOCABULARY, ancestors
from .events import CONSENT_KINDS, CONSENT_STATUS, Event

if TYPE_CHECKING:
    from ..policy.model import Policy

#: Version 2: signed as a compact JWS, the notice names the digest of its text and the
#: ``notice.served`` event. Version 1 receipts (detached ``signature``) still verify.
RECEIPT_SCHEMA = "https://consentry.dev/schemas/consent-receipt/2"


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


#: ``typ`` of a receipt's JWS header (RFC 7515 §4.1.9: a media type without ``application/``).
JWS_TYPE = "consent-receipt+json"


def jwk(public_key_b64: str, *, retired: bool = False) -> dict[str, Any]:
    """The public key as an RFC 8037 JWK (``OKP``/``Ed25519``), named by its receipt ``kid``.
    ``retired``: a key that signed earlier receipts and signs no new ones (kept so that they
    still verify; ``status`` is an extra member JOSE libraries ignore)."""
    key = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": public_key_b64,
        "kid": key_id(public_key_b64),
        "alg": "EdDSA",
        "use": "sig",
    }
    if retired:
        key["status"] = "retired"
    return key


def jwks(public_keys: Sequence[str]) -> dict[str, Any]:
    """A JWKS of receipt keys, oldest first; every key but the last is retired."""
    last = len(public_keys) - 1
    return {"keys": [jwk(k, retired=i < last) for i, k in enumerate(public_keys)]}


def keys_of_jwks(data: Mapping[str, Any]) -> list[str]:
    """The Ed25519 public keys (base64url) of a JWKS, refusing anything else in it."""
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise InvalidInput("not a JWKS: expected a 'keys' list", hint="use /.well-known/jwks.json")
    out = []
    for item in keys:
        okp = isinstance(item, Mapping) and (item.get("kty"), item.get("crv")) == ("OKP", "Ed25519")
        if not okp:
            raise InvalidInput(
                "the JWKS holds a key that is not an Ed25519 (OKP) key",
                hint="receipt keys are Ed25519 (RFC 8037)",
            )
        out.append(str(item.get("x")))
    return out


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
        """The receipt as a compact JWS (RFC 7515, ``EdDSA`` per RFC 8037) over its canonical
        JSON, beside the decoded record for people to read. Any JOSE library verifies the
        ``jws`` with the store's JWKS; the ``receipt`` member must decode from it."""
        import jwt  # here, not at import: PyJWT imports http.client (a script's own http.py
        # beside it, as in benchmarks/, would shadow it), and most commands never sign

        record = dict(receipt)
        token = jwt.PyJWS().encode(
            canonical_json(record),
            self._key,
            algorithm="EdDSA",
            headers={"kid": self.key_id, "typ": JWS_TYPE},
        )
        return {"receipt": record, "jws": token}

    def sign_detached(self, receipt: Mapping[str, Any]) -> dict[str, Any]:
        """The receipt format before JWS (``signature`` beside ``receipt``): still verified,
        no longer issued; kept to make such receipts in tests."""
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


def _trusted_list(trusted: str | Sequence[str] | None) -> list[str] | None:
    if trusted is None:
        return None
    return [trusted] if isinstance(trusted, str) else list(trusted)


def verify_signed(
    document: Mapping[str, Any], trusted_public_key_b64: str | Sequence[str] | None = None
) -> str:
    """Raise :class:`SignatureInvalid` unless ``document`` is a receipt signed by one of the
    trusted keys; return the key that signed it (base64url).

    A receipt is signed either as a compact JWS (``jws``: receipts issued now) or with a
    detached signature (``signature``: receipts issued before JWS). ``trusted_public_key_b64``
    (one key or several: the store's current and retired keys) must hold the signer's key;
    without it only a detached signature can be checked, against the key it carries.
    """
    trusted = _trusted_list(trusted_public_key_b64)
    if not isinstance(document, Mapping) or not isinstance(document.get("receipt"), Mapping):
        raise _not_a_receipt()
    if isinstance(document.get("jws"), str):
        return _verify_jws(document, trusted)
    try:
        receipt = document["receipt"]
        signature = document["signature"]
        public = signature["public_key"]
        value = _unb64(signature["value"])
    except (KeyError, TypeError, ValueError):
        raise _not_a_receipt() from None
    if trusted is not None and public not in trusted:
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
    return str(public)


def _not_a_receipt() -> InvalidInput:
    return InvalidInput(
        "not a consentry receipt: expected a 'receipt' object and its 'jws' (or, before JWS, "
        "its 'signature')",
        hint="use the JSON that `consentry receipt show` prints",
    )


def _verify_jws(document: Mapping[str, Any], trusted: list[str] | None) -> str:
    import jwt  # see ReceiptSigner.sign

    token = str(document["jws"])
    if trusted is None:
        raise InvalidInput(
            "a JWS receipt is verified against the issuer's keys",
            hint="pass the store's JWKS (`consentry receipt jwks`) or public keys",
        )
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise SignatureInvalid("the receipt's jws is not a compact JWS") from None
    by_kid = {key_id(k): k for k in trusted}
    public = by_kid.get(str(header.get("kid")))
    if public is None or header.get("alg") != "EdDSA":
        raise SignatureInvalid(
            "the receipt was signed by a key this store does not hold",
            hint="verify it against the store that issued it (its JWKS lists every key it "
            "signed with)",
            kid=header.get("kid"),
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(_unb64(public))
        payload = jwt.PyJWS().decode_complete(token, key, algorithms=["EdDSA"])["payload"]
        signed = json.loads(payload)
    except (jwt.InvalidTokenError, ValueError):
        raise SignatureInvalid(
            "the receipt's signature does not match its content: it was altered after signing",
            hint="ask the issuer for a fresh copy with `consentry receipt show`",
        ) from None
    if signed != document.get("receipt"):
        raise SignatureInvalid(
            "the receipt's readable record is not the one its jws signs: it was altered",
            hint="trust the jws payload; ask the issuer for a fresh copy",
        )
    return public


def notice_block(event: Event, policy: Policy | None, served: Event | None) -> dict[str, Any]:
    """What the receipt says of the notice: its version and language, the SHA-256 of its exact
    text in that language (None when the policy has no notice in it), and the
    ``notice.served`` event the consent followed (None: no record that it was shown)."""
    notice = policy.notices.get(event.language or "") if policy is not None else None
    return {
        "policy_version": event.policy_version,
        "notice_version": event.notice_version,
        "language": event.language,
        "notice_sha256": notice.digest() if notice is not None else None,
        "served_event": None
        if served is None
        else {"id": served.id, "seq": served.seq, "at": served.at_text, "hash": served.hash},
    }


def build_receipt(
    event: Event,
    controller: Mapping[str, str],
    *,
    policy: Policy | None = None,
    served: Event | None = None,
) -> dict[str, Any]:
    """The receipt fields for one consent event.

    ``policy`` (the version the notice names) adds the notice's digest, the legal basis, the
    recipients and the validity; ``served`` is the ``notice.served`` event it followed."""
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
        "notice": notice_block(event, policy, served),
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
