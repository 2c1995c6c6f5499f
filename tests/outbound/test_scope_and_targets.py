"""Who receives what (an account's subscription: its events and its members' choices, never
another account's), and where a webhook may point (no loopback, private or link-local target
unless the operator allows it; checked again at every connection, so DNS rebinding is caught).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from outbound_support import deliverer, pump, settled, statuses
from webhook_receiver import Receiver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from api_support import Api, make_api

from consentry.errors import InvalidInput
from consentry.outbound import subscriptions, targets
from consentry.outbound.targets import ENV, TargetPolicy, TargetRefused

__all__ = ["make_api"]


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def test_an_account_subscription_gets_its_members_choices_and_no_other_accounts(
    api: Api, make_receiver: Callable[[], Receiver]
) -> None:
    acme_rx, globex_rx = make_receiver(), make_receiver()
    zed = api.as_("zed", "account_admin", "globex")
    acme = api.client.post("/v1/webhooks", json={"url": acme_rx.url}, headers=api.alice).json()
    globex = api.client.post("/v1/webhooks", json={"url": globex_rx.url}, headers=zed).json()
    bob = api.store.give_consent("bob", "ai.training", ["content.audio"])  # acme's member
    api.store.give_consent("erin", "ai.training", ["content.audio"])  # nobody's member
    bob_withdraws = api.store.withdraw_consent("bob", "ai.training", ["content.audio"])
    zed_own = api.store.give_consent("zed", "ai.training", ["content.audio"])  # globex's
    acme_off = api.store.set_account("acme", "ai.training", "off")
    globex_off = api.store.set_account("globex", "ai.training", "off")
    d = deliverer(api.store)
    pump(d, lambda: settled(api.store, acme["id"], 3)() and settled(api.store, globex["id"], 2)())
    d.stop()
    got = [r.headers["webhook-id"] for r in acme_rx.received]
    assert sorted(got) == sorted([bob.id, bob_withdraws.id, acme_off.id])
    assert [i for i in got if i != acme_off.id] == [bob.id, bob_withdraws.id]  # bob's order
    # globex's administrator never sees acme's members' choices, nor erin's.
    theirs = [r.headers["webhook-id"] for r in globex_rx.received]
    assert sorted(theirs) == sorted([zed_own.id, globex_off.id])


def test_a_removed_member_s_later_choices_no_longer_reach_the_account(
    api: Api, receiver: Receiver
) -> None:
    hook = api.client.post("/v1/webhooks", json={"url": receiver.url}, headers=api.alice).json()
    before = api.store.give_consent("carol", "ai.training", ["content.audio"])
    d = deliverer(api.store)
    pump(d, settled(api.store, hook["id"], 1))
    removed = api.store.remove_member("carol", "acme")
    api.store.withdraw_consent("carol", "ai.training", ["content.audio"])
    pump(d, settled(api.store, hook["id"], 2))
    d.stop()
    assert [r.headers["webhook-id"] for r in receiver.received] == [before.id, removed.id]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_an_account_admin_cannot_point_a_webhook_inside_the_network(
    api: Api, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    answer = api.client.post("/v1/webhooks", json={"url": url}, headers=api.alice)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "not a public address" in problem["detail"] and ENV in problem["detail"]
    assert api.client.get("/v1/webhooks", headers=api.platform).json() == []


def test_the_operator_allows_networks_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = TargetPolicy.parse("127.0.0.0/8, 10.20.0.0/16")
    assert policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert policy.allows(ipaddress.ip_address("10.20.3.4"))
    assert not policy.allows(ipaddress.ip_address("10.21.0.1"))
    assert policy.allows(ipaddress.ip_address("8.8.8.8"))  # public: always
    assert not policy.allows(ipaddress.ip_address("224.0.0.1"))  # multicast: never by default
    assert TargetPolicy.parse("*").allows(ipaddress.ip_address("169.254.169.254"))
    with pytest.raises(InvalidInput, match="not a network"):
        TargetPolicy.parse("10.0.0.0/8,intranet")
    monkeypatch.setenv(ENV, "10.0.0.0/8")
    targets.check_target("10.1.2.3")  # allowed now
    with pytest.raises(InvalidInput, match="not a public address"):
        targets.check_target("127.0.0.1")


def _rebinding(host: str, first: str, then: str) -> Callable[..., Any]:
    """getaddrinfo for one name that answers ``first`` once, then ``then`` (what an attacker's
    DNS server with a zero TTL does); every other name resolves as usual."""
    real = socket.getaddrinfo
    answers = [first]

    def resolve(name: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, port, *args, **kwargs)
        address = answers.pop() if answers else then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    return resolve


def test_dns_rebinding_is_caught_at_delivery(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    port = int(receiver.url.split(":")[2].split("/")[0])
    monkeypatch.setattr(
        targets.socket, "getaddrinfo", _rebinding("hooks.rebind.test", "93.184.215.14", "127.0.0.1")
    )
    url = f"http://hooks.rebind.test:{port}/hook"
    hook = api.client.post("/v1/webhooks", json={"url": url}, headers=api.alice)
    assert hook.status_code == 201, hook.text  # it resolved to a public address then
    sub_id = hook.json()["id"]
    api.store.give_consent("bob", "ai.training", ["content.audio"])
    d = deliverer(api.store)
    pump(d, lambda: statuses(api.store, sub_id).get("pending") == 1 and _tried(api, sub_id))
    d.stop()
    assert receiver.received == []  # nothing reached 127.0.0.1
    row = subscriptions.deliveries(api.store, sub_id)[0]
    assert row["status"] == "pending" and "not a public address" in row["last_error"]
    with pytest.raises(TargetRefused):
        TargetPolicy().resolve("hooks.rebind.test", port)


def _tried(api: Api, sub_id: str) -> bool:
    rows = subscriptions.deliveries(api.store, sub_id)
    return bool(rows) and rows[0]["attempts"] >= 1
