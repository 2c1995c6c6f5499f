"""The published contract is usable as is: openapi-python-client generates a client from
``/openapi.json`` (into tmp_path, no network), and that client - not hand-written requests -
records a notice and a consent, downloads the receipt, verifies it with the JWKS it fetches,
and asks for a decision. A schema that disagreed with the server (a required field the server
refuses, a response the model cannot parse) fails here."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from api_support import Api, sign
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow
PACKAGE = "consentry_generated_client"


@pytest.fixture
def client_package(api: Api, tmp_path: Path) -> Iterator[ModuleType]:
    from openapi_python_client import generate
    from openapi_python_client.config import Config, ConfigFile, MetaType

    spec = api.client.get("/openapi.json")
    assert spec.status_code == 200
    source = tmp_path / "openapi.json"
    source.write_text(spec.text, encoding="utf-8")
    config = Config.from_sources(
        # No post hooks: the generator would run ruff over the code (nothing to fetch, but
        # nothing this test needs either).
        ConfigFile(post_hooks=[], package_name_override=PACKAGE, project_name_override=PACKAGE),
        MetaType.NONE,
        source,
        "utf-8",
        True,
        tmp_path / "gen" / PACKAGE,
    )
    problems = generate(config=config)
    assert not problems, [f"{p.header}: {p.detail}" for p in problems]
    sys.path.insert(0, str(tmp_path / "gen"))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path / "gen"))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _client(package: ModuleType, api: Api, token: str) -> Any:
    """The generated client, its requests carried to the app in process (no socket)."""
    transport = TestClient(
        api.client.app, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
    )
    client = package.AuthenticatedClient(base_url="http://testserver", token=token)
    return client.set_httpx_client(transport)


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_drives_notice_consent_receipt_and_decision(
    api: Api, client_package: ModuleType
) -> None:
    bob = _client(client_package, api, sign("bob", "subject"))
    models = _module("models")

    notice = _module("api.subjects.record_notice_v1_subjects_subject_notices_post")
    served = notice.sync_detailed(
        "bob",
        client=bob,
        body=models.NoticeServedIn(notice_version="2023-08", language="fr", method="app-dialog"),
    )
    assert served.status_code == 201, served.content
    assert served.parsed.recorded is True and served.parsed.event.kind == "notice.served"

    consents = _module("api.subjects.record_consent_v1_subjects_subject_consents_post")
    given = consents.sync(
        "bob",
        client=bob,
        body=models.ConsentIn(
            action=models.ConsentInAction.GIVE,
            purpose="ai.training",
            categories=["content.audio"],
            language="fr",
        ),
        idempotency_key="consent-1",
    )
    assert isinstance(given, models.EventOut), given
    assert given.kind == "consent.given"
    assert given.payload.to_dict() == {"notice_served": served.parsed.event.id}

    receipts = _module("api.receipts.get_receipt_v1_receipts_event_id_get")
    receipt = receipts.sync(given.id, client=bob)
    assert isinstance(receipt, models.ReceiptOut), receipt
    record = receipt.receipt.to_dict()
    assert record["notice"]["served_event"]["id"] == served.parsed.event.id
    jwks_call = _module("api.receipts.jwks_well_known_jwks_json_get")
    jwks = jwks_call.sync(client=bob)
    keys = jwt.PyJWKSet.from_dict(json.loads(json.dumps(jwks.to_dict())))
    (key,) = keys.keys
    assert jwt.decode(receipt.jws, key=key, algorithms=["EdDSA"]) == record

    verify = _module("api.receipts.verify_receipt_v1_receipts_verify_post")
    service = _client(client_package, api, api.service_key)
    checked = verify.sync(client=service, body=receipt)
    assert isinstance(checked, models.ReceiptCheckOut), checked
    assert checked.valid is True and checked.notice_problem is None

    decide = _module("api.decisions.decide_v1_decisions_post")
    decision = decide.sync(
        client=service,
        body=models.DecisionIn(subject="bob", purpose="ai.training", category="content.audio"),
    )
    assert isinstance(decision, models.DecisionOut), decision
    assert decision.allowed is True and decision.reason == "consent"
    # The schema's one-of rule is the server's: the generated model sends exactly one.
    both = decide.sync_detailed(
        client=service,
        body=models.DecisionIn(
            subject="bob", subjects=["bob"], purpose="ai.training", category="content.audio"
        ),
    )
    assert both.status_code == 422
