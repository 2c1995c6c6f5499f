"""Global Privacy Control (issue 16 §5), on both backends: the policy's ``gpc`` field, the
signal recorded once from the platform or from a signed-in browser on /me, what it changes
(and that it changes nothing where the policy gives it no meaning), /.well-known/gpc.json,
and who may record one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from api_support import Api, sign
from fastapi.testclient import TestClient

from consentry.errors import PolicyError
from consentry.ledger.events import Kind
from consentry.policy.loader import parse_policy
from consentry.times import format_time

OBJECTS_TO = ["ai.training", "improvement"]


@pytest.fixture
def api(make_api: Callable[..., Api], backend_url: str) -> Api:
    return make_api(backend_url)


def publish_gpc(api: Api, objects_to: Any = OBJECTS_TO) -> str:
    """A new version of the store's policy, in effect now, whose gpc field objects to
    ``objects_to``."""
    store = api.store
    doc = dict(store.policy().document)
    doc["version"] = "gpc-1"
    doc["effective"] = format_time(store.clock() - timedelta(seconds=1))
    doc["gpc"] = {"objects_to": objects_to}
    store.publish(parse_policy(doc))
    assert store.policy().version == "gpc-1"
    return "gpc-1"


def signal(api: Api, subject: str = "bob", headers: dict[str, str] | None = None) -> Any:
    return api.client.post(f"/v1/subjects/{subject}/signals/gpc", headers=headers or api.service)


def test_without_a_meaning_the_signal_is_recorded_and_changes_nothing(api: Api) -> None:
    before = api.store.subject_state("bob")
    r = signal(api)
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["objects_to"] == [] and data["choices"] == []
    assert data["signal"]["kind"] == "signal.gpc" and data["signal"]["method"] == "gpc"
    after = api.store.subject_state("bob")
    assert after["consents"] == before["consents"]
    assert after["objections"] == before["objections"]
    # once per policy version
    again = signal(api)
    assert again.status_code == 200 and again.json()["already_recorded"]
    assert api.store.verify().ok


def test_the_policys_meaning_is_recorded_as_refusals_and_objections(api: Api) -> None:
    give = {"action": "give", "purpose": "ai.training", "categories": ["content.audio"]}
    assert api.client.post("/v1/subjects/bob/consents", json=give, headers=api.bob).status_code
    publish_gpc(api)
    r = signal(api)
    assert r.status_code == 201, r.text
    kinds = {(c["kind"], c["purpose"]) for c in r.json()["choices"]}
    assert ("consent.refused", "ai.training") in kinds
    assert all(c["method"] == "gpc" for c in r.json()["choices"])
    check = {"subject": "bob", "purpose": "ai.training", "category": "content.audio"}
    decision = api.client.post("/v1/decisions", json=check, headers=api.service).json()
    assert not decision["allowed"] and decision["reason"] == "refused"
    # the person changes their mind afterwards: the signal is not recorded again over it
    assert api.client.post("/v1/subjects/bob/consents", json=give, headers=api.bob).status_code
    assert signal(api).json()["already_recorded"]
    decision = api.client.post("/v1/decisions", json=check, headers=api.service).json()
    assert decision["allowed"]
    result = api.store.verify()
    assert result.ok and not result.divergences


def test_me_records_sec_gpc_and_says_what_it_meant(api: Api) -> None:
    publish_gpc(api)
    browser = TestClient(api.client.app, raise_server_exceptions=False)
    r = browser.get("/login", params={"token": sign("carol", "subject")}, follow_redirects=False)
    assert r.status_code == 303
    page = browser.get("/me")
    assert 'id="gpc"' not in page.text  # no signal, nothing recorded
    assert not [e for e in api.store.ledger.events(subjects=["carol"]) if e.kind is Kind.SIGNAL_GPC]
    for lang, words in (("en", "object to"), ("fr", "vous opposez"), ("id", "berkeberatan")):
        page = browser.get(f"/me?lang={lang}", headers={"Sec-GPC": "1"})
        assert page.status_code == 200
        assert 'id="gpc"' in page.text and words in page.text, lang
    signals = [e for e in api.store.ledger.events(subjects=["carol"]) if e.kind is Kind.SIGNAL_GPC]
    assert len(signals) == 1  # three visits, one record


def test_me_says_when_the_signal_changed_nothing(api: Api) -> None:
    browser = TestClient(api.client.app, raise_server_exceptions=False)
    browser.get("/login", params={"token": sign("carol", "subject")}, follow_redirects=False)
    page = browser.get("/me?lang=en", headers={"Sec-GPC": "1"})
    assert "changed none of your choices" in page.text


def test_the_well_known_resource(api: Api) -> None:
    r = api.client.get("/.well-known/gpc.json")
    assert r.status_code == 200
    data = r.json()
    assert data["gpc"] is True
    assert data["lastUpdate"] == api.store.policy().effective.date().isoformat()


def test_only_the_platform_records_a_signal_for_someone(api: Api) -> None:
    seq = api.store.ledger.head()[0]
    for headers in (api.bob, api.as_("mallory"), api.alice):
        assert signal(api, "bob", headers).status_code == 403
    assert api.store.ledger.head()[0] == seq
    assert signal(api, "bob", api.platform).status_code == 201


@pytest.mark.parametrize(
    "gpc",
    [{"objects_to": []}, {"objects_to": ["no.such.purpose"]}, ["ai.training"], {"to": ["ai"]}],
)
def test_the_policy_field_is_validated(api: Api, gpc: Any) -> None:
    doc = dict(api.store.policy().document)
    doc["gpc"] = gpc
    with pytest.raises(PolicyError, match="gpc"):
        parse_policy(doc)
