"""``consentry serve --workers 2``: two processes, each with its own snapshot, share one ledger.

Runs on SQLite and, when CONSENTRY_TEST_POSTGRES_URL is set (``make test`` sets it when the
server answers), on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from api_support import MEETINGS, SECRET, bearer, sign

from consentry import Store
from consentry.api.keys import ApiKeys

pytestmark = pytest.mark.slow

SUBJECTS = [f"w{i:02d}" for i in range(24)]
GIVE = {"action": "give", "purpose": "ai.training", "categories": ["content"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(backend_url: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    with Store(backend_url) as store:
        store.init(policies=[MEETINGS])
        keys = ApiKeys(store)
        service, platform = (
            keys.create("svc", "service").secret,
            keys.create("ops", "platform_admin").secret,
        )
    port = _free_port()
    env = dict(
        os.environ,
        CONSENTRY_DATABASE_URL=backend_url,
        CONSENTRY_JWT_SECRET=SECRET,
        CONSENTRY_DECISION_MAX_STALENESS_MS="60000",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir()
    cli = Path(sys.executable).parent / "consentry"
    proc = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers too can be stopped, as one process group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a loaded machine starts two workers slowly
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                # Stop the server and its workers (they hold stderr open), then read what it
                # said, within a deadline.
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    err = proc.communicate(timeout=20)[1].decode()
                except subprocess.TimeoutExpired:
                    err = "(no output within 20 s)"
                pytest.fail(f"consentry serve did not start: {err[-2000:]}")
            time.sleep(0.2)
        yield base, service, platform
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def test_two_workers_share_one_ledger(served: tuple[str, str, str]) -> None:
    base, service, platform = served

    def write(subject: str) -> int:
        # A fresh connection per request, so that both workers take writes.
        with httpx.Client(base_url=base) as client:
            r = client.put(f"/v1/accounts/acme/members/{subject}", headers=bearer(service))
            assert r.status_code == 201, r.text
            r = client.post(
                f"/v1/subjects/{subject}/consents",
                json=GIVE,
                headers=bearer(sign(subject, "subject")),
            )
            assert r.status_code == 201, r.text
            seq: int = r.json()["seq"]
            return seq

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(write, SUBJECTS))
    assert len(set(seqs)) == len(SUBJECTS)

    # Each worker's snapshot is a minute stale by configuration; min_seq makes every answer
    # include the write it names, whichever worker answers.
    def decide(args: tuple[str, int]) -> str:
        subject, seq = args
        with httpx.Client(base_url=base) as client:
            r = client.post(
                "/v1/decisions",
                headers=bearer(service),
                json={
                    "subject": subject,
                    "purpose": "ai.training",
                    "category": "content.audio",
                    "min_seq": seq,
                },
            )
            assert r.status_code == 200, r.text
            assert r.json()["ledger_seq"] >= seq
            reason: str = r.json()["reason"]
            return reason

    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(decide, zip(SUBJECTS, seqs, strict=True)))
    assert set(reasons) == {"consent"}

    with httpx.Client(base_url=base) as client:
        verified = client.post("/v1/ledger/verify", headers=bearer(platform)).json()
        assert verified["ok"] is True
        # The store's keys, 2 policy versions, a membership and a consent per subject, gap-free.
        assert verified["head_seq"] == verified["checked"] == 3 + 2 * len(SUBJECTS)
        batch = client.post(
            "/v1/decisions/batch",
            headers=bearer(service),
            json={
                "purpose": "ai.training",
                "category": "content.audio",
                "subjects": SUBJECTS,
                "min_seq": max(seqs),
            },
        ).json()
        assert batch["allowed"] == len(SUBJECTS)
        metrics = client.get("/metrics").text
        # Both workers' counters add up in one exposition.
        line = next(
            ln
            for ln in metrics.splitlines()
            if ln.startswith('consentry_http_requests_total{method="POST",route="/v1/decisions"')
        )
        assert float(line.rsplit(" ", 1)[1]) == len(SUBJECTS)
