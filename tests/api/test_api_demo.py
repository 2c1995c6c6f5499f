"""``python -m consentry.demo`` builds its stores fresh and prints working sign-in links."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from consentry import Store
from consentry.api import Settings, create_app
from consentry.demo import ROOT, build, main


def test_demo_builds_and_its_links_sign_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "demo"
    assert main(["--no-serve", "--dir", str(directory)]) == 0
    text = capsys.readouterr().out
    assert (directory / "links.txt").read_text(encoding="utf-8").strip() == text.strip()
    links = re.findall(r"http://127\.0\.0\.1:8000/login\?token=(\S+)", text)
    assert len(links) == 6
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
        # The cross-organisation meeting: gina (globex, training off) as acme's guest.
        guest = store.check(
            ["bob@acme.example", "gina@globex.example"], "ai.training", "content.audio",
            account="acme",
        )  # fmt: skip
        assert (str(guest.reason), guest.subject) == ("account_off", "gina@globex.example")
        assert store.explain(guest)["decided_by"]["account"] == "globex"
        summary = ("ai.feature.meeting_summary", "content.transcript")
        assert store.check("gina@globex.example", *summary, account="acme").allowed
        assert not store.check("gina@globex.example", *summary).allowed
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_demo(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """The demo in a process of its own, its output in a file (never a pipe a test could
    block on reading)."""
    out = (tmp_path / "demo.out").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "consentry.demo", "--dir", str(tmp_path / "demo"), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_a_busy_port_is_named_before_anything_is_built(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = str(_free_port())
        for args in (["--port", str(port)], ["--port", other, "--music-port", str(port)]):
            proc = _run_demo(tmp_path, *args)
            try:
                assert proc.wait(timeout=120) == 1
            finally:
                _stop(proc)
            text = (tmp_path / "demo.out").read_text(encoding="utf-8")
            assert f"port {port} on 127.0.0.1 is busy" in text
            assert "make demo PORT=" in text and "--music-port" in text
            assert "login?token=" not in text and "Traceback" not in text
            assert not (tmp_path / "demo").exists()


def test_the_two_services_keep_their_own_sessions(tmp_path: Path) -> None:
    """Cookies ignore ports: with one name, signing in to music signed you out of meetings."""
    meetings, music = _free_port(), _free_port()
    proc = _run_demo(tmp_path, "--port", str(meetings), "--music-port", str(music))
    try:
        deadline = time.monotonic() + 180
        output = tmp_path / "demo.out"
        while "Serving until" not in output.read_text(encoding="utf-8"):
            assert proc.poll() is None, output.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "the demo did not start serving in 180 s"
            time.sleep(0.2)
        text = output.read_text(encoding="utf-8")
        bob = re.search(rf"(http://127\.0\.0\.1:{meetings}/login\?token=\S+)", text)
        frank = re.search(rf"(http://127\.0\.0\.1:{music}/login\?token=\S+)", text)
        assert bob and frank
        # One cookie jar for both, as a browser has.
        with httpx.Client(timeout=30, follow_redirects=True) as browser:
            assert browser.get(bob.group(1)).status_code == 200
            assert browser.get(frank.group(1)).status_code == 200
            names = {c.name for c in browser.cookies.jar}
            assert names == {"consentry_meetings_session", "consentry_music_session"}
            me = browser.get(f"http://127.0.0.1:{meetings}/me")
            assert me.status_code == 200 and "alice@acme.example" in me.text
            me = browser.get(f"http://127.0.0.1:{music}/me")
            assert me.status_code == 200 and "frank-the-artist" in me.text
    finally:
        _stop(proc)
    assert proc.returncode == 0
