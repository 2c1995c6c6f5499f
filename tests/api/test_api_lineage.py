"""Datasets, models, a subject's impact and transparency report over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from api_support import Api

MANIFEST = """\
item_id,subject_ids,category,labels
r1,"[""bob""]",content.audio,[]
r2,"[""bob"",""carol""]",content.video,[]
r3,"[""carol""]",content.chat,[]
r4,"[""bob""]",content.audio,"[""health""]"
"""
GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content"]}


@pytest.fixture
def api(make_api: Callable[..., Api], tmp_path: Path) -> Api:
    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    (data / "manifests" / "meetings.csv").write_text(MANIFEST, encoding="utf-8")
    return make_api(data_dir=str(data))


def gate(api: Api, **extra: str) -> dict[str, object]:
    body = {"manifest": "manifests/meetings.csv", "purpose": "ai.training", "name": "asr-v1"}
    r = api.client.post("/v1/datasets", json={**body, **extra}, headers=api.service)
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def test_gate_register_and_impact_after_a_withdrawal(api: Api) -> None:
    api.client.post("/v1/subjects/bob/consents", json=GIVE, headers=api.bob)
    result = gate(api)
    counts = result["counts"]
    assert isinstance(counts, dict)
    assert (counts["input"], counts["allowed"], counts["excluded"]) == (4, 1, 3)
    assert counts["excluded_by_reason"] == {"no_consent": 2, "protected_label": 1}
    dataset_id = result["dataset_id"]
    listed = api.client.get("/v1/datasets", headers=api.service).json()["datasets"]
    assert [d["id"] for d in listed] == [dataset_id]
    one = api.client.get(f"/v1/datasets/{dataset_id}", headers=api.service).json()
    assert one["record"]["dataset_id"] == dataset_id and one["output_items"] == 1

    r = api.client.post(
        "/v1/models",
        json={"name": "asr", "version": "1", "datasets": [dataset_id]},
        headers=api.service,
    )
    assert r.status_code == 201
    model = r.json()
    assert api.client.get(f"/v1/models/{model['id']}", headers=api.service).json()["datasets"] == [
        dataset_id
    ]
    assert [
        m["id"] for m in api.client.get("/v1/models", headers=api.service).json()["models"]
    ] == [model["id"]]

    impact = api.client.get("/v1/subjects/bob/impact", headers=api.bob).json()
    assert impact["summary"] == {
        "datasets": 1,
        "datasets_needing_action": 0,
        "models": 1,
        "models_needing_action": 0,
    }
    api.client.post(
        "/v1/subjects/bob/consents", json={**GIVE, "action": "withdraw"}, headers=api.bob
    )
    after = api.client.get("/v1/subjects/bob/impact", headers=api.service).json()
    assert after["datasets"][0]["needs_action"] is True
    assert after["models"][0]["needs_action"] is True

    report = api.client.get(
        "/v1/subjects/bob/report", params={"lang": "fr"}, headers=api.bob
    ).json()
    assert report["language"] == "fr" and report["machine_translated"] is True
    training = next(u for u in report["uses"] if u["rule"] == "train-on-content")
    assert training["kind"] == "opt_in" and training["reasons"] == ["withdrawn"]
    assert "modèles d'IA" in training["text"]
    assert report["impact"]["summary"]["datasets_needing_action"] == 1
    assert [e["kind"] for e in report["history"]] == [
        "member.added",
        "consent.given",
        "consent.withdrawn",
    ]


def test_gate_is_idempotent(api: Api) -> None:
    headers = {**api.service, "Idempotency-Key": "nightly-2024-06-01"}
    body = {"manifest": "manifests/meetings.csv", "purpose": "ai.training", "name": "asr"}
    first = api.client.post("/v1/datasets", json=body, headers=headers).json()
    again = api.client.post("/v1/datasets", json=body, headers=headers).json()
    assert again["dataset_id"] == first["dataset_id"] and again["replayed"] is True


@pytest.mark.parametrize(
    ("manifest", "field"),
    [("../outside.csv", "manifest"), ("/etc/passwd", "manifest"), ("manifests/none.csv", None)],
)
def test_manifest_paths_stay_in_the_data_directory(
    api: Api, manifest: str, field: str | None
) -> None:
    body = {"manifest": manifest, "purpose": "ai.training", "name": "x"}
    r = api.client.post("/v1/datasets", json=body, headers=api.service)
    assert r.status_code == 422, r.text
    if field:
        assert r.json()["field"] == field


def test_without_a_data_directory_the_gate_endpoint_is_off(make_api: Callable[..., Api]) -> None:
    api = make_api()
    body = {"manifest": "m.csv", "purpose": "ai.training", "name": "x"}
    r = api.client.post("/v1/datasets", json=body, headers=api.service)
    assert r.status_code == 403 and "CONSENTRY_DATA_DIR" in r.json()["hint"]


def test_unknown_dataset_and_model(api: Api) -> None:
    assert api.client.get("/v1/datasets/nope", headers=api.service).status_code == 404
    r = api.client.post("/v1/models", json={"name": "m", "datasets": ["nope"]}, headers=api.service)
    assert r.status_code == 404
