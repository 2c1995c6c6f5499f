"""The right of access over HTTP: GET /v1/subjects/{s}/export and "Download my data" on /me,
on both backends; the archive's receipts verify offline with the CLI."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from api_support import Api, sign
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.cli import app as cli

MANIFEST = """\
item_id,subject_ids,category,labels
r1,"[""bob""]",content.audio,[]
r2,"[""bob"",""carol""]",content.video,[]
r3,"[""carol""]",content.chat,[]
"""
GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content"]}


@pytest.fixture
def api(make_api: Callable[..., Api], tmp_path: Path, backend_url: str) -> Api:
    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    (data / "manifests" / "meetings.csv").write_text(MANIFEST, encoding="utf-8")
    made = make_api(backend_url, data_dir=str(data))
    # bob: a member of acme who gave consent, changed his mind once, and whose data went into
    # a dataset and a model.
    client = made.client
    assert client.post("/v1/subjects/bob/consents", json=GIVE, headers=made.bob).status_code == 201
    body = {"manifest": "manifests/meetings.csv", "purpose": "ai.training", "name": "asr-v1"}
    r = client.post("/v1/datasets", json=body, headers=made.service)
    assert r.status_code == 201, r.text
    dataset_id = r.json()["dataset_id"]
    r = client.post(
        "/v1/models", json={"name": "asr", "version": "1", "datasets": [dataset_id]},
        headers=made.service,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    withdraw = {**GIVE, "action": "withdraw", "categories": ["content.audio"]}
    r = client.post("/v1/subjects/bob/consents", json=withdraw, headers=made.bob)
    assert r.status_code == 201
    return made


def archive(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        assert z.testzip() is None
        return {name: z.read(name) for name in z.namelist()}


def test_the_person_downloads_everything_about_them(api: Api, tmp_path: Path) -> None:
    r = api.client.get("/v1/subjects/bob/export", headers=api.bob)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    assert 'filename="bob-data.zip"' in r.headers["content-disposition"]
    files = archive(r.content)
    assert {"README.txt", "events.json", "events.csv", "state.json", "memberships.json",
            "datasets.json", "checkpoint.txt", "public-keys.json"} <= set(files)  # fmt: skip

    events = json.loads(files["events.json"])
    assert [e["kind"] for e in events] == ["member.added", "consent.given", "consent.withdrawn"]
    assert all(e["subject"] == "bob" for e in events)
    rows = files["events.csv"].decode("utf-8-sig").splitlines()
    assert rows[0].startswith("seq,at,captured_at,kind,purpose,categories,status")
    assert len(rows) == 4 and ",consent.withdrawn,ai.training,content.audio,withdrawn," in rows[3]

    memberships = json.loads(files["memberships.json"])
    assert memberships["accounts"] == ["acme"]
    assert [e["kind"] for e in memberships["history"]] == ["member.added"]

    lineage = json.loads(files["datasets.json"])
    (dataset,) = lineage["datasets"]
    assert dataset["name"] == "asr-v1" and dataset["purpose"] == "ai.training"
    assert dataset["policy_version"] == "2023-08" and dataset["created_at"]
    assert dataset["needs_action"] is True  # bob withdrew the audio it holds
    assert [m["name"] for m in dataset["models"]] == ["asr"]

    # One receipt per consent event, each verified offline with the archive's own files.
    receipts = sorted(n for n in files if n.startswith("receipts/"))
    consent_ids = [e["id"] for e in events if e["kind"].startswith("consent.")]
    assert receipts == sorted(f"receipts/{i}.json" for i in consent_ids)
    out = tmp_path / "unpacked"
    for name, content in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    assert (
        json.loads(files["public-keys.json"]) == api.client.get("/v1/ledger/public-keys").json()
        or json.loads(files["public-keys.json"]) == api.store.public_keys()
    )
    runner = CliRunner()
    for name in receipts:
        result = runner.invoke(
            cli,
            ["receipt", "verify", str(out / name), "--checkpoint", str(out / "checkpoint.txt"),
             "--public-key", str(out / "public-keys.json")],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "valid" in result.output
    # A receipt altered in the archive does not verify.
    tampered = json.loads(files[receipts[0]])
    tampered["receipt"]["purposes"][0]["status"] = "refused"
    (out / "bad.json").write_text(json.dumps(tampered))
    result = runner.invoke(
        cli,
        ["receipt", "verify", str(out / "bad.json"), "--checkpoint", str(out / "checkpoint.txt"),
         "--public-key", str(out / "public-keys.json")],
    )  # fmt: skip
    assert result.exit_code == 1


def test_the_readme_is_in_the_persons_language(api: Api) -> None:
    english = archive(api.client.get("/v1/subjects/bob/export", headers=api.bob).content)
    assert english["README.txt"].decode().startswith("Your data in consentry")
    french = archive(api.client.get("/v1/subjects/bob/export?lang=fr", headers=api.bob).content)[
        "README.txt"
    ].decode()
    assert french.startswith("Vos données chez consentry")
    assert "events.csv :" in french and "receipts/ :" in french
    indonesian = archive(
        api.client.get("/v1/subjects/bob/export?lang=id", headers=api.bob).content
    )["README.txt"].decode()
    assert indonesian.startswith("Data Anda di consentry")


def test_a_platform_admin_may_export(api: Api) -> None:
    r = api.client.get("/v1/subjects/bob/export", headers=api.platform)
    assert r.status_code == 200
    assert "events.json" in archive(r.content)


def test_anyone_else_gets_the_answer_for_a_subject_that_does_not_exist(api: Api) -> None:
    """An attacker cannot tell bob (who exists) from ghost (who does not), whatever
    credential they hold: another person, bob's own account's admin, another account's
    admin, a service key, a token claiming a role it may not export with."""
    ghost = api.client.get("/v1/subjects/ghost/export", headers=api.platform)
    assert ghost.status_code == 404
    expected = ghost.json()
    attackers = {
        "another person": api.as_("carol"),
        "bob's account admin": api.alice,
        "another account's admin": api.as_("zed", "account_admin", "globex"),
        "a service key": api.service,
        "a service token named bob": api.as_("bob", "service"),
    }
    for who, headers in attackers.items():
        for subject in ("bob", "ghost"):
            r = api.client.get(f"/v1/subjects/{subject}/export", headers=headers)
            assert r.status_code == 404, who
            assert r.headers["content-type"] == ghost.headers["content-type"], who
            # Word for word the same but for the id asked for (in detail and instance).
            assert r.json() == json.loads(json.dumps(expected).replace("ghost", subject)), who
    assert api.client.get("/v1/subjects/bob/export").status_code == 401


def test_download_my_data_on_me(api: Api) -> None:
    client = TestClient(api.client.app, raise_server_exceptions=False)
    r = client.get("/login", params={"token": sign("bob", "subject")}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/me?lang=fr").text
    assert re.search(r'<a href="/me/export" download>Télécharger mes données</a>', page)
    r = client.get("/me/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    files = archive(r.content)
    assert files["README.txt"].decode().startswith("Vos données chez consentry")  # the cookie
    events = json.loads(files["events.json"])
    # Two choices, and the notice the page showed (in French: the page's language)
    assert len(events) == 3 + 1 and events[-1]["kind"] == "notice.served"
    assert events[-1]["language"] == "fr"
    signed_out = TestClient(api.client.app, raise_server_exceptions=False)
    r = signed_out.get("/me/export", follow_redirects=False)
    assert r.status_code in (303, 401)
