"""C2PA/CAWG training-mining read from a real signed file (needs the c2pa-python extra)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zlib
from pathlib import Path

import pytest

from consentry.signals import evaluate
from consentry.signals.c2pa import read_manifest

c2pa = pytest.importorskip("c2pa", reason="c2pa-python (the [c2pa] extra) not installed")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consentry tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _signer() -> object:
    """A signer with a throwaway test CA (C2PA requires a chain, not a self-signed cert)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1000)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2000)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None)
    return c2pa.Signer.from_info(info)


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = (1).to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _signed(entries: dict[str, dict[str, str]]) -> bytes:
    manifest = {
        "claim_generator_info": [{"name": "consentry-tests", "version": "1"}],
        "title": "art.png",
        "format": "image/png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
                        }
                    ]
                },
            },
            {"label": "cawg.training-mining", "data": {"entries": entries}},
        ],
    }
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest)).sign(_signer(), "image/png", io.BytesIO(_png()), out)
    return out.getvalue()


def test_signed_file_with_training_mining(tmp_path: Path) -> None:
    data = _signed(
        {"cawg.ai_training": {"use": "notAllowed"}, "cawg.ai_inference": {"use": "allowed"}}
    )
    path = tmp_path / "art.png"
    path.write_bytes(data)
    store = read_manifest(path)
    assert store is not None
    url = "https://example.com/art.png"
    d = evaluate(url, user_agent="ExampleBot", purpose="train-ai", c2pa=store)
    assert (d.decision, d.signal) == ("deny", "c2pa")
    assert d.evidence == "cawg.training-mining cawg.ai_training: use=notAllowed"
    d = evaluate(
        url, user_agent="ExampleBot", purpose="ai-use", c2pa=read_manifest(data, "image/png")
    )
    assert d.decision == "allow"


def test_constrained_denies() -> None:
    store = read_manifest(
        _signed({"cawg.ai_generative_training": {"use": "constrained", "constraint_info": "ask"}}),
        "image/png",
    )
    d = evaluate("https://e.com/a.png", user_agent="B", purpose="train-ai", c2pa=store)
    assert d.decision == "deny"
    assert "constrained (ask)" in d.evidence
