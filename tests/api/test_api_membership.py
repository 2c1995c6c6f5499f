"""Who may put a person in an account (issue 9 §1), over the real API on both backends.

An account administrator only invites; the person joins by accepting. An administrator sees
of a member only what concerns their own account. An API key is never a person. Web
sessions are kept on the server and end at once. The CLI applies the API's rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from api_support import Api, bearer, sign
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.api.keys import ApiKeys
from consentry.cli import app as cli

DECISION = {"purpose": "ai.training", "category": "content.audio"}


@pytest.fixture
def api(make_api: Callable[..., Api], backend_url: str) -> Api:
    return make_api(backend_url, decision_max_staleness_ms=0)


def decide(api: Api, subject: str) -> dict[str, Any]:
    r = api.client.post("/v1/decisions", json={"subject": subject, **DECISION}, headers=api.service)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def acme_consents_for_its_members(api: Api) -> None:
    r = api.client.put(
        "/v1/accounts/acme/settings/ai.training", json={"setting": "on"}, headers=api.alice
    )
    assert r.status_code == 200, r.text


def test_the_cross_account_takeover_is_refused(api: Api) -> None:
    """The issue's attack: acme's admin puts a stranger (zed, of globex) in acme and turns
    training on. Refused: zed's decision stays deny (no_consent) and alice sees nothing."""
    r = api.client.put("/v1/accounts/acme/members/zed", headers=api.alice)
    assert r.status_code == 403, r.text
    assert r.json()["hint"] == "POST /v1/accounts/acme/invitations/zed"
    acme_consents_for_its_members(api)
    assert decide(api, "zed")["reason"] == "no_consent"
    assert decide(api, "zed")["allowed"] is False
    for path in ("/v1/subjects/zed", "/v1/subjects/zed/events"):
        assert api.client.get(path, headers=api.alice).status_code == 403

    # An invitation alone changes nothing: the invitee counts for nothing in acme.
    r = api.client.post("/v1/accounts/acme/invitations/zed", headers=api.alice)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "member.invited"
    assert decide(api, "zed")["reason"] == "no_consent"
    assert api.client.get("/v1/subjects/zed", headers=api.alice).status_code == 403
    assert "acme" not in api.store.state().accounts_of("zed")
    # Nor can the admin answer for the invitee.
    r = api.client.post("/v1/subjects/zed/invitations/acme/accept", headers=api.alice)
    assert r.status_code == 403
    assert decide(api, "zed")["reason"] == "no_consent"


def test_an_invitation_accepted_then_the_account_settings_apply(api: Api, clock: Any) -> None:
    acme_consents_for_its_members(api)
    erin = api.as_("erin")
    assert (
        api.client.post("/v1/accounts/acme/invitations/erin", headers=api.alice).status_code == 201
    )
    invited_at = clock.advance(seconds=1)
    clock.advance(seconds=1)  # the answer comes later
    assert decide(api, "erin")["reason"] == "no_consent"
    listed = api.client.get("/v1/subjects/erin/invitations", headers=erin).json()["invitations"]
    assert [(i["account"], i["invited_by"]) for i in listed] == [("acme", "alice")]
    pending = api.client.get("/v1/accounts/acme/invitations", headers=api.alice).json()
    assert [i["subject"] for i in pending["invitations"]] == ["erin"]

    headers = erin | {"Idempotency-Key": "accept-1"}
    r = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=headers)
    assert r.status_code == 201, r.text
    event = r.json()
    assert (event["kind"], event["actor"], event["account"]) == ("member.accepted", "erin", "acme")
    # A retry returns the same event (the invitation is gone by then).
    again = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=headers)
    assert again.status_code == 201 and again.json()["id"] == event["id"]

    assert decide(api, "erin")["reason"] == "account_consent"
    assert "acme" in api.store.state().accounts_of("erin")
    # Replays agree: before the acceptance, the pending invitation counted for nothing.
    clock.advance(seconds=1)
    check = api.store.check
    assert check("erin", **DECISION, as_of=invited_at).reason.value == "no_consent"
    assert check("erin", **DECISION, as_of=clock()).reason.value == "account_consent"
    assert api.client.get("/v1/subjects/erin/invitations", headers=erin).json() == {
        "invitations": []
    }
    assert api.client.get("/v1/subjects/erin", headers=api.alice).status_code == 200
    # Inviting a member is a conflict, not a second membership.
    assert (
        api.client.post("/v1/accounts/acme/invitations/erin", headers=api.alice).status_code == 409
    )


def test_an_invitation_declined_never_applies(api: Api) -> None:
    acme_consents_for_its_members(api)
    erin = api.as_("erin")
    assert (
        api.client.post("/v1/accounts/acme/invitations/erin", headers=api.alice).status_code == 201
    )
    r = api.client.post("/v1/subjects/erin/invitations/acme/decline", headers=erin)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "member.declined"
    assert decide(api, "erin")["reason"] == "no_consent"
    assert api.store.invitations(subject="erin") == []
    assert api.client.get("/v1/subjects/erin", headers=api.alice).status_code == 403
    # The invitation is spent: accepting now is refused.
    r = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=erin)
    assert r.status_code == 404
    assert decide(api, "erin")["reason"] == "no_consent"


def test_an_invitation_withdrawn_by_the_account_never_applies(api: Api) -> None:
    acme_consents_for_its_members(api)
    erin, zed = api.as_("erin"), api.as_("zed", "account_admin", "globex")
    assert (
        api.client.post("/v1/accounts/acme/invitations/erin", headers=api.alice).status_code == 201
    )
    # Another account's administrator cannot withdraw it (as anywhere else in acme), nor can
    # the invitee or another person use this route (they decline instead).
    for headers in (zed, erin, api.as_("bob")):
        r = api.client.delete("/v1/accounts/acme/invitations/erin", headers=headers)
        assert r.status_code == 403, r.text
    assert [i["subject"] for i in api.store.invitations(account="acme")] == ["erin"]

    headers = api.alice | {"Idempotency-Key": "withdraw-1"}
    r = api.client.delete("/v1/accounts/acme/invitations/erin", headers=headers)
    assert r.status_code == 200, r.text
    event = r.json()
    assert (event["kind"], event["actor"], event["subject"], event["account"]) == (
        "member.declined",
        "alice",
        "erin",
        "acme",
    )
    assert event["payload"] == {"withdrawn": True}
    # A retry returns the same event; without the key, there is nothing left to withdraw.
    again = api.client.delete("/v1/accounts/acme/invitations/erin", headers=headers)
    assert again.status_code == 200 and again.json()["id"] == event["id"]
    r = api.client.delete("/v1/accounts/acme/invitations/erin", headers=api.alice)
    assert r.status_code == 404 and "no pending invitation" in r.json()["detail"]

    assert api.client.get("/v1/subjects/erin/invitations", headers=erin).json() == {
        "invitations": []
    }
    r = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=erin)
    assert r.status_code == 404
    assert decide(api, "erin")["reason"] == "no_consent"
    # The state replay and its audit know the withdrawal: the ledger verifies, the state too.
    result = api.store.verify()
    assert result.ok and not result.divergences, result.problem
    assert not api.store.rebuild_state().changed


def test_the_cli_withdraws_an_invitation(api: Api) -> None:
    api.store.invite_member("erin", "acme", actor="alice")
    runner = CliRunner()
    args = ["--db", api.store.url, "member", "uninvite", "erin", "acme", "--actor", "alice"]
    r = runner.invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    assert api.store.invitations(subject="erin") == []
    again = runner.invoke(cli, args)
    assert again.exit_code != 0 and "no pending invitation" in again.output


def test_accepting_with_no_invitation_is_refused(api: Api) -> None:
    erin = api.as_("erin")
    r = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=erin)
    assert r.status_code == 404
    problem = r.json()
    assert "no pending invitation" in problem["detail"] and problem["hint"]
    assert "acme" not in api.store.state().accounts_of("erin")
    # Only the person answers: not another person, not the service.
    api.store.invite_member("erin", "acme", actor="alice")
    for caller in (api.bob, api.service, api.platform):
        r = api.client.post("/v1/subjects/erin/invitations/acme/accept", headers=caller)
        assert r.status_code == 403, r.text
    assert "acme" not in api.store.state().accounts_of("erin")


def test_the_library_and_the_platform_add_members_directly(api: Api) -> None:
    r = api.client.put("/v1/accounts/acme/members/erin", headers=api.service)
    assert r.status_code == 201 and r.json()["kind"] == "member.added"
    r = api.client.put("/v1/accounts/globex/members/erin", headers=api.platform)
    assert r.status_code == 201
    assert set(api.store.state().accounts_of("erin")) == {"acme", "globex"}


def test_an_admin_sees_only_what_concerns_their_account(api: Api) -> None:
    # bob belongs to acme and (through the platform) to globex; he has choices and receipts.
    assert api.client.put("/v1/accounts/globex/members/bob", headers=api.service).status_code == 201
    body = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
    r = api.client.post("/v1/subjects/bob/consents", json=body, headers=api.bob)
    assert r.status_code == 201
    consent_id = r.json()["id"]
    api.store.invite_member("bob", "initech", actor="initech-admin")

    own = api.client.get("/v1/subjects/bob", headers=api.bob).json()
    assert set(own["accounts"]) == {"acme", "globex"}
    seen = api.client.get("/v1/subjects/bob", headers=api.alice).json()
    assert seen["accounts"] == ["acme"]
    assert [c["purpose"] for c in seen["consents"]] == ["ai.training"]

    full = api.client.get("/v1/subjects/bob/events", headers=api.bob).json()["events"]
    assert {e["account"] for e in full} >= {"acme", "globex", "initech"}
    limited = api.client.get("/v1/subjects/bob/events", headers=api.alice).json()["events"]
    assert limited, "the admin sees the member's choices"
    for e in limited:
        assert e["account"] in (None, "acme"), e
        assert e["kind"].startswith(("consent.", "objection.", "member.")), e
        assert e["receipt_url"] is None
    assert consent_id in {e["id"] for e in limited}
    assert len(limited) < len(full)
    # Someone else's receipt answers as one that does not exist, the admin's member's too.
    r = api.client.get(f"/v1/receipts/{consent_id}", headers=api.alice)
    assert r.status_code == 404

    zed = api.as_("zed", "account_admin", "globex")
    assert api.client.get("/v1/subjects/bob", headers=zed).json()["accounts"] == ["globex"]
    # A mere invitee of initech: initech's admin sees nothing.
    initech = api.as_("ivan", "account_admin", "initech")
    assert api.client.get("/v1/subjects/bob", headers=initech).status_code == 403
    assert api.client.get("/v1/subjects/bob/events", headers=initech).status_code == 403


def test_an_account_admin_key_named_like_a_subject_is_not_that_person(api: Api) -> None:
    api.store.add_member("u1", "acme")
    key = ApiKeys(api.store).create("u1", "account_admin", account="acme").secret
    as_u1 = api.as_("u1")
    body = {"action": "give", "purpose": "ai.training", "categories": ["content"]}
    r = api.client.post("/v1/subjects/u1/consents", json=body, headers=as_u1)
    assert r.status_code == 201
    receipt = r.json()["id"]

    r = api.client.post("/v1/subjects/u1/consents", json=body, headers=bearer(key))
    assert r.status_code == 403, r.text
    assert "never a person" in r.json()["detail"]
    assert api.client.get(f"/v1/receipts/{receipt}", headers=bearer(key)).status_code == 403
    r = api.client.post("/v1/subjects/u1/invitations/acme/accept", headers=bearer(key))
    assert r.status_code == 403
    body_obj = {"purpose": "improvement", "categories": ["service_data"]}
    r = api.client.post("/v1/subjects/u1/objections", json=body_obj, headers=bearer(key))
    assert r.status_code == 403
    # In its role it reads what an admin of acme reads of a member of acme, no more.
    r = api.client.get("/v1/subjects/u1/events", headers=bearer(key))
    assert r.status_code == 200
    assert all(e["receipt_url"] is None for e in r.json()["events"])
    assert len([e for e in api.store.ledger.events(subjects=["u1"])]) == 2


# -- web sessions -------------------------------------------------------------------------


def signed_in(api: Api, sub: str, role: str = "subject", account: str | None = None) -> TestClient:
    client = TestClient(api.client.app, raise_server_exceptions=False)
    r = client.get("/login", params={"token": sign(sub, role, account)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def copy_of(api: Api, client: TestClient) -> TestClient:
    """Another browser holding the same cookie (e.g. one an attacker copied)."""
    other = TestClient(api.client.app, raise_server_exceptions=False)
    other.cookies.update(dict(client.cookies))
    return other


def test_sign_out_ends_the_session_on_the_server(api: Api) -> None:
    bob = signed_in(api, "bob")
    stolen = copy_of(api, bob)
    assert stolen.get("/me").status_code == 200
    r = bob.post("/logout", data={"csrf": csrf(bob.get("/me").text)})
    assert r.status_code == 200
    r = stolen.get("/me", follow_redirects=False)
    assert r.status_code == 401
    assert "not signed in" in r.text


def test_sessions_revoke_ends_all_of_a_persons_sessions(api: Api) -> None:
    phone, laptop = signed_in(api, "bob"), signed_in(api, "bob")
    carol = signed_in(api, "carol")
    assert phone.get("/me").status_code == laptop.get("/me").status_code == 200
    result = CliRunner().invoke(
        cli, ["--db", api.store.url, "sessions", "revoke", "--subject", "bob", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"revoked": 2' in result.output
    assert phone.get("/me").status_code == 401
    assert laptop.get("/me").status_code == 401
    assert carol.get("/me").status_code == 200
    assert api.store.revoke_sessions("bob") == 0


def test_a_removed_member_loses_the_console_at_the_next_request(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    assert alice.get("/admin").status_code == 200
    r = api.client.delete("/v1/accounts/acme/members/alice", headers=api.service)
    assert r.status_code == 200
    assert alice.get("/admin", follow_redirects=False).status_code == 401
    # Nor can they sign in to it again while they are not a member.
    client = TestClient(api.client.app, raise_server_exceptions=False)
    token = sign("alice", "account_admin", "acme")
    r = client.get("/login", params={"token": token}, follow_redirects=False)
    assert r.status_code == 403
    # Added back by the platform, they sign in again; the old session stays ended.
    api.store.add_member("alice", "acme")
    assert alice.get("/admin").status_code == 401
    assert signed_in(api, "alice", "account_admin", "acme").get("/admin").status_code == 200


def test_the_console_invites_and_the_person_accepts_on_me(api: Api) -> None:
    acme_consents_for_its_members(api)
    alice = signed_in(api, "alice", "account_admin", "acme")
    token = csrf(alice.get("/admin").text)
    r = alice.post("/admin/members", data={"csrf": token, "account": "acme", "subject": "zed"})
    assert r.status_code == 200, r.text  # after the redirect
    assert "Invited zed to acme" in r.text
    assert "acme" not in api.store.state().accounts_of("zed")
    assert decide(api, "zed")["reason"] == "no_consent"

    zed = signed_in(api, "zed")
    page = zed.get("/me?lang=fr").text
    assert "acme vous a invité" in page
    r = zed.post(
        "/me/invitations", data={"csrf": csrf(page), "account": "acme", "answer": "accept"}
    )
    assert r.status_code == 200, r.text
    assert "acme" in api.store.state().accounts_of("zed")
    assert "Vous avez rejoint acme." in r.text
    assert decide(api, "zed")["reason"] == "account_consent"
    # A made-up confirmation link says nothing untrue.
    assert "You joined globex" not in zed.get("/me?joined=globex").text
    assert "You declined" not in zed.get("/me?declined=acme").text


# -- the CLI applies the API's rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["acme", "service.delivery", "off"], "no say over 'service.delivery'"),
        (["acme", "ai.training.third_party", "on"], "no say over 'ai.training.third_party'"),
        (["acme", "improvement", "on"], None),
    ],
)
def test_the_cli_refuses_meaningless_account_settings(
    api: Api, args: list[str], reason: str | None
) -> None:
    before = api.store.ledger.head()[0]
    result = CliRunner().invoke(cli, ["--db", api.store.url, "account", "set", *args])
    if reason is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert reason in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert api.store.ledger.head()[0] == before
    # The API says the same.
    r = api.client.put(
        f"/v1/accounts/acme/settings/{args[1]}", json={"setting": args[2]}, headers=api.alice
    )
    assert r.status_code == 422 and reason in r.json()["detail"]


def test_the_cli_refuses_a_feature_that_is_none(api: Api) -> None:
    result = CliRunner().invoke(
        cli, ["--db", api.store.url, "account", "feature", "acme", "ai.training", "on"]
    )
    assert result.exit_code == 2, result.output
    assert "no AI feature 'ai.training'" in " ".join(result.output.split())
