"""``python -m consentry.demo`` builds its stores fresh and prints working sign-in links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consentry import Store
from consentry.api import Settings, create_app
from consentry.demo import build, main


def test_demo_builds_and_its_links_sign_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "demo"
    assert main(["--no-serve", "--dir", str(directory)]) == 0
    text = capsys.readouterr().out
    assert (directory / "links.txt").read_text(encoding="utf-8").strip() == text.strip()
    links = re.findall(r"http://127\.0\.0\.1:8000/login\?token=(\S+)", text)
    assert len(links) == 5
    key = re.search(r"(csk_\S+)", text)
    assert key
    with Store(f"sqlite:///{directory}/meetings.db") as store:
        assert [p.version for p in store.policies()] == ["2023-07", "2023-08"]
        acme = store.account_state("acme")
        assert len(acme["members"]) == 4
        assert acme["features"] == {"ai.feature.meeting_summary": "enabled"}
        assert store.check("bob@acme.example", "ai.training", "content.audio").allowed
        assert store.check("carol@acme.example", "ai.training", "content.audio").reason == "refused"
        (dataset,) = store.datasets()
        assert dataset.name == "meetings-asr-v1" and dataset.output_items > 0
        assert [m.name for m in store.models()] == ["meetings-asr"]
        assert store.impact("bob@acme.example").to_dict()["summary"]["models"] == 1
    # The service the demo serves accepts its links and its key.
    demo = build(tmp_path / "again")[0]
    client = TestClient(create_app(Settings(database_url=demo.url, jwt_secret=demo.secret)))
    person = demo.people[1]
    r = client.get(demo.link("127.0.0.1", person).split("8000", 1)[1], follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/me"
    r = client.post(
        "/v1/decisions",
        headers={"Authorization": f"Bearer {demo.service_key}"},
        json={"subject": person.sub, "purpose": "ai.training", "category": "content"},
    )
    assert r.json()["allowed"] is True
    client.close()


def test_demo_rebuilds_fresh(tmp_path: Path) -> None:
    first = build(tmp_path)
    (tmp_path / "stray.txt").write_text("left over")
    second = build(tmp_path)
    assert not (tmp_path / "stray.txt").exists()
    with Store(second[0].url) as store:
        assert len(store.datasets()) == 1 and len(store.models()) == 1
    assert first[0].url == second[0].url
    music = second[1]
    with Store(music.url) as store:
        assert store.policy().id == "music"
