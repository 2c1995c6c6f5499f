"""The API's account context (issue 12): ``account`` on a decision and on batch items, the
deciding account named by ``explain``, bad accounts refused as problem details; both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api_support import Api

TRAIN = {"purpose": "ai.training", "category": "content.audio"}


def _post(api: Api, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = api.client.post(path, json=body, headers=api.service)
    assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


def test_decisions_take_the_items_account(make_api: Callable[..., Api], backend_url: str) -> None:
    api = make_api(backend_url)
    api.store.set_account("acme", "ai.training", "on")  # bob is acme's, zed globex's
    one = _post(api, "/v1/decisions", {**TRAIN, "subject": "bob", "account": "acme"})
    assert (one["reason"], one["account"]) == ("account_consent", "acme")
    # Acme's on speaks for its members only: the guest's part needs the guest's own choice.
    guest = _post(api, "/v1/decisions", {**TRAIN, "subject": "zed", "account": "acme"})
    assert guest["reason"] == "no_consent"
    explained = _post(
        api, "/v1/decisions", {**TRAIN, "subject": "bob", "account": "acme", "explain": True}
    )
    assert explained["decided_by"]["account"] == "acme"
    assert explained["decided_by"]["setting"] == "on"
    assert explained["subjects"][0]["decided_by"]["kind"] == "setting"
    past = _post(
        api, "/v1/decisions", {**TRAIN, "subject": "bob", "account": "acme", "as_of": "-0s"}
    )
    assert past["reason"] == "account_consent"
    # The meeting with its guest (the rule considers every party): the guest blocks it.
    meeting = _post(api, "/v1/decisions", {**TRAIN, "subjects": ["bob", "zed"], "account": "acme"})
    assert (meeting["allowed"], meeting["subject"]) == (False, "zed")


def test_batches_take_an_account_at_the_top_or_per_item(
    make_api: Callable[..., Api], backend_url: str
) -> None:
    api = make_api(backend_url)
    api.store.set_account("globex", "ai.training", "on")
    fast = _post(
        api, "/v1/decisions/batch", {**TRAIN, "account": "globex", "subjects": ["zed", "bob"]}
    )
    assert [r["reason"] for r in fast["results"]] == ["account_consent", "no_consent"]
    items = _post(
        api,
        "/v1/decisions/batch",
        {
            **TRAIN,
            "account": "acme",
            "items": [{"subjects": ["zed"]}, {"subjects": ["zed"], "account": "globex"}],
        },
    )
    assert [r["reason"] for r in items["results"]] == ["no_consent", "account_consent"]


def test_an_unknown_account_is_a_problem_naming_the_field(api: Api) -> None:
    r = api.client.post(
        "/v1/decisions", json={**TRAIN, "subject": "bob", "account": "acmee"}, headers=api.service
    )
    problem = r.json()
    assert r.status_code in (404, 422) and problem["field"] == "account"
    assert "did you mean 'acme'" in problem["hint"]
    r = api.client.post(
        "/v1/decisions", json={**TRAIN, "subject": "bob", "account": ""}, headers=api.service
    )
    assert r.status_code == 422
