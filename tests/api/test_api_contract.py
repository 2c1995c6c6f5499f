"""The published contract says what the server does: one-of rules and header limits are in
the OpenAPI schema, 405s name the methods a path takes; and the endpoints of issue 18 (the
notice-served record, the JWKS, the DPV record) answer as documented."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import jwt
import pytest
from api_support import Api, sign
from hypothesis import given, settings
from hypothesis import strategies as st

GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content.audio"]}


def _validator(api: Api, name: str) -> Any:
    spec = api.client.get("/openapi.json").json()
    root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema_rs.validator_for(root)


@pytest.mark.parametrize(
    ("model", "path", "headers", "base", "one", "other"),
    [
        (
            "DecisionIn",
            "/v1/decisions",
            "service",
            {"purpose": "ai.training", "category": "content.audio"},
            ("subject", "bob"),
            ("subjects", ["bob"]),
        ),
        (
            "BatchIn",
            "/v1/decisions/batch",
            "service",
            {"purpose": "ai.training", "category": "content.audio"},
            ("subjects", ["bob"]),
            ("items", [{"subjects": ["bob"]}]),
        ),
    ],
)
def test_exactly_one_of_is_in_the_schema_and_enforced_alike(
    api: Api, model: str, path: str, headers: str, base: dict[str, Any], one: Any, other: Any
) -> None:
    schema = _validator(api, model)
    auth = getattr(api, headers)
    cases = [
        ({**base, one[0]: one[1]}, True),
        ({**base, other[0]: other[1]}, True),
        ({**base, one[0]: one[1], other[0]: other[1]}, False),  # both
        (dict(base), False),  # neither
        ({**base, one[0]: None, other[0]: other[1]}, False),  # an explicit null counts as sent
    ]
    for body, valid in cases:
        assert schema.is_valid(body) is valid, body
        status = api.client.post(path, json=body, headers=auth).status_code
        assert (status == 200) is valid, (body, status)


def test_the_idempotency_key_limits_are_in_the_schema(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/subjects/{subject}/consents"]["post"]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    options = header["schema"].get("anyOf", [header["schema"]])
    (limits,) = [s for s in options if s.get("type") == "string"]
    assert (limits["minLength"], limits["maxLength"], limits["pattern"]) == (1, 200, r"\S")
    for key, ok in (("k" * 200, True), ("k" * 201, False), ("   ", False)):
        headers = {**api.bob, "Idempotency-Key": key}
        r = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=headers)
        assert (r.status_code == 201) is ok, (len(key), r.text)
        if not ok:
            assert r.json()["field"] == "Idempotency-Key"


def test_405_names_every_method_the_path_takes(api: Api) -> None:
    # /v1/receipts/verify also matches /v1/receipts/{event_id} (GET): the literal path is
    # the resource the OpenAPI description lists, and it takes POST.
    r = api.client.options("/v1/receipts/verify", headers=api.service)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "POST" in r.json()["hint"]
    r = api.client.put("/v1/receipts/some-id", headers=api.bob)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = api.client.delete("/v1/decisions", headers=api.service)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_strict_booleans(api: Api) -> None:
    body = {"subject": "bob", "purpose": "ai.training", "category": "content.audio"}
    for value, status in ((True, 200), (1, 422), ("true", 422)):
        r = api.client.post("/v1/decisions", json={**body, "explain": value}, headers=api.service)
        assert r.status_code == status, (value, r.text)


# -- notices, JWKS, DPV ------------------------------------------------------------------------


def test_the_platform_records_a_notice_it_showed(api: Api) -> None:
    body = {"notice_version": "2023-08", "language": "id", "method": "signup-form"}
    first = api.client.post("/v1/subjects/bob/notices", json=body, headers=api.service)
    assert first.status_code == 201, first.text
    data = first.json()
    assert data["recorded"] is True and data["event"]["kind"] == "notice.served"
    assert data["notice_sha256"] == api.store.policy("2023-08").notices["id"].digest()
    again = api.client.post("/v1/subjects/bob/notices", json=body, headers=api.bob)
    assert again.status_code == 200 and again.json()["recorded"] is False
    assert again.json()["event"]["id"] == data["event"]["id"]
    # Another person may not say what bob was shown.
    r = api.client.post("/v1/subjects/bob/notices", json=body, headers=api.as_("carol"))
    assert r.status_code == 403
    r = api.client.post("/v1/subjects/bob/notices", json={"language": "de"}, headers=api.bob)
    assert r.status_code == 422 and "de" in r.json()["detail"]
    # The consent that follows names it; its receipt binds both.
    given = api.client.post(
        "/v1/subjects/bob/consents", json={**GIVE, "language": "id"}, headers=api.bob
    ).json()
    assert given["payload"] == {"notice_served": data["event"]["id"]}
    receipt = api.client.get(given["receipt_url"], headers=api.bob).json()
    assert receipt["receipt"]["notice"]["served_event"]["id"] == data["event"]["id"]
    checked = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service).json()
    assert checked["valid"] is True and checked["notice_problem"] is None


def test_a_consent_without_a_notice_is_flagged_on_verify(api: Api) -> None:
    given = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    receipt = api.client.get(given["receipt_url"], headers=api.bob).json()
    checked = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service).json()
    assert checked["valid"] is True and "no notice" in checked["notice_problem"]


def test_the_jwks_is_public_and_verifies_receipts(api: Api) -> None:
    given = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    old = api.client.get(given["receipt_url"], headers=api.bob).json()
    api.store.rotate_receipt_key()
    r = api.client.get("/.well-known/jwks.json")  # no credentials
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    jwks = r.json()
    assert [k.get("status") for k in jwks["keys"]] == ["retired", None]
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    kid = jwt.get_unverified_header(old["jws"])["kid"]
    assert jwt.decode(old["jws"], key=keys[kid], algorithms=["EdDSA"]) == old["receipt"]
    pins = api.client.get("/v1/ledger/public-keys").json()
    assert len(pins["receipt_public_keys"]) == 2
    # The old receipt still verifies through the API after the rotation.
    checked = api.client.post("/v1/receipts/verify", json=old, headers=api.service)
    assert checked.status_code == 200 and checked.json()["key_id"] == kid


def test_the_dpv_record_over_http(api: Api) -> None:
    given = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    r = api.client.get(f"{given['receipt_url']}?format=dpv", headers=api.bob)
    assert r.status_code == 200 and r.headers["content-type"] == "application/ld+json"
    record = r.json()
    assert record["dct:identifier"] == given["id"] and record["@type"] == "dpv:ConsentRecord"
    where = record["dpv:hasRight"][0]["dpv:isExercisedAt"]["dpv:hasLocation"]
    assert where == "http://testserver/me"
    r = api.client.get(f"{given['receipt_url']}?format=rdf", headers=api.bob)
    assert r.status_code == 422
    # Someone else's record answers as one that does not exist.
    r = api.client.get(f"{given['receipt_url']}?format=dpv", headers=api.as_("carol"))
    assert r.status_code == 404


def test_the_preference_centre_records_the_notice_it_shows(api: Api) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(api.client.app, raise_server_exceptions=False)
    r = client.get("/login", params={"token": sign("erin", "subject")}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/me?lang=fr").status_code == 200
    assert client.get("/me?lang=fr").status_code == 200  # a reload records nothing new
    served = [e for e in api.store.log(subject="erin") if str(e.kind) == "notice.served"]
    assert [(e.notice_version, e.language, e.method) for e in served] == [
        ("2023-08", "fr", "preference-centre")
    ]
    # A choice made on the page names it; the page's history lists choices, not notices.
    page = client.get("/me?lang=fr").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = client.post(
        "/me/choices?lang=fr",
        data={"csrf": csrf, "rule": "train-on-content", "action": "give"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    (given,) = [e for e in api.store.log(subject="erin") if str(e.kind) == "consent.given"]
    assert given.payload == {"notice_served": served[0].id} and given.language == "fr"
    assert "notice.served" not in client.get("/me?lang=fr").text


@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "subject": st.one_of(st.none(), st.just("bob"), st.just("")),
            "subjects": st.one_of(st.none(), st.just(["bob"]), st.just([])),
        },
    )
)
@settings(max_examples=60, deadline=None, database=None)
def test_the_schema_and_the_model_agree_on_one_of(data: dict[str, Any]) -> None:
    """Whatever combination of present, absent and null is sent, the published JSON Schema
    and the server's model accept exactly the same bodies."""
    from pydantic import ValidationError

    from consentry.api.models import DecisionIn

    body = {"purpose": "ai.training", "category": "content.audio", **data}
    schema = DecisionIn.model_json_schema(ref_template="#/$defs/{model}")
    try:
        DecisionIn.model_validate_json(json.dumps(body))
        accepted = True
    except ValidationError:
        accepted = False
    assert jsonschema_rs.validator_for(schema).is_valid(body) is accepted, body
