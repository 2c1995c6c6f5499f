"""The receiver docs/integrating.md shows (docs/examples/withdrawal_receiver.py) works: it
accepts consentry's signed messages, refuses a tampered one, and acts on a withdrawal's impact
once even when the message comes twice."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gate_support_outbound import gate_one
from outbound_support import deliverer, pump, settled

from consentry import Store
from consentry.outbound import signing, subscriptions
from support import MEETINGS

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "withdrawal_receiver.py"


class Lines:
    """The receiver's output lines, read by a thread (every wait has a deadline)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.queue.put(line.strip())

    def next(self, timeout_s: float = 60) -> str:  # a loaded machine starts Python slowly
        try:
            return self.queue.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError("the receiver printed nothing in time") from None

    def rest(self) -> list[str]:
        self.thread.join(10)
        return [self.queue.get() for _ in range(self.queue.qsize())]


def test_the_guide_shows_the_receiver_that_is_tested() -> None:
    guide = (EXAMPLE.parents[1] / "integrating.md").read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in guide


def test_the_documented_receiver(make_store: Callable[..., Store], tmp_path: Path) -> None:
    store = make_store(MEETINGS)
    store.give_consent("alice", "ai.training", ["content"])
    dataset = gate_one(store, tmp_path / "d", "alice")
    model = store.register_model("asr", [dataset])
    secret = signing.new_secret()
    env = dict(os.environ, CONSENTRY_WEBHOOK_SECRET=secret, PORT="0")
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    lines = Lines(process)
    try:
        port = int(lines.next().rsplit(" ", 1)[1])
        url = f"http://127.0.0.1:{port}/consentry"
        sub = subscriptions.create(store, url, types=["consent.withdrawn"], secret=secret)
        event = store.withdraw_consent("alice", "ai.training", ["content"])
        d = deliverer(store)
        pump(d, settled(store, sub.id, 1))
        assert json.loads(lines.next()) == {
            "stop_using": "alice",
            "purpose": "ai.training",
            "categories": ["content"],
        }
        assert json.loads(lines.next()) == {
            "retrain_or_unlearn": dataset,
            "models": [model.id],
        }
        # The same message again (a retry after a lost answer): accepted, not acted on twice.
        (first,) = subscriptions.deliveries(store, sub.id)
        subscriptions.replay(store, sub.id, event.seq)
        pump(
            d,
            lambda: (
                subscriptions.deliveries(store, sub.id)[0]["delivered_at"]
                not in (None, first["delivered_at"])
            ),
        )
        d.stop()
        # A tampered body is refused.
        body = b'{"id": "x", "type": "org.consentry.consent.withdrawn", "data": {}}'
        headers = signing.headers(secret, "x", b"something else", now=time.time())
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("a tampered message was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        process.terminate()
        process.wait(10)
    assert lines.rest() == []  # the replayed message was not acted on twice
