"""Receipts other people's tools accept: a compact JWS any JOSE library verifies with the
store's JWKS alone, key rotation, receipts from before JWS, and the DPV-27560 record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from consentry import Store
from consentry.cli import app as cli
from consentry.errors import InvalidInput, PolicyError, SignatureInvalid
from consentry.ledger.dpv import MANDATORY, PROFILE, purpose_term
from consentry.ledger.evidence import load_pins, verify_receipt_offline
from consentry.ledger.receipts import ReceiptSigner, new_private_key_pem, write_key_file
from consentry.policy import parse_policies
from support import MEETINGS, MUSIC, FakeClock

OLD = Path(__file__).parent / "data" / "receipt-v1"


def _pyjwt_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a relying party does with PyJWT and nothing of consentry: pick the key the JWS
    header names from the JWKS, verify, decode."""
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in keys.keys if k.key_id == kid]
    return jwt.decode(token, key=key, algorithms=["EdDSA"])


def test_any_jose_library_verifies_a_receipt_with_the_jwks_alone(make_store: Any) -> None:
    store = make_store(MEETINGS)
    event = store.give_consent("u1", "ai.training", ["content.chat"])
    doc = store.receipt(event.id)
    header = jwt.get_unverified_header(doc["jws"])
    assert header == {"alg": "EdDSA", "kid": store.signer().key_id, "typ": "consent-receipt+json"}
    jwks = json.loads(json.dumps(store.jwks()))  # as published: plain JSON
    assert _pyjwt_verify(doc["jws"], jwks) == doc["receipt"]  # the readable record is signed
    (key,) = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "status" not in key
    assert "inclusion" in doc["evidence"]["proof"]  # the inclusion proof travels with it


def test_a_tampered_jws_or_record_is_refused(make_store: Any) -> None:
    store = make_store(MEETINGS)
    doc = store.receipt(store.give_consent("u1", "ai.training", ["content.chat"]).id)
    readable = copy.deepcopy(doc)
    readable["receipt"]["status"] = "withdrawn"  # the record people read, not the signed one
    with pytest.raises(SignatureInvalid, match="not the one its jws signs"):
        store.verify_receipt(readable)
    head, payload, signature = doc["jws"].split(".")
    forged = copy.deepcopy(doc)
    forged["jws"] = f"{head}.{payload[:-4]}AAAA.{signature}"
    with pytest.raises(SignatureInvalid, match="altered"):
        store.verify_receipt(forged)
    with pytest.raises(jwt.InvalidSignatureError):
        _pyjwt_verify(forged["jws"], store.jwks())
    other = ReceiptSigner(new_private_key_pem())
    with pytest.raises(SignatureInvalid, match="does not hold"):
        store.verify_receipt(other.sign(doc["receipt"]) | {"evidence": doc["evidence"]})


def test_rotation_signs_new_receipts_with_the_new_key_and_old_ones_still_verify(
    make_store: Any, clock: FakeClock
) -> None:
    store = make_store(MEETINGS)
    old_event = store.give_consent("u1", "ai.training", ["content.chat"])
    old_doc = store.receipt(old_event.id)
    old_kid = store.signer().key_id
    new_kid = store.rotate_receipt_key()
    assert new_kid != old_kid and store.signer().key_id == new_kid
    clock.advance(minutes=1)
    new_doc = store.receipt(store.give_consent("u2", "ai.training", ["content.chat"]).id)
    assert jwt.get_unverified_header(new_doc["jws"])["kid"] == new_kid
    jwks = store.jwks()
    assert [(k["kid"], k.get("status")) for k in jwks["keys"]] == [
        (old_kid, "retired"),
        (new_kid, None),
    ]
    for doc in (old_doc, new_doc):
        assert _pyjwt_verify(doc["jws"], jwks) == doc["receipt"]
        assert store.verify_receipt(doc).receipt_key_id in (old_kid, new_kid)
    # Another process opening the store agrees, and so does an offline check with the pins.
    with Store(store.url) as reopened:
        assert reopened.public_key_b64() == store.public_key_b64()
        assert reopened.verify_receipt(old_doc).receipt_key_id == old_kid
        pins = reopened.public_keys()
    assert pins["receipt_public_keys"][-1] == pins["receipt_public_key"]
    check = verify_receipt_offline(
        old_doc, receipt_key=pins["receipt_public_keys"], log_key=pins["log_verifier_key"]
    )
    assert check.receipt_key_id == old_kid
    result = store.verify()  # the rotation is a keys.registered event: the ledger agrees
    assert result.ok, result.problem
    assert store.audit_state().ok


def test_rotation_to_a_key_file(make_store: Any, tmp_path: Path) -> None:
    first = tmp_path / "first.pem"
    write_key_file(first)
    store = make_store(MEETINGS, signing_key_file=first)
    doc = store.receipt(store.give_consent("u1", "ai.training", ["content.chat"]).id)
    with pytest.raises(InvalidInput, match="give the new key's file"):
        store.rotate_receipt_key()
    with pytest.raises(InvalidInput, match="signed receipts of this store before"):
        store.rotate_receipt_key(first)
    second = tmp_path / "second.pem"
    kid = write_key_file(second)
    assert store.rotate_receipt_key(second) == kid
    assert store.verify_receipt(doc).record_id == doc["receipt"]["record_id"]
    assert store.verify().ok
    # Opened with the old file, the store refuses to sign: that key is retired.
    with Store(store.url, signing_key_file=first) as stale, pytest.raises(InvalidInput):
        stale.receipt(doc["receipt"]["record_id"])


def test_a_receipt_from_before_jws_still_verifies() -> None:
    """tests/data/receipt-v1 was made by consentry before this change (commit 1ed2047): a
    detached `signature`, no notice digest. It verifies with the keys pinned then, and the CLI
    takes it as it always did."""
    doc = json.loads((OLD / "receipt.json").read_text())
    assert "signature" in doc and "jws" not in doc
    assert doc["receipt"]["schema"].endswith("/consent-receipt/1")
    receipt_keys, log_key = load_pins([str(OLD / "public-keys.json")])
    assert receipt_keys is not None and log_key is not None
    check = verify_receipt_offline(doc, receipt_key=receipt_keys, log_key=log_key)
    assert check.record_id == doc["receipt"]["record_id"] and check.notice_problem is None
    altered = copy.deepcopy(doc)
    altered["receipt"]["status"] = "withdrawn"
    with pytest.raises(SignatureInvalid, match="altered"):
        verify_receipt_offline(altered, receipt_key=receipt_keys, log_key=log_key)
    result = CliRunner().invoke(
        cli,
        [
            "receipt",
            "verify",
            str(OLD / "receipt.json"),
            "--public-key",
            str(OLD / "public-keys.json"),
        ],
    )
    assert result.exit_code == 0 and "valid" in result.output


def test_a_store_still_verifies_the_detached_receipts_it_issued(make_store: Any) -> None:
    store = make_store(MEETINGS)
    event = store.give_consent("u1", "ai.training", ["content.chat"])
    new = store.receipt(event.id)
    legacy = store.signer().sign_detached(new["receipt"]) | {"evidence": new["evidence"]}
    assert store.verify_receipt(legacy).record_id == event.id
    store.rotate_receipt_key()
    assert store.verify_receipt(legacy).record_id == event.id  # its key is retired, not gone


def test_the_jwks_pins_a_receipt_on_the_command_line(make_store: Any, tmp_path: Path) -> None:
    store = make_store(MEETINGS)
    event = store.give_consent("u1", "ai.training", ["content.chat"])
    runner = CliRunner()
    store.rotate_receipt_key()
    result = runner.invoke(cli, ["--db", store.url, "receipt", "jwks"])
    assert result.exit_code == 0
    jwks = tmp_path / "jwks.json"
    jwks.write_text(result.output)
    assert len(json.loads(result.output)["keys"]) == 2
    receipt = tmp_path / "r.json"
    result = runner.invoke(cli, ["--db", store.url, "receipt", "show", event.id])
    receipt.write_text(result.output)
    vkey = store.public_keys()["log_verifier_key"]
    result = runner.invoke(
        cli, ["receipt", "verify", str(receipt), "--public-key", str(jwks), "--public-key", vkey]
    )
    assert result.exit_code == 0 and "valid" in result.output, result.output
    result = runner.invoke(cli, ["--db", store.url, "receipt", "rotate-key"])
    assert result.exit_code == 0 and "new receipts are signed with key" in result.output
    assert len(store.jwks()["keys"]) == 3


# -- the DPV-27560 record ----------------------------------------------------------------------


def test_the_dpv_record_fills_every_mandatory_field(make_store: Any) -> None:
    store = make_store(MEETINGS)
    served, _ = store.serve_notice("u1", language="fr")
    event = store.give_consent("u1", "ai.training", ["content.chat"], language="fr")
    record = store.receipt_dpv(event.id, rights_url="https://meetings.example.com/me")
    for name in MANDATORY:
        assert record.get(name) not in (None, "", {}), name
    assert record["dct:conformsTo"] == {"@id": PROFILE}
    assert record["@type"] == "dpv:ConsentRecord" and record["dct:identifier"] == event.id
    controller = record["dpv:hasDataController"]
    assert controller["foaf:name"] == "Example Meetings Inc."
    assert controller["dpv:hasContact"] == "privacy@meetings.example.com"
    assert record["dpv:hasJurisdiction"] == {"@id": "loc:US"}
    assert record["dpv:hasPurpose"] == [{"@id": "ai:ModelTraining"}]
    assert record["dpv:hasLegalBasis"] == [{"@id": "dpv:Consent"}]  # US: no GDPR article
    assert record["dpv:hasPersonalData"] == [{"@id": "category:content.chat"}]
    # The August terms: nobody but the controller receives training data - said outright.
    assert record["dpv:hasRecipient"] == []
    assert record["dpv:hasStorageCondition"][0]["time:hasDuration"] == "P365D"
    rights = record["dpv:hasRight"]
    assert {r["@id"] for r in rights} == {"eu-gdpr:A15", "eu-gdpr:A7-3"}
    assert rights[0]["dpv:isExercisedAt"]["dpv:hasLocation"] == "https://meetings.example.com/me"
    assert record["cr:withdrawalMethod"]["dpv:hasLocation"] == "https://meetings.example.com/me"
    assert record["dpv:hasDuration"] == {"@type": "dpv:UntilWithdrawalDuration"}
    notice = record["dpv:hasNotice"]
    assert notice["dct:language"] == "fr" and notice["dct:hasVersion"] == "2023-08"
    assert notice["cr:sha256"] == store.policy("2023-08").notices["fr"].digest()
    assert notice["cr:servedEvent"] == served.id
    assert record["cr:eventType"]["dct:title"] == "consent.given"
    assert record["dpv:hasConsentStatus"] == {"@id": "dpv:ConsentGiven"}
    assert record["cr:validForProcessing"] is True
    withdrawn = store.withdraw_consent("u1", "ai.training", ["content.chat"], language="fr")
    later = store.receipt_dpv(withdrawn.id)
    assert later["dpv:hasConsentStatus"] == {"@id": "dpv:ConsentWithdrawn"}
    assert later["cr:validForProcessing"] is False
    # Without a URL given, the policy's rights_url says where rights are exercised.
    assert later["dpv:hasRight"][0]["dpv:isExercisedAt"]["dpv:hasLocation"].endswith("/me")


def test_the_dpv_record_names_third_parties_gdpr_articles_and_validity(
    make_store: Any, clock: FakeClock, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    clock.set(datetime(2023, 7, 28, tzinfo=UTC))  # the July meetings terms
    store = make_store(MEETINGS)
    event = store.give_consent("u1", "ai.training", ["content.chat"], notice_version="2023-07")
    record = store.receipt_dpv(event.id)
    (partner,) = record["dpv:hasRecipient"]
    assert partner["@type"] == "dpv:ThirdParty" and "licensed" in partner["foaf:name"]
    music = make_store(MUSIC)
    clock.set(datetime(2024, 6, 1, tzinfo=UTC))
    given = music.give_consent("u1", "ai.training.generative", ["content.audio"])
    record = music.receipt_dpv(given.id)
    assert record["dpv:hasJurisdiction"] == {"@id": "loc:DE"}
    assert {"@id": "eu-gdpr:A6-1-a"} in record["dpv:hasLegalBasis"]  # DE applies the GDPR
    assert record["dpv:hasRecipient"] == []
    assert record["dpv:hasPurpose"] == [{"@id": "ai:ModelTraining"}]
    # A purpose with no DPV term of its own keeps consentry's IRI, typed with the nearest DPV
    # term above it; one with none above it is a plain dpv:Purpose.
    assert purpose_term("ai.training.feature.fraud_prevention") == {
        "@id": "purpose:ai.training.feature.fraud_prevention",
        "@type": "ai:ModelTraining",
    }
    assert purpose_term("ai.feature.chat_compose") == {
        "@id": "purpose:ai.feature.chat_compose",
        "@type": "dpv:Purpose",
    }


def test_receipt_show_format_dpv(make_store: Any) -> None:
    store = make_store(MEETINGS)
    event = store.give_consent("u1", "ai.training", ["content.chat"])
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["--db", store.url, "receipt", "show", event.id, "--format", "dpv"],
        env={"CONSENTRY_PUBLIC_URL": "https://consent.example.org/"},
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["dct:conformsTo"] == {"@id": PROFILE}
    where = record["dpv:hasRight"][0]["dpv:isExercisedAt"]["dpv:hasLocation"]
    assert where == "https://consent.example.org/me"
    result = runner.invoke(cli, ["--db", store.url, "receipt", "show", event.id, "--format", "x"])
    assert result.exit_code == 2 and "unknown format" in result.output


# -- the policy fields the record needs ----------------------------------------------------------


def _policy(**extra: str) -> str:
    base = {
        "controller": "controller: {name: X, contact: privacy@x.example, jurisdiction: EU}",
        "recipients": "",
        "retention": "",
    }
    base.update(extra)
    return (
        "id: p\nversion: v1\neffective: 2024-01-01T00:00:00Z\nlanguage: en\n"
        + "\n".join(v for v in base.values() if v)
        + "\nrules:\n  - {id: train, purposes: [ai.training], categories: [content], "
        "basis: consent}\n  - {id: nope, purposes: [ai.training.third_party], "
        "categories: [content], basis: prohibited}\n"
    )


def test_policy_recipients_and_retention_are_validated() -> None:
    (policy,) = parse_policies(
        _policy(
            recipients="recipients:\n  - {name: Host, role: processor}\n"
            "  - {name: Streams, role: third_party, purposes: [service.delivery], "
            "url: 'https://stream.example'}",
            retention="retention: {content: P30D, content.audio: P7D}",
        )
    )
    assert [r.name for r in policy.recipients_for("service.delivery") or ()] == ["Host", "Streams"]
    assert [r.name for r in policy.recipients_for("ai.training") or ()] == ["Host"]
    assert policy.retention_for("content.audio").days == 7
    assert policy.retention_for("content.chat").days == 30
    assert policy.retention_for("service_data") is None
    (silent,) = parse_policies(_policy())
    assert silent.recipients is None and silent.recipients_for("ai.training") is None
    for extra, message in (
        ({"recipients": "recipients: [{name: A, role: seller}]"}, "unknown role"),
        ({"recipients": "recipients: [{role: processor}]"}, "missing required key 'name'"),
        ({"recipients": "recipients: [{name: A, role: processor, url: ftp://a}]"}, "URL"),
        ({"recipients": "recipients: {name: A}"}, "expected a list"),
        (
            {"recipients": "recipients: [{name: A, role: third_party, purposes: [ai]}]"},
            "prohibits ai.training.third_party",
        ),
        ({"recipients": "recipients: [{name: A, role: third_party}]"}, "every purpose"),
        ({"recipients": "recipients: [{name: A, role: processor, purpose: [ai]}]"}, "'purposes'"),
        ({"retention": "retention: {content: forever}"}, "ISO 8601 duration"),
        ({"retention": "retention: {content: P0D}"}, "must be positive"),
        ({"retention": "retention: {contents: P1D}"}, "content"),
        ({"controller": "controller: {name: X, jurisdiction: Europe}"}, "country code"),
        ({"controller": "controller: {name: X, contact: call us}"}, "e-mail address"),
        ({"controller": "controller: {name: X, rights_url: /me}"}, r"http\(s\) URL"),
    ):
        with pytest.raises(PolicyError, match=message):
            parse_policies(_policy(**extra))


def test_the_example_policies_declare_what_the_record_needs() -> None:
    from consentry.policy import load_policies

    for path in (MEETINGS, MUSIC):
        for policy in load_policies(path):
            assert policy.recipients is not None, (path, policy.version)
            assert policy.retention and policy.controller.get("rights_url")
            assert {"name", "contact", "url", "jurisdiction"} <= set(policy.controller)


def test_notice_digests_differ_by_language_and_wording() -> None:
    from consentry.policy import load_policies

    july, august = load_policies(MEETINGS)
    digests = {p.notices[lang].digest() for p in (july, august) for lang in ("en", "id", "fr")}
    assert len(digests) == 6
