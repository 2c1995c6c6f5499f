"""Aliases over HTTP (issue 16 §3), on both backends: who may link an id to a person (the
platform's service and platform admins, no one else), and that a decision about the alias is
the person's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_support import Api, bearer, sign

GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
CHECK = {"subject": "guest@example.com", "purpose": "ai.training", "category": "content.audio"}


@pytest.fixture
def api(make_api: Callable[..., Api], backend_url: str) -> Api:
    made = make_api(backend_url)
    r = made.client.post("/v1/subjects/bob/consents", json=GIVE, headers=made.bob)
    assert r.status_code == 201, r.text
    return made


def decide(api: Api, body: dict[str, object] = CHECK) -> dict[str, object]:
    r = api.client.post("/v1/decisions", json=body, headers=api.service)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_service_links_a_guest_email_to_the_person(api: Api) -> None:
    before = decide(api)
    r = api.client.post(
        "/v1/subjects/bob/aliases", json={"alias": "guest@example.com"}, headers=api.service
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "subject.linked" and r.json()["subject"] == "bob"
    after = decide(api)
    assert after["allowed"] and after["reason"] == "consent", (before, after)
    # the person reads their ids under either one; the platform admin too
    for headers in (api.bob, api.as_("guest@example.com"), api.platform):
        r = api.client.get("/v1/subjects/guest@example.com/aliases", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["subject"] == "bob"
        assert [a["alias"] for a in r.json()["aliases"]] == ["guest@example.com"]
    r = api.client.delete("/v1/subjects/bob/aliases/guest@example.com", headers=api.platform)
    assert r.status_code == 200, r.text
    assert decide(api)["reason"] == before["reason"]
    assert api.store.verify().ok


@pytest.mark.parametrize(
    "who",
    [
        "the person themself",
        "another person",
        "an account admin of the person's account",
        "a key named like the platform admin",
    ],
)
def test_no_one_but_the_platform_may_link(api: Api, who: str) -> None:
    # A person who could link an id to themself would take over its choices; one who could
    # link themself to another would pull the other's refusals onto their data (or theirs
    # onto the other's). An account admin governs an account, not who a person is.
    headers = {
        "the person themself": api.bob,
        "another person": api.as_("mallory"),
        "an account admin of the person's account": api.alice,
        "a key named like the platform admin": bearer(
            api_key(api, "platform_admin", role="account_admin")
        ),
    }[who]
    seq = api.store.ledger.head()[0]
    for target, alias in (("bob", "mallory"), ("mallory", "bob"), ("bob", "guest@example.com")):
        r = api.client.post(
            f"/v1/subjects/{target}/aliases", json={"alias": alias}, headers=headers
        )
        assert r.status_code == 403, (who, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    api.store.link_subject("bob", "guest@example.com")
    r = api.client.delete("/v1/subjects/bob/aliases/guest@example.com", headers=headers)
    assert r.status_code == 403, (who, r.text)
    # nothing written but the store's own link
    assert api.store.ledger.head()[0] == seq + 1
    if who != "the person themself":
        r = api.client.get("/v1/subjects/bob/aliases", headers=headers)
        assert r.status_code == 403


def api_key(api: Api, name: str, *, role: str) -> str:
    from consentry.api.keys import ApiKeys

    return ApiKeys(api.store).create(name, role, account="acme").secret


def test_conflicts_and_bad_input_are_problems(api: Api) -> None:
    post = api.client.post
    assert (
        post("/v1/subjects/bob/aliases", json={"alias": "a1"}, headers=api.service).status_code
        == 201
    )
    r = post("/v1/subjects/carol/aliases", json={"alias": "a1"}, headers=api.service)
    assert r.status_code == 409 and "alias of another person" in r.json()["detail"]
    r = post("/v1/subjects/bob/aliases", json={"alias": "bob"}, headers=api.service)
    assert r.status_code == 422
    r = post("/v1/subjects/bob/aliases", json={"alias": ""}, headers=api.service)
    assert r.status_code == 422
    r = post("/v1/subjects/bob/aliases", json={"alias": "x", "extra": 1}, headers=api.service)
    assert r.status_code == 422
    r = api.client.delete("/v1/subjects/carol/aliases/a1", headers=api.service)
    assert r.status_code == 404
    token = sign("svc", "service")
    r = post("/v1/subjects/bob/aliases", json={"alias": "a2"}, headers=bearer(token))
    assert r.status_code == 201
