"""Bad input found while probing (issue 9, section 5), over the real API on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_support import Api

from support import TEST_POLICY

GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content.audio"]}


@pytest.fixture
def bapi(make_api: Callable[..., Api], backend_url: str) -> Api:
    return make_api(backend_url, policy=TEST_POLICY)


def _field_named(r: Any, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["field"] == field, problem
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("get", "/v1/subjects/bo%00b", None, "subject"),
        ("get", "/v1/subjects/bo%00b/events", None, "subject"),
        ("post", "/v1/subjects/bo%00b/consents", GIVE, "subject"),
        ("post", "/v1/subjects/bob/consents", {**GIVE, "purpose": "ai.train\x00ing"}, "purpose"),
        (
            "post",
            "/v1/subjects/bob/consents",
            {**GIVE, "categories": ["content.audio", "content\x00"]},
            "categories[1]",
        ),
        ("post", "/v1/subjects/bob/consents", {**GIVE, "method": "w\x00b"}, "method"),
        (
            "post",
            "/v1/subjects/bob/consents",
            {**GIVE, "notice_version": "v\x001"},
            "notice_version",
        ),
        ("post", "/v1/subjects/bob/consents", {**GIVE, "language": "e\x00n"}, "language"),
        ("post", "/v1/subjects/bob/consents", {**GIVE, "method": "w\ud800b"}, "method"),
        ("get", "/v1/subjects/bob?as_of=2024-01-01%00", None, "as_of"),
        ("put", "/v1/accounts/ac%00me/settings/ai.training", {"setting": "on"}, "account"),
        ("get", "/v1/receipts/abc%00", None, "event_id"),
        (
            "post",
            "/v1/decisions",
            {"subject": "b\x00ob", "purpose": "ai.training", "category": "content.audio"},
            "subject",
        ),
    ],
)
def test_a_nul_anywhere_is_a_422_naming_the_field(
    bapi: Api, method: str, path: str, body: Any, field: str
) -> None:
    """PostgreSQL used to answer 500 and drop the connection; now every backend refuses the
    request before the store sees it, and the next request works."""
    headers = bapi.bob if "decisions" not in path else bapi.service
    if "accounts" in path:
        headers = bapi.alice
    before = bapi.store.ledger.head()
    if body is not None:  # (as JSON escapes: httpx cannot encode a lone surrogate itself)
        headers = {**headers, "Content-Type": "application/json"}
    content = None if body is None else json.dumps(body)
    r = bapi.client.request(method, path, content=content, headers=headers)
    _field_named(r, field)
    assert bapi.store.ledger.head() == before
    ok = bapi.client.post("/v1/subjects/bob/consents", json=GIVE, headers=bapi.bob)
    assert ok.status_code == 201, ok.text


def test_an_identical_retry_after_a_new_policy_version_returns_the_original_event(
    bapi: Api, clock: Any
) -> None:
    headers = {**bapi.bob, "Idempotency-Key": "retry-1"}
    first = bapi.client.post("/v1/subjects/bob/consents", json=GIVE, headers=headers)
    assert first.status_code == 201 and first.json()["policy_version"] == "v1"
    clock.advance(days=200)  # v2 takes effect
    again = bapi.client.post("/v1/subjects/bob/consents", json=GIVE, headers=headers)
    assert again.status_code in (200, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    other = bapi.client.post(
        "/v1/subjects/bob/consents", json={**GIVE, "method": "web"}, headers=headers
    )
    assert other.status_code == 409


def test_someone_elses_receipt_answers_as_one_that_does_not_exist(bapi: Api) -> None:
    event = bapi.client.post("/v1/subjects/bob/consents", json=GIVE, headers=bapi.bob).json()
    carol = bapi.as_("carol")
    theirs = bapi.client.get(f"/v1/receipts/{event['id']}", headers=carol)
    missing_id = event["id"][:-4] + ("0000" if not event["id"].endswith("0000") else "1111")
    missing = bapi.client.get(f"/v1/receipts/{missing_id}", headers=carol)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers["content-type"] == missing.headers["content-type"]

    def shape(r: Any, ref: str) -> dict[str, Any]:
        return {k: str(v).replace(ref, "ID") for k, v in r.json().items()}

    assert shape(theirs, event["id"]) == shape(missing, missing_id)
    # by seq too
    by_seq = bapi.client.get(f"/v1/receipts/{event['seq']}", headers=carol)
    assert by_seq.status_code == 404
    # the owner still gets it; a non-person role is refused whatever the id
    assert bapi.client.get(f"/v1/receipts/{event['id']}", headers=bapi.bob).status_code == 200
    a = bapi.client.get(f"/v1/receipts/{event['id']}", headers=bapi.service)
    b = bapi.client.get(f"/v1/receipts/{missing_id}", headers=bapi.service)
    assert a.status_code == b.status_code == 403


def test_problems_show_no_absolute_server_paths(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    (data / "manifests" / "bad.csv").write_text("item_id,subject_ids,category\na,,x\n", "utf-8")
    api = make_api(data_dir=str(data))
    bodies = [
        {"manifest": "manifests/bad.csv", "purpose": "ai.training", "name": "x"},
        {"manifest": "manifests/missing.csv", "purpose": "ai.training", "name": "x"},
    ]
    for body in bodies:
        r = api.client.post("/v1/datasets", json=body, headers=api.service)
        assert r.status_code in (404, 422), r.text
        text = r.text
        assert str(tmp_path) not in text and str(data.resolve()) not in text, text
        assert "manifests/" in text  # the path as the caller gave it
    r = api.client.post("/v1/policies", json={"yaml": "id: [\n"}, headers=api.platform)
    assert r.status_code == 422 and str(tmp_path) not in r.text
