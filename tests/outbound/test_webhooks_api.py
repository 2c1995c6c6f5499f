"""``/v1/webhooks`` (platform administrators; account administrators for their own account
only), ``consentry webhooks …`` and the delivery metrics on ``/metrics``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from outbound_support import deliverer, pump, settled
from typer.testing import CliRunner
from webhook_receiver import Receiver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from api_support import Api, make_api

from consentry.cli import app as cli
from consentry.outbound import subscriptions

__all__ = ["make_api"]


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def test_a_platform_admin_manages_webhooks(api: Api, receiver: Receiver) -> None:
    made = api.client.post(
        "/v1/webhooks", json={"url": receiver.url, "types": ["consent.*"]}, headers=api.platform
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["types"] == ["org.consentry.consent.*"]
    listed = api.client.get("/v1/webhooks", headers=api.platform).json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    one = api.client.get(f"/v1/webhooks/{hook['id']}", headers=api.platform).json()
    assert one["url"] == receiver.url and "secret" not in one
    api.client.put(
        "/v1/subjects/bob/consents/ai.training",
        json={"categories": ["content.audio"], "status": "given"},
        headers=api.bob,
    )
    event = api.store.give_consent("erin", "ai.training", ["content.audio"])
    d = deliverer(api.store)
    pump(d, lambda: any(r.headers["webhook-id"] == event.id for r in receiver.received))
    d.stop()
    rows = api.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=api.platform).json()
    assert event.id in {r["event_id"] for r in rows}
    assert all(r["status"] == "delivered" for r in rows)
    replay = api.client.post(
        f"/v1/webhooks/{hook['id']}/replay", json={"from_seq": event.seq}, headers=api.platform
    )
    assert replay.status_code == 202 and replay.json()["cursor_seq"] == event.seq - 1
    gone = api.client.delete(f"/v1/webhooks/{hook['id']}", headers=api.platform)
    assert gone.status_code == 204
    assert api.client.get("/v1/webhooks", headers=api.platform).json() == []


def test_an_account_admin_sees_and_subscribes_to_their_account_only(
    api: Api, receiver: Receiver, make_receiver: Callable[[], Receiver]
) -> None:
    zed = api.as_("zed", "account_admin", "globex")
    other = api.client.post(
        "/v1/webhooks", json={"url": receiver.url, "account": "acme"}, headers=zed
    )
    assert other.status_code == 403 and other.headers["content-type"].startswith(
        "application/problem+json"
    )
    own = api.client.post("/v1/webhooks", json={"url": receiver.url}, headers=api.alice)
    assert own.status_code == 201 and own.json()["account"] == "acme"
    hook = own.json()["id"]
    everything = make_receiver()
    platform = api.client.post("/v1/webhooks", json={"url": everything.url}, headers=api.platform)
    assert platform.status_code == 201
    # zed sees neither acme's nor the platform's subscription, and cannot touch them.
    assert api.client.get("/v1/webhooks", headers=zed).json() == []
    for method, path in (
        ("GET", f"/v1/webhooks/{hook}"),
        ("GET", f"/v1/webhooks/{hook}/deliveries"),
        ("DELETE", f"/v1/webhooks/{hook}"),
    ):
        assert api.client.request(method, path, headers=zed).status_code == 404
    assert (
        api.client.post(
            f"/v1/webhooks/{hook}/replay", json={"from_seq": 1}, headers=zed
        ).status_code
        == 404
    )
    assert [h["id"] for h in api.client.get("/v1/webhooks", headers=api.alice).json()] == [hook]
    # People and backends do not manage webhooks.
    assert api.client.get("/v1/webhooks", headers=api.bob).status_code == 403
    assert api.client.get("/v1/webhooks", headers=api.service).status_code == 403
    # acme's subscription receives acme's events only.
    api.store.set_account("globex", "ai.training", "off")
    mine = api.store.set_account("acme", "ai.training", "off")
    d = deliverer(api.store)
    pump(d, settled(api.store, hook, 1))
    d.stop()
    assert [r.headers["webhook-id"] for r in receiver.received] == [mine.id]
    acme_rows = subscriptions.deliveries(api.store, hook)
    assert [r["event_id"] for r in acme_rows] == [mine.id]


def test_bad_webhook_requests_are_problems(api: Api) -> None:
    for body in ({"url": "ftp://x"}, {"url": "not a url"}, {"url": "http://h", "timeout_s": 0}):
        answer = api.client.post("/v1/webhooks", json=body, headers=api.platform)
        assert answer.status_code == 422, body
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert api.client.get("/v1/webhooks/wh_nope", headers=api.platform).status_code == 404


def test_delivery_metrics(api: Api, receiver: Receiver) -> None:
    hook = subscriptions.create(api.store, receiver.url)
    receiver.status = 500
    api.store.give_consent("erin", "ai.training", ["content.audio"])
    d = deliverer(api.store)
    pump(d, lambda: receiver.attempts >= 2)
    d.stop()
    text = api.client.get("/metrics").text
    assert f'consentry_webhook_messages{{state="queued",subscription="{hook.id}"}} 1.0' in text
    retries = next(
        line
        for line in text.splitlines()
        if line.startswith(f'consentry_webhook_retries{{subscription="{hook.id}"}}')
    )
    assert float(retries.split()[-1]) >= 2  # every failed attempt so far is to be retried
    assert f'consentry_webhook_oldest_undelivered_seconds{{subscription="{hook.id}"}}' in text


def test_the_webhooks_cli(api: Api, receiver: Receiver) -> None:
    runner = CliRunner()
    db = ["--db", api.store.url]
    added = runner.invoke(
        cli, [*db, "webhooks", "add", receiver.url, "--type", "member.*", "--json"]
    )
    assert added.exit_code == 0, added.output
    hook = json.loads(added.output)
    assert hook["secret"].startswith("whsec_") and hook["types"] == ["org.consentry.member.*"]
    listed = runner.invoke(cli, [*db, "webhooks", "list", "--json"])
    assert [h["id"] for h in json.loads(listed.output)] == [hook["id"]]
    receiver.status = 410
    api.store.add_member("erin", "acme")
    api.store.give_consent("erin", "ai.training", ["content.audio"])  # not a member.* type
    done = runner.invoke(
        cli, [*db, "deliver", "--once"], env={"CONSENTRY_WEBHOOK_RETRY_TOTAL_S": "0.001"}
    )
    assert done.exit_code == 0, done.output
    failed = runner.invoke(cli, [*db, "webhooks", "deliveries", hook["id"], "--failed", "--json"])
    rows = json.loads(failed.output)
    assert [(r["type"], r["last_status"]) for r in rows] == [("org.consentry.member.added", 410)]
    receiver.status = 204
    replay = runner.invoke(
        cli, [*db, "webhooks", "replay", hook["id"], "--from-seq", str(rows[0]["seq"])]
    )
    assert replay.exit_code == 0, replay.output
    assert runner.invoke(cli, [*db, "deliver", "--once"]).exit_code == 0
    receiver.wait_for(1, timeout_s=10)
    table = runner.invoke(cli, [*db, "webhooks", "deliveries", hook["id"]])
    assert "delivered" in table.output
    removed = runner.invoke(cli, [*db, "webhooks", "remove", hook["id"]])
    assert removed.exit_code == 0
    missing = runner.invoke(cli, [*db, "webhooks", "remove", hook["id"]])
    assert missing.exit_code == 2 and "no webhook subscription" in missing.output


def test_the_service_delivers_while_it_runs_and_stops_cleanly(
    make_api: Callable[..., Api], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from fastapi.testclient import TestClient

    from consentry.api import create_app

    monkeypatch.setenv("CONSENTRY_WEBHOOK_POLL_S", "0.01")
    api = make_api()
    sub = subscriptions.create(api.store, receiver.url)
    with TestClient(create_app(api.settings, store=api.store)) as client:
        assert any(t.name == "consentry-deliverer" for t in threading.enumerate())
        answer = client.put(
            "/v1/accounts/acme/settings/ai.training",
            json={"setting": "off"},
            headers=api.alice,
        )
        assert answer.status_code == 200, answer.text
        (got,) = receiver.wait_for(1, timeout_s=30)
        assert got.headers["webhook-id"] == answer.json()["id"]
    assert not any(t.name == "consentry-deliverer" for t in threading.enumerate())
    assert settled(api.store, sub.id, 1)()


def test_serve_can_leave_delivery_to_deliver_processes(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from fastapi.testclient import TestClient

    from consentry.api import create_app

    monkeypatch.setenv("CONSENTRY_DELIVER", "false")
    api = make_api()
    with TestClient(create_app(api.settings, store=api.store)):
        assert not any(t.name == "consentry-deliverer" for t in threading.enumerate())
