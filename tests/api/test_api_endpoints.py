"""What each endpoint does: choices, state, receipts, accounts, decisions, policies, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from api_support import MUSIC, Api, bearer

GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
WITHDRAW = {"action": "withdraw", "purpose": "ai.training", "categories": ["content"]}
CHECK = {"subject": "bob", "purpose": "ai.training", "category": "content.audio"}


def decide(api: Api, **body: Any) -> dict[str, Any]:
    r = api.client.post("/v1/decisions", json={**CHECK, **body}, headers=api.service)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


# -- choices and decisions ---------------------------------------------------------------------


def test_giving_and_withdrawing_flips_the_decision(api: Api) -> None:
    assert decide(api)["reason"] == "no_consent"
    r = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert r.status_code == 201
    event = r.json()
    assert event["kind"] == "consent.given" and event["actor"] == "bob"
    assert event["receipt_url"] == f"/v1/receipts/{event['id']}"
    allowed = decide(api, explain=True)
    assert allowed["allowed"] and allowed["reason"] == "consent"
    assert allowed["rule"] == "train-on-content" and allowed["policy_version"] == "2023-08"
    assert event["id"] in [e["event_id"] for e in allowed["evidence"]]
    assert "opt-in" in allowed["notice"]
    r = api.client.post("/v1/subjects/bob/consents", json=WITHDRAW, headers=api.bob)
    assert r.status_code == 201
    denied = decide(api)
    assert not denied["allowed"] and denied["reason"] == "withdrawn"
    assert denied["ledger_seq"] == r.json()["seq"]


def test_idempotency_key_records_a_retried_write_once(api: Api) -> None:
    headers = {**api.bob, "Idempotency-Key": "click-1"}
    first = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=headers)
    again = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = api.client.post("/v1/subjects/bob/consents", json=WITHDRAW, headers=headers)
    assert other.status_code == 409
    assert "already used for a different request" in other.json()["detail"]
    # Keys are scoped per caller: carol's "click-1" is hers.
    carol = {**api.as_("carol"), "Idempotency-Key": "click-1"}
    assert (
        api.client.post("/v1/subjects/carol/consents", json=GIVE, headers=carol).status_code == 201
    )


def test_state_now_and_as_of(api: Api, clock: Any) -> None:
    before = clock.now
    clock.advance(days=1)
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    now = api.client.get("/v1/subjects/bob", headers=api.bob).json()
    assert now["accounts"] == ["acme"]
    assert [c["status"] for c in now["consents"]] == ["given"]
    then = api.client.get(
        "/v1/subjects/bob", params={"as_of": before.isoformat()}, headers=api.bob
    ).json()
    assert then["consents"] == [] and then["as_of"] == before.isoformat()
    bad = api.client.get("/v1/subjects/bob", params={"as_of": "yesterday"}, headers=api.bob)
    assert bad.status_code == 422 and bad.json()["field"] == "as_of"
    # The decision as of that time agrees.
    assert decide(api, as_of=before.isoformat())["reason"] == "no_consent"
    assert decide(api)["reason"] == "consent"


def test_history_lists_the_subjects_events(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    events = api.client.get("/v1/subjects/bob/events", headers=api.bob).json()["events"]
    assert [e["kind"] for e in events] == ["member.added", "consent.given"]
    assert events[0]["receipt_url"] is None and events[1]["receipt_url"]


def test_objection(make_api: Callable[..., Api]) -> None:
    api = make_api(policy=MUSIC)  # improve-product: legitimate interest, objection: true
    body = {"purpose": "improvement", "categories": ["service_data"]}
    r = api.client.post("/v1/subjects/bob/objections", json=body, headers=api.bob)
    assert r.status_code == 201 and r.json()["kind"] == "objection.raised"
    lift = api.client.post(
        "/v1/subjects/bob/objections", json={**body, "lift": True}, headers=api.bob
    )
    assert lift.json()["kind"] == "objection.lifted"


# -- receipts ----------------------------------------------------------------------------------


def test_receipt_downloads_and_verifies(api: Api) -> None:
    event = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    r = api.client.get(event["receipt_url"], headers=api.bob)
    assert r.status_code == 200
    receipt = r.json()
    assert receipt["receipt"]["record_id"] == event["id"]
    assert jwt.get_unverified_header(receipt["jws"])["alg"] == "EdDSA"
    ok = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service)
    assert ok.status_code == 200 and ok.json()["valid"] is True
    receipt["receipt"]["status"] = "withdrawn"
    bad = api.client.post("/v1/receipts/verify", json=receipt, headers=api.service)
    assert bad.status_code == 422
    assert "altered" in bad.json()["detail"]


def test_only_consent_events_have_receipts(api: Api) -> None:
    member = next(api.store.ledger.events(subjects=["bob"]))
    r = api.client.get(f"/v1/receipts/{member.id}", headers=api.bob)
    assert r.status_code == 422 and "only consent events have receipts" in r.json()["detail"]
    assert api.client.get("/v1/receipts/nope", headers=api.bob).status_code == 404


# -- accounts ----------------------------------------------------------------------------------


def test_account_off_caps_members(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert decide(api)["allowed"]
    r = api.client.put(
        "/v1/accounts/acme/settings/ai.training", json={"setting": "off"}, headers=api.alice
    )
    assert r.status_code == 200 and r.json()["actor"] == "alice"
    capped = decide(api)
    assert not capped["allowed"] and capped["reason"] == "account_off"
    account = api.client.get("/v1/accounts/acme", headers=api.alice).json()
    assert account["settings"] == {"ai.training": "off"}
    assert account["members"] == ["alice", "bob", "carol"]


def test_account_on_only_where_the_policy_allows(api: Api) -> None:
    r = api.client.put(
        "/v1/accounts/acme/settings/ai.training", json={"setting": "on"}, headers=api.alice
    )
    assert r.status_code == 200
    assert decide(api, subject="carol")["reason"] == "account_consent"
    r = api.client.put(
        "/v1/accounts/acme/settings/service.safety", json={"setting": "on"}, headers=api.alice
    )
    # service.safety is a contract purpose: accounts have no say over it at all (issue 9).
    assert r.status_code == 422 and r.json()["field"] == "purpose"
    assert "no say over 'service.safety'" in r.json()["detail"]
    r = api.client.put(
        "/v1/accounts/acme/settings/improvement", json={"setting": "off"}, headers=api.alice
    )
    assert r.status_code == 200
    r = api.client.put(
        "/v1/accounts/acme/settings/ai.training", json={"setting": "maybe"}, headers=api.alice
    )
    assert r.status_code == 422 and r.json()["field"] == "setting"


def test_features(api: Api) -> None:
    body = {"subject": "bob", "purpose": "ai.feature.meeting_summary", "category": "content.audio"}
    assert decide(api, **body)["reason"] == "not_enabled"
    r = api.client.put(
        "/v1/accounts/acme/features/ai.feature.meeting_summary",
        json={"enabled": True},
        headers=api.alice,
    )
    assert r.status_code == 200 and r.json()["status"] == "enabled"
    assert decide(api, **body)["allowed"]


def test_membership(api: Api) -> None:
    r = api.client.put("/v1/accounts/acme/members/dan", headers=api.service)
    assert r.status_code == 201 and r.json()["kind"] == "member.added"
    assert "dan" in api.client.get("/v1/accounts/acme", headers=api.alice).json()["members"]
    r = api.client.delete("/v1/accounts/acme/members/dan", headers=api.alice)
    assert r.status_code == 200 and r.json()["kind"] == "member.removed"
    again = api.client.delete("/v1/accounts/acme/members/dan", headers=api.alice)
    assert again.status_code == 404 and "not a member" in again.json()["detail"]


def test_member_summary_and_audit_trail(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    api.client.post(
        "/v1/subjects/carol/consents", json={**GIVE, "action": "refuse"}, headers=api.as_("carol")
    )
    summary = api.client.get("/v1/accounts/acme/summary", headers=api.alice).json()
    assert summary["members"] == 3
    row = next(
        p
        for p in summary["purposes"]
        if p["purpose"] == "ai.training" and p["category"] == "content"
    )
    assert row["allowed"] == 1 and row["denied"] == 2
    assert row["reasons"] == {"consent": 1, "no_consent": 1, "refused": 1}
    api.client.put(
        "/v1/accounts/acme/settings/ai.training", json={"setting": "off"}, headers=api.alice
    )
    trail = api.client.get("/v1/accounts/acme/events", headers=api.alice).json()["events"]
    assert trail[-1]["kind"] == "account.setting" and trail[-1]["status"] == "off"
    assert {e["kind"] for e in trail} == {"member.added", "account.setting"}


# -- decisions ---------------------------------------------------------------------------------


def test_multi_party_item_names_the_blocking_subject(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    body = {k: v for k, v in CHECK.items() if k != "subject"} | {"subjects": ["bob", "carol"]}
    r = api.client.post("/v1/decisions", json=body, headers=api.service)
    assert r.status_code == 200, r.text
    d = r.json()
    assert not d["allowed"] and d["subject"] == "carol" and d["reason"] == "no_consent"
    assert [s["subject"] for s in d["subjects"]] == ["bob", "carol"]


def test_labels_protect(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    assert decide(api, labels=["health"])["reason"] == "protected_label"
    r = api.client.post("/v1/decisions", json={**CHECK, "labels": ["healht"]}, headers=api.service)
    assert r.status_code == 422 and "did you mean 'health'" in r.json()["hint"]


def test_batch_subjects_and_items(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    body = {
        "purpose": "ai.training",
        "category": "content.audio",
        "subjects": ["bob", "carol", "nobody"],
    }
    r = api.client.post("/v1/decisions/batch", json=body, headers=api.service)
    assert r.status_code == 200
    data = r.json()
    assert (data["count"], data["allowed"], data["denied"]) == (3, 1, 2)
    assert [x["reason"] for x in data["results"]] == ["consent", "no_consent", "no_consent"]
    items = {
        "purpose": "ai.training",
        "items": [
            {"subjects": ["bob"], "category": "content.audio"},
            {"subjects": ["bob", "carol"], "category": "content.video"},
            {"subjects": ["bob"], "purpose": "service.delivery", "category": "content.audio"},
        ],
        "explain": True,
    }
    r = api.client.post("/v1/decisions/batch", json=items, headers=api.service)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["allowed"] for x in results] == [True, False, True]
    assert results[1]["subject"] == "carol" and results[2]["reason"] == "contract"


def test_batch_errors_name_the_field(api: Api) -> None:
    r = api.client.post(
        "/v1/decisions/batch", json={"items": [{"subjects": ["bob"]}]}, headers=api.service
    )
    assert r.status_code == 422 and r.json()["field"] == "items[0].purpose"
    r = api.client.post("/v1/decisions/batch", json={"purpose": "ai.training"}, headers=api.service)
    assert r.status_code == 422 and "exactly one of 'subjects' or 'items'" in r.json()["detail"]


def test_batch_limit(make_api: Callable[..., Api]) -> None:
    api = make_api(batch_max_items=2)
    body = {"purpose": "ai.training", "category": "content", "subjects": ["a", "b", "c"]}
    r = api.client.post("/v1/decisions/batch", json=body, headers=api.service)
    assert r.status_code == 422 and "at most 2" in r.json()["detail"]


def test_min_seq_reads_a_write_made_through_another_worker(make_api: Callable[..., Api]) -> None:
    a = make_api()
    # A second app over the same database: another worker, with a snapshot that would
    # otherwise stay a minute behind.
    from fastapi.testclient import TestClient

    from consentry import Store
    from consentry.api import create_app

    other_store = Store(a.store.url, clock=a.store.clock)
    worker2 = TestClient(
        create_app(a.settings.with_(decision_max_staleness_ms=60_000), store=other_store)
    )
    try:
        assert (
            worker2.post("/v1/decisions", json=CHECK, headers=a.service).json()["reason"]
            == "no_consent"
        )
        seq = a.client.post("/v1/subjects/bob/consents", json=GIVE, headers=a.bob).json()["seq"]
        stale = worker2.post("/v1/decisions", json=CHECK, headers=a.service).json()
        assert stale["reason"] == "no_consent" and stale["ledger_seq"] < seq
        fresh = worker2.post(
            "/v1/decisions", json={**CHECK, "min_seq": seq}, headers=a.service
        ).json()
        assert fresh["reason"] == "consent" and fresh["ledger_seq"] >= seq
        ahead = worker2.post(
            "/v1/decisions", json={**CHECK, "min_seq": seq + 100}, headers=a.service
        )
        assert ahead.status_code == 404 and ahead.json()["field"] == "min_seq"
    finally:
        worker2.close()
        other_store.close()


def test_staleness_zero_always_catches_up(make_api: Callable[..., Api]) -> None:
    from fastapi.testclient import TestClient

    from consentry import Store
    from consentry.api import create_app

    a = make_api()
    other_store = Store(a.store.url, clock=a.store.clock)
    worker2 = TestClient(
        create_app(a.settings.with_(decision_max_staleness_ms=0), store=other_store)
    )
    try:
        worker2.post("/v1/decisions", json=CHECK, headers=a.service)
        a.client.post("/v1/subjects/bob/consents", json=GIVE, headers=a.bob)
        assert (
            worker2.post("/v1/decisions", json=CHECK, headers=a.service).json()["reason"]
            == "consent"
        )
    finally:
        worker2.close()
        other_store.close()


# -- policies ----------------------------------------------------------------------------------


def test_policies_notices_and_diff(api: Api) -> None:
    listing = api.client.get("/v1/policies", headers=api.bob).json()
    assert listing["current"] == "2023-08"
    assert [v["version"] for v in listing["versions"]] == ["2023-07", "2023-08"]
    policy = api.client.get("/v1/policies/2023-08", headers=api.bob).json()
    assert {r["id"] for r in policy["rules"]} >= {"train-on-content", "no-third-party-training"}
    fr = api.client.get("/v1/policies/2023-08/notices/fr", headers=api.bob).json()
    assert fr["machine_translated"] and fr["authoritative_language"] == "en"
    assert fr["authoritative_url"] == "/v1/policies/2023-08/notices/en"
    en = api.client.get("/v1/policies/2023-08/notices/en", headers=api.bob).json()
    assert not en["machine_translated"] and en["authoritative_url"] is None
    missing = api.client.get("/v1/policies/2023-08/notices/de", headers=api.bob)
    assert missing.status_code == 422 and missing.json()["field"] == "language"
    diff = api.client.get(
        "/v1/policies/diff",
        params={"from": "2023-07", "to": "2023-08", "lang": "id"},
        headers=api.bob,
    ).json()
    assert diff["from"] == "2023-07" and diff["language"] == "id"
    assert any(s["purpose"] == "ai.training" for s in diff["tighter"])
    assert api.client.get("/v1/policies/1999", headers=api.bob).status_code == 422


NEW_VERSION = """\
id: meetings
version: "2099-01"
effective: 2099-01-01T00:00:00Z
language: en
rules:
  - id: deliver-service
    purposes: [service.delivery]
    categories: [content]
    basis: contract
"""


def test_publish(api: Api) -> None:
    r = api.client.post("/v1/policies", json={"yaml": NEW_VERSION}, headers=api.platform)
    assert r.status_code == 201 and r.json()[0]["published"] is True
    again = api.client.post("/v1/policies", json={"yaml": NEW_VERSION}, headers=api.platform)
    assert again.json()[0]["published"] is False
    changed = NEW_VERSION.replace("contract", "consent")
    conflict = api.client.post("/v1/policies", json={"yaml": changed}, headers=api.platform)
    assert conflict.status_code == 409 and "immutable" in conflict.json()["hint"]
    broken = api.client.post("/v1/policies", json={"yaml": "id: [unclosed"}, headers=api.platform)
    assert broken.status_code == 422 and "not valid YAML" in broken.json()["detail"]
    # A path is never read from the server's disk: text is text.
    path = api.client.post(
        "/v1/policies", json={"yaml": "/etc/hostname.yaml"}, headers=api.platform
    )
    assert path.status_code == 422


def test_verify_ledger(api: Api) -> None:
    r = api.client.post("/v1/ledger/verify", headers=api.platform)
    assert r.status_code == 200
    assert r.json()["ok"] is True and r.json()["checked"] == r.json()["head_seq"]
    assert r.json()["divergences"] == []


def test_verify_ledger_names_an_edited_state_row(api: Api) -> None:
    from sqlalchemy import text

    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    withdrawn = api.client.post("/v1/subjects/bob/consents", json=WITHDRAW, headers=api.bob)
    with api.store.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE consents SET status = 'given' WHERE subject = 'bob'"))
    r = api.client.post("/v1/ledger/verify", headers=api.platform)
    assert r.status_code == 200
    data = r.json()
    assert data["ok"] is False and len(data["divergences"]) == 1
    first = data["divergences"][0]
    assert first["table"] == "consents" and first["key"] == ["bob", "ai.training", "content"]
    assert first["problem"] == "changed" and first["fields"] == ["status"]
    assert first["stored"]["status"] == "given" and first["implied"]["status"] == "withdrawn"
    assert first["seq"] == withdrawn.json()["seq"]
    assert "the chain says 'withdrawn'" in first["message"] and first["message"] in data["problem"]


# -- errors, health, metrics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "give", "purpose": "ai.training"}, "categories"),
        ({"action": "maybe", "purpose": "ai.training", "categories": ["content"]}, "action"),
        ({"action": "give", "purpose": "ai.training", "categories": "content"}, "categories"),
        ({**GIVE, "colour": "blue"}, "colour"),
        ({**GIVE, "categories": []}, "categories"),
        ({**GIVE, "purpose": "ai.trainin"}, "purpose"),
        ({**GIVE, "categories": ["content.sound"]}, "category"),
    ],
)
def test_validation_errors_name_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.client.post("/v1/subjects/bob/consents", json=body, headers=api.bob)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["field"] == field, problem
    assert problem["type"].startswith("https://consentry.dev/problems/")


def test_invalid_json(api: Api) -> None:
    r = api.client.post(
        "/v1/subjects/bob/consents",
        content=b"{nope",
        headers={**api.bob, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


def test_unknown_route_and_method(api: Api) -> None:
    r = api.client.get("/v1/nothing-here", headers=api.bob)
    assert r.status_code == 404 and r.json()["detail"] == "there is nothing at /v1/nothing-here"
    r = api.client.delete("/v1/policies", headers=api.bob)
    assert r.status_code == 405 and "DELETE is not allowed" in r.json()["detail"]


def test_unexpected_errors_are_problems_without_a_trace(api: Api) -> None:
    @api.client.app.get("/boom")  # type: ignore[attr-defined,misc]
    def boom() -> None:
        raise RuntimeError("secret internals")

    r = api.client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in r.text and "Traceback" not in r.text


def test_health_and_readiness(api: Api, make_api: Callable[..., Api], tmp_path: Any) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["policy_version"] == "2023-08"
    from fastapi.testclient import TestClient

    from consentry.api import Settings, create_app

    empty = TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/empty.db")))
    r = empty.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert empty.get("/v1/policies", headers=bearer("csk_1_2")).status_code == 401
    empty.close()


def test_metrics(api: Api) -> None:
    decide(api)
    api.client.get("/v1/subjects/bob", headers=api.bob)
    text = api.client.get("/metrics").text
    assert 'consentry_http_requests_total{method="POST",route="/v1/decisions",status="200"}' in text
    assert 'route="/v1/subjects/{subject}"' in text
    assert 'consentry_decisions_total{decision="deny",reason="no_consent"} 1.0' in text
    assert "consentry_http_request_duration_seconds_bucket" in text
    assert "consentry_ledger_head_seq" in text and "consentry_snapshot_seq" in text


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert spec["info"]["title"] == "consentry"
    assert "/v1/decisions" in spec["paths"] and "/me" not in spec["paths"]
    assert "bearer" in spec["components"]["securitySchemes"]
    assert api.client.get("/docs").status_code == 200


def test_times_are_utc_rfc3339(api: Api) -> None:
    event = api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob).json()
    at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
    assert at.tzinfo is not None and at.utcoffset() == UTC.utcoffset(None)


def test_unknown_query_parameters_are_refused(api: Api) -> None:
    r = api.client.get("/v1/subjects/bob", params={"asof": "2024-01-01T00:00:00Z"}, headers=api.bob)
    assert r.status_code == 422 and r.json()["field"] == "asof"
    assert "as_of" in r.json()["hint"]


def test_batch_answers_name_every_subject_exactly(api: Api) -> None:
    tricky = ["zoë", 'quote"d', "back\\slash", "tab\there", "emoji 🎧", "línea\nnueva", "bob"]
    body = {"purpose": "ai.training", "category": "content.audio", "subjects": tricky}
    r = api.client.post("/v1/decisions/batch", json=body, headers=api.service)
    assert r.status_code == 200
    assert [x["subject"] for x in r.json()["results"]] == tricky
    assert r.json()["count"] == len(tricky)
