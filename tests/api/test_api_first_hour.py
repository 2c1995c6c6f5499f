"""The same refusals in every skin: `as_of` with no answer, and objections the policy ignores,
refused by the library (Store) and so alike by the API (problem details, 422) and the
preference centre (the CLI's are in tests/test_cli_commands.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

from api_support import MUSIC, Api, sign
from fastapi.testclient import TestClient


def test_decisions_refuse_an_as_of_with_no_answer(api: Api) -> None:
    body = {"subject": "bob", "purpose": "ai.training", "category": "content.audio"}
    for as_of, why in (
        ("2020-01-01T00:00:00Z", "before the first policy version took effect"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("soon", "is not a time consentry understands"),
    ):
        r = api.client.post("/v1/decisions", json={**body, "as_of": as_of}, headers=api.service)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert why in problem["detail"] and problem["hint"]
        if why != "is not a time consentry understands":
            assert problem["type"].endswith("/as-of-out-of-range")
    # The other forms work as in the CLI: the clock is the test's, the store made at it.
    r = api.client.post("/v1/decisions", json={**body, "as_of": "event:3"}, headers=api.service)
    assert r.status_code == 200 and r.json()["reason"] == "no_consent"
    r = api.client.post("/v1/decisions", json={**body, "as_of": "-0s"}, headers=api.service)
    assert r.status_code == 200, r.text
    r = api.client.get(
        "/v1/subjects/bob", params={"as_of": "2020-01-01T00:00:00Z"}, headers=api.bob
    )
    assert r.status_code == 422 and r.json()["type"].endswith("/as-of-out-of-range")


def test_the_api_refuses_an_objection_the_policy_ignores(api: Api) -> None:
    body = {"purpose": "improvement", "categories": ["service_data"]}
    r = api.client.post("/v1/subjects/bob/objections", json=body, headers=api.bob)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("/objection-ignored")
    assert "you cannot object to this individually" in problem["detail"]
    assert problem["rule"] == "improve-with-service-data"
    assert not list(api.store.ledger.events(kinds=["objection.raised"]))  # type: ignore[list-item]


def test_the_preference_centre_refuses_it_too(make_api: Callable[..., Api]) -> None:
    api = make_api()
    bob = TestClient(api.client.app, raise_server_exceptions=False)
    assert (
        bob.get(
            "/login", params={"token": sign("bob", "subject")}, follow_redirects=False
        ).status_code
        == 303
    )
    html = bob.get("/me").text
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token
    r = bob.post(
        "/me/choices",
        data={"csrf": token[1], "rule": "improve-with-service-data", "action": "object"},
        follow_redirects=False,
    )
    assert r.status_code == 422, r.text
    assert not list(api.store.ledger.events(kinds=["objection.raised"]))  # type: ignore[list-item]
    # Where the policy lets people object, the page records it (the Store's check passes).
    music = make_api(policy=MUSIC, populate_store=False)
    page = TestClient(music.client.app, raise_server_exceptions=False)
    page.get("/login", params={"token": sign("bob", "subject")}, follow_redirects=False)
    html = page.get("/me").text
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token
    page.post("/me/choices", data={"csrf": token[1], "rule": "improve-product", "action": "object"})
    assert music.store.check("bob", "improvement", "service_data.usage").reason == "objection"
