"""The preference centre and the admin console, through plain HTTP (no browser)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_support import MUSIC, Api, sign
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from consentry.api import Settings, create_app
from consentry.errors import InvalidInput
from consentry.ledger import schema
from consentry.web.i18n import TRANSLATIONS, catalog_path

WEB = Path(__file__).resolve().parents[2] / "src" / "consentry" / "web"


def signed_in(api: Api, sub: str, role: str = "subject", account: str | None = None) -> TestClient:
    client = TestClient(api.client.app, raise_server_exceptions=False)
    r = client.get("/login", params={"token": sign(sub, role, account)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def cookie_name(api: Api) -> str:
    """The session cookie's name of this service (one of its store's own by default)."""
    name: str = api.client.app.state.service.sessions.cookie  # type: ignore[attr-defined]
    return name


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def switch(html: str, rule: str) -> str:
    """The <button role="switch"> of a rule."""
    found = re.search(
        rf'<input type="hidden" name="rule" value="{rule}">\s*(<button[^>]*>)', html, re.S
    )
    assert found, f"no switch for {rule}"
    return found.group(1)


# -- sign-in and sessions ----------------------------------------------------------------------


def test_login_sets_an_httponly_samesite_cookie(api: Api) -> None:
    r = api.client.get("/login", params={"token": sign("bob", "subject")}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/me"
    cookie = r.headers["set-cookie"]
    assert f"{cookie_name(api)}=" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Path=/" in cookie
    admin = api.client.get(
        "/login", params={"token": sign("alice", "account_admin", "acme")}, follow_redirects=False
    )
    assert admin.headers["location"] == "/admin"


def test_each_service_has_a_session_cookie_of_its_own(make_api: Callable[..., Api]) -> None:
    """Cookies ignore ports: two services on one host with one cookie name would sign each
    other's people out. By default the name comes from the store; it can be set."""
    first, second = make_api(), make_api()
    names = {cookie_name(first), cookie_name(second)}
    assert len(names) == 2 and all(re.fullmatch(r"consentry_session_[0-9a-f]{8}", n) for n in names)
    # Every worker of one service (one store) agrees on it.
    again = TestClient(create_app(first.settings, store=first.store))
    assert again.app.state.service.sessions.cookie == cookie_name(first)  # type: ignore[attr-defined]
    named = make_api(session_cookie="consentry_meetings_session")
    r = named.client.get("/login", params={"token": sign("bob", "subject")}, follow_redirects=False)
    assert r.headers["set-cookie"].startswith("consentry_meetings_session=")
    with pytest.raises(InvalidInput, match="is not a cookie name"):
        Settings.from_env({"CONSENTRY_SESSION_COOKIE": "my session"})


def test_secure_cookie_when_configured(make_api: Callable[..., Api]) -> None:
    api = make_api(cookie_secure=True)
    r = api.client.get("/login", params={"token": sign("bob", "subject")}, follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]


# Tokens are signed when the test runs, never when it is collected: one signed at collection
# had expired by the time a loaded machine reached the test.
@pytest.mark.parametrize(
    ("make_token", "status", "text", "french", "technical"),
    [
        (lambda: None, 401, "This sign-in link is not valid", "n’est pas valide", "has no token"),
        (lambda: "garbage", 401, "This sign-in link is not valid", "n’est pas valide", "not a JWT"),
        (
            lambda: sign("bob", "subject", secret="another-secret-" + "y" * 32),
            401,
            "This sign-in link is not valid",
            "n’est pas valide",
            "Signature verification failed",
        ),
        (
            lambda: sign("svc", "service"),
            403,
            "This link is not for these pages",
            "n’est pas pour ces pages",
            "role cannot sign in",
        ),
        (
            lambda: sign("bob", "subject", exp=1),
            401,
            "This sign-in link has expired",
            "Ce lien de connexion a expiré",
            "the bearer token has expired",
        ),
    ],
    ids=["none", "garbage", "badly-signed", "service", "expired"],
)
def test_bad_sign_in_links_explain_themselves(
    api: Api,
    make_token: Callable[[], str | None],
    status: int,
    text: str,
    french: str,
    technical: str,
) -> None:
    """A person is told in plain words, in their language, what happened and what to do; a
    program gets the technical detail."""
    token = make_token()
    params = {"token": token} if token else {}
    r = api.client.get("/login", params=params, headers={"Accept": "text/html"})
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert f"<h1>{text}</h1>" in r.text and "What to do" in r.text
    assert "new sign-in link" in r.text
    assert technical not in r.text and "Bearer" not in r.text and "JWT" not in r.text
    r = api.client.get(
        "/login", params=params, headers={"Accept": "text/html", "Accept-Language": "fr"}
    )
    assert r.status_code == status and '<html lang="fr">' in r.text
    assert french in r.text.replace("&#39;", "’").replace("'", "’")
    # A program (no HTML asked for) gets the problem with its technical detail.
    r = api.client.get("/login", params=params)
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json"
    assert technical in r.json()["detail"]


def test_a_service_that_accepts_no_sign_in_links_says_so(make_api: Callable[..., Api]) -> None:
    """No JWT secret or key configured: every link is refused, and the person is told that
    signing in is not set up here (not that their link is bad), in their language."""
    api = make_api(jwt_secret=None)
    params = {"token": sign("bob", "subject")}
    r = api.client.get("/login", params=params, headers={"Accept": "text/html"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert "<h1>Signing in does not work here yet</h1>" in r.text
    assert "has not been set up to accept sign-in links" in r.text
    assert "Please tell the platform that gave you the link." in r.text
    assert "not valid" not in r.text and "JWT" not in r.text
    r = api.client.get(
        "/login", params=params, headers={"Accept": "text/html", "Accept-Language": "fr"}
    )
    assert r.status_code == 401 and '<html lang="fr">' in r.text
    assert "La connexion ne fonctionne pas encore ici" in r.text.replace("&#39;", "'")
    # A program gets the problem, with the technical detail.
    r = api.client.get("/login", params=params)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_a_former_administrator_is_told_why(api: Api) -> None:
    api.store.remove_member("alice", "acme")
    token = sign("alice", "account_admin", "acme")
    r = api.client.get(
        "/login", params={"token": token, "lang": "id"}, headers={"Accept": "text/html"}
    )
    assert r.status_code == 403 and "acme" in r.text and '<html lang="id">' in r.text
    r = api.client.get(
        "/login", params={"token": token, "lang": "en"}, headers={"Accept": "text/html"}
    )
    assert "You no longer administer acme" in r.text
    assert "ask another administrator of acme to invite you again" in r.text


def test_pages_need_a_session(api: Api) -> None:
    r = api.client.get("/me", headers={"Accept": "text/html"})
    assert r.status_code == 401 and "You are not signed in" in r.text
    r = api.client.get("/me?lang=fr", headers={"Accept": "text/html"})
    assert r.status_code == 401 and "Vous n’êtes pas connecté" in r.text.replace("&#39;", "’")
    bob = signed_in(api, "bob")
    r = bob.get("/admin", headers={"Accept": "text/html"})
    assert r.status_code == 403 and "for an organisation&#39;s administrators" in r.text


def _replace_cookie(client: Any, name: str, value: str) -> None:
    """Replace the cookie the server set (same domain and path), rather than add a second one
    beside it that the client would send after the original."""
    original = next(c for c in client.cookies.jar if c.name == name)
    client.cookies.set(name, value, domain=original.domain, path=original.path)
    assert [c.value for c in client.cookies.jar if c.name == name] == [value]


def test_a_tampered_session_is_no_session(api: Api) -> None:
    bob = signed_in(api, "bob")
    name = cookie_name(api)
    cookie = bob.cookies[name]
    body, _, mac = cookie.partition(".")
    # The cookie carries a random session id (issue 9): change one character of it.
    tampered = ("A" if body[0] != "A" else "B") + body[1:]
    _replace_cookie(bob, name, tampered + "." + mac)
    assert bob.get("/me").status_code == 401
    # A well-formed cookie for a session the store never issued is no session either.
    _replace_cookie(bob, name, cookie)
    assert bob.get("/me").status_code == 200
    with api.store.ledger.engine.begin() as conn:
        conn.execute(schema.web_sessions.delete())
    assert bob.get("/me").status_code == 401


def test_sign_out(api: Api) -> None:
    bob = signed_in(api, "bob")
    token = csrf(bob.get("/me").text)
    r = bob.post("/logout", data={"csrf": token})
    assert r.status_code == 200 and "signed out" in r.text
    cleared = r.headers["set-cookie"]
    assert f'{cookie_name(api)}=""' in cleared or "Max-Age=0" in cleared
    assert bob.get("/me").status_code == 401


def test_forms_need_the_csrf_token(api: Api) -> None:
    bob = signed_in(api, "bob")
    bob.get("/me")
    r = bob.post(
        "/me/choices", data={"csrf": "wrong", "rule": "train-on-content", "action": "give"}
    )
    assert r.status_code == 403 and "This form is out of date" in r.text
    r = bob.post("/me/choices", data={"rule": "train-on-content", "action": "give"})
    assert r.status_code == 422
    token = csrf(bob.get("/me").text)
    r = bob.post(
        "/me/choices",
        data={"csrf": token, "rule": "train-on-content", "action": "give"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "another site" in r.text
    assert api.store.subject_state("bob")["consents"] == []


# -- the preference centre ---------------------------------------------------------------------


def test_me_explains_each_use_and_its_basis(api: Api) -> None:
    html = signed_in(api, "bob").get("/me").text
    assert "How your data is used" in html
    assert "How we use meeting content and service data (August 2023)" in html
    for badge in (
        "No choice: part of the service",
        "Only with your opt-in",
        "Your organisation decides",
    ):
        assert badge in html
    assert "What never happens" in html and "third-party AI models" in html
    assert (
        "Your education records and health information are never used for artificial "
        "intelligence or improving our products." in html
    )
    french = signed_in(api, "bob").get("/me?lang=fr").text.replace("&#39;", "’")
    assert "Vos dossiers scolaires et informations de santé ne servent jamais à ces fins" in french
    assert "intelligence artificielle ou améliorer nos produits" in french
    assert "Member of acme" in html
    assert "<script" not in html


def test_toggle_opt_in_and_withdraw_with_receipts(api: Api) -> None:
    bob = signed_in(api, "bob")
    html = bob.get("/me").text
    assert 'aria-checked="false"' in switch(html, "train-on-content")
    r = bob.post(
        "/me/choices",
        data={"csrf": csrf(html), "rule": "train-on-content", "action": "give"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    # No #fragment: it would cancel the focus the page puts back on the switch.
    assert r.headers["location"].endswith("saved=train-on-content")
    assert api.store.check("bob", "ai.training", "content.audio").allowed
    html = bob.get(r.headers["location"]).text
    # The confirmation is beside the switch, which has the focus and reads it out.
    rule = html[html.index('id="rule-train-on-content"') :]
    rule = rule[: rule.index("</article>")]
    assert 'role="status" id="saved-train-on-content">Saved.' in rule
    assert "autofocus" in switch(html, "train-on-content")
    assert 'aria-describedby="status-train-on-content saved-train-on-content"' in switch(
        html, "train-on-content"
    )
    assert html.count("autofocus") == 1 and 'role="status"' not in html[: html.index("<article")]
    assert 'aria-checked="true"' in switch(html, "train-on-content")
    assert 'value="withdraw"' in switch(html, "train-on-content")
    receipt = re.search(r'href="(/me/receipts/[^"]+)" download', html)
    assert receipt
    r = bob.get(receipt.group(1))
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.json()["receipt"]["pii_principal_id"] == "bob"
    assert r.json()["receipt"]["collection_method"] == "preference-centre"
    # Withdrawing is the same one click.
    bob.post(
        "/me/choices", data={"csrf": csrf(html), "rule": "train-on-content", "action": "withdraw"}
    )
    assert api.store.check("bob", "ai.training", "content.audio").reason == "withdrawn"
    html = bob.get("/me").text
    assert html.count("Download receipt") == 2


def test_someone_elses_receipt_is_refused(api: Api) -> None:
    event = api.store.give_consent("carol", "ai.training", ["content"])
    r = signed_in(api, "bob").get(f"/me/receipts/{event.id}", headers={"Accept": "text/html"})
    assert r.status_code == 403


def test_objection_toggle(make_api: Callable[..., Api]) -> None:
    # The music platform uses service data to improve its products unless the person objects.
    api = make_api(policy=MUSIC, populate_store=False)
    bob = signed_in(api, "bob")
    html = bob.get("/me").text
    button = switch(html, "improve-product")
    assert 'aria-checked="true"' in button and 'value="object"' in button
    assert "On unless you object" in html
    bob.post(
        "/me/choices", data={"csrf": csrf(html), "rule": "improve-product", "action": "object"}
    )
    assert api.store.check("bob", "improvement", "service_data.usage").reason == "objection"
    html = bob.get("/me").text
    button = switch(html, "improve-product")
    assert 'aria-checked="false"' in button and 'value="lift"' in button
    assert "Off: you objected." in html


def test_admin_cap_disables_the_members_toggle(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    html = alice.get("/admin").text
    r = alice.post(
        "/admin/settings",
        data={"csrf": csrf(html), "purpose": "ai.training", "setting": "off"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert api.store.account_state("acme")["settings"] == {"ai.training": "off"}
    html = signed_in(api, "bob").get("/me").text
    button = switch(html, "train-on-content")
    assert "disabled" in button
    assert (
        "switched this off for all members" in html
        and "Your organisation acme switched this off." in html
    )


def setting_form(html: str, purpose: str) -> str:
    form = html[html.index(f'id="setting-{purpose}"') :]
    return form[: form.index("</form>")]


def test_a_purpose_capped_by_the_one_above_says_so(api: Api) -> None:
    """ "Training AI models" off for every member turns off "Training the models behind our
    own features" too: the console shows that, says where it comes from, offers no choice
    that cannot apply, and the members' pages agree."""
    alice = signed_in(api, "alice", "account_admin", "acme")
    html = alice.get("/admin").text
    child = setting_form(html, "ai.training.feature")
    assert 'value="members_choose" checked' in child and "Follows" not in child
    r = alice.post(
        "/admin/settings",
        data={"csrf": csrf(html), "purpose": "ai.training", "setting": "off"},
        follow_redirects=False,
    )
    html = alice.get(r.headers["location"]).text
    parent = setting_form(html, "ai.training")
    assert 'value="off" checked' in parent
    # The confirmation is beside the Save button, which has the focus and reads it out.
    assert 'autofocus aria-describedby="saved-ai.training"' in parent
    assert 'role="status" id="saved-ai.training">Saved.' in parent
    assert "This also applies to: Training the models behind our own features." in parent
    child = setting_form(html, "ai.training.feature")
    assert 'type="radio"' not in child and "<button" not in child
    assert "Off for every member</strong>:" in child
    assert "set on Training AI models, which covers this use." in child
    assert 'href="#setting-ai.training"' in child
    assert 'aria-describedby="from-ai.training.feature"' in child
    # What the members get agrees with what the console shows.
    assert api.store.check("bob", "ai.training.feature", "content.audio").reason == "account_off"
    # Back to "each member chooses": the child follows, and may be set on its own.
    html = alice.get("/admin").text
    alice.post(
        "/admin/settings",
        data={"csrf": csrf(html), "purpose": "ai.training", "setting": "members_choose"},
    )
    child = setting_form(alice.get("/admin").text, "ai.training.feature")
    assert "Follows Training AI models: Each member chooses." in child
    assert 'value="members_choose" checked' in child and 'value="off"' in child
    # A setting of its own under a different one above says which one it replaces.
    api.store.set_account("acme", "ai.training.feature", "members_choose")
    api.store.set_account("acme", "ai.training", "off")
    child = setting_form(alice.get("/admin").text, "ai.training.feature")
    assert 'value="members_choose" checked' in child
    assert "Set here, in place of the setting of Training AI models (Off for every member)." in (
        child
    )
    html = alice.get("/admin?lang=fr").text
    assert "Enregistrer" in setting_form(html, "ai.training.feature")


def test_a_person_in_no_organisation_is_told_what_applies(api: Api) -> None:
    html = signed_in(api, "erin").get("/me").text
    assert "your organisation has not switched this on" not in html
    assert "Your organisation decides" not in html
    summary = html[html.index('id="rule-meeting-summary"') :]
    summary = summary[: summary.index("</article>")]
    assert "For members of an organisation" in summary
    assert "only an organisation can switch this on, for its members" in summary
    # A member still reads about their organisation.
    html = signed_in(api, "bob").get("/me").text
    assert "Off: your organisation has not switched this on." in html
    html = signed_in(api, "erin").get("/me?lang=fr").text
    assert "Pour les membres d" in html


def test_history_times_say_their_time_zone(api: Api) -> None:
    api.store.give_consent("bob", "ai.training", ["content"])
    html = signed_in(api, "bob").get("/me").text
    history = html[html.index('id="history-title"') :]
    when = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', history)
    assert when and when.group(1).endswith("+00:00") and when.group(2).endswith(" UTC")
    alice = signed_in(api, "alice", "account_admin", "acme")
    api.store.set_account("acme", "ai.training", "off", actor="alice")
    trail = alice.get("/admin").text
    trail = trail[trail.index('id="trail-title"') :]
    when = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', trail)
    assert when and when.group(1).endswith("Z") and when.group(2).endswith(" UTC")


def test_wrong_choices_are_refused(api: Api) -> None:
    bob = signed_in(api, "bob")
    token = csrf(bob.get("/me").text)
    r = bob.post(
        "/me/choices",
        data={"csrf": token, "rule": "deliver-service", "action": "give"},
        headers={"Accept": "text/html"},
    )
    assert r.status_code == 422 and "does not ask for your consent" in r.text
    # An objection the rule ignores is refused by the Store, in its words (as the CLI's and
    # the API's), and nothing is recorded.
    before = api.store.log(subject="bob", limit=1000)
    r = bob.post(
        "/me/choices",
        data={"csrf": token, "rule": "deliver-service", "action": "object"},
        headers={"Accept": "text/html"},
    )
    assert r.status_code == 422 and "would change nothing under policy" in r.text
    assert api.store.log(subject="bob", limit=1000) == before
    r = bob.post("/me/choices", data={"csrf": token, "rule": "no-such-rule", "action": "give"})
    assert r.status_code == 404
    r = bob.post("/me/choices", data={"csrf": token, "rule": "train-on-content", "action": "shrug"})
    assert r.status_code == 422


# -- the admin console -------------------------------------------------------------------------


def test_admin_console(api: Api) -> None:
    api.store.give_consent("bob", "ai.training", ["content"])
    api.store.refuse_consent("carol", "ai.training", ["content"])
    alice = signed_in(api, "alice", "account_admin", "acme")
    html = alice.get("/admin").text
    assert "Admin console: acme" in html and "Members: 3" in html
    # Settings: "on" is offered only where the policy lets the account consent for members.
    training = html[html.index('id="setting-ai.training"') :]
    training = training[: training.index("</form>")]
    assert 'value="on"' in training
    assert 'value="members_choose" checked' in training
    # Aggregate counts: one opted in, one said no, one has not chosen.
    assert "opted in: 1" in html and "said no: 1" in html and "no choice yet: 1" in html
    token = csrf(html)
    r = alice.post(
        "/admin/features",
        data={"csrf": token, "purpose": "ai.feature.meeting_summary", "enabled": "on"},
    )
    assert r.status_code == 200
    assert api.store.account_state("acme")["features"] == {"ai.feature.meeting_summary": "enabled"}
    # The confirmation is beside the switch, which has the focus again.
    row = r.text[r.text.index('id="feature-row-ai.feature.meeting_summary"') :]
    row = row[: row.index("</div>")]
    assert 'autofocus aria-describedby="saved-ai.feature.meeting_summary"' in row
    assert "Saved: switched on." in row and r.text.count("autofocus") == 1
    html = alice.get("/admin").text
    assert "Audit trail" in html and "Switched a feature" in html
    r = alice.post(
        "/admin/settings",
        data={"csrf": token, "purpose": "service.safety", "setting": "on"},
        headers={"Accept": "text/html"},
    )
    # A contract purpose: accounts have no say over it at all (the Store's check, issue 9).
    assert r.status_code == 422 and "gives accounts no say over" in r.text
    r = alice.post(
        "/admin/settings",
        data={"csrf": token, "purpose": "service.safety", "setting": "off"},
        headers={"Accept": "text/html"},
    )
    assert r.status_code == 422 and "gives accounts no say over" in r.text


# -- the admin console: members -----------------------------------------------------------------


def acme_events(api: Api) -> list[dict[str, object]]:
    return [e.to_dict() for e in api.store.ledger.events(accounts=["acme"])]


def problem_on_page(html: str) -> str:
    found = re.search(r'<p class="problem" role="alert" id="member-problem">([^<]*)</p>', html)
    assert found, "no message about the member on the page"
    return found.group(1)


def test_admin_invites_and_removes_a_member(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    html = alice.get("/admin").text
    assert 'action="/admin/members"' in html and 'name="subject"' in html
    before = len(acme_events(api))
    r = alice.post(
        "/admin/members",
        data={"csrf": csrf(html), "account": "acme", "subject": "  dave  "},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/admin?lang=en&invited=dave#members-title"
    # An administrator only invites: dave is no member until he accepts.
    assert "dave" not in api.store.account_state("acme")["members"]
    assert [i["subject"] for i in api.store.invitations(account="acme")] == ["dave"]
    # The console records what the API records: the same Store call, the same event.
    invited = acme_events(api)[before:]
    assert len(invited) == 1
    via_api = api.client.post("/v1/accounts/acme/invitations/erin", headers=api.alice).json()
    same = ("kind", "actor", "account", "purpose", "categories", "status", "method", "payload")
    assert {k: invited[0][k] for k in same} == {k: via_api[k] for k in same}
    assert invited[0]["kind"] == "member.invited" and invited[0]["actor"] == "alice"
    html = alice.get(r.headers["location"]).text
    assert "Invited dave to acme. They become a member when they accept." in html
    assert "Members: 3" in html and "Invited, not yet accepted" in html
    assert '<span class="member">dave</span>' in html
    # The audit trail names the admin who invited them.
    assert re.search(r'"Who">alice</td>\s*<td[^>]*>\s*Invited dave\s*</td>', html)
    api.store.accept_invitation("dave", "acme")
    html = alice.get("/admin").text
    assert "Members: 4" in html
    assert re.search(r'"Who">dave</td>\s*<td[^>]*>\s*dave accepted the invitation\s*</td>', html)

    # Removing asks first, on a page of its own; opening that page changes nothing.
    confirm = alice.get("/admin/members/remove", params={"subject": "dave"})
    assert confirm.status_code == 200 and "Remove dave from acme?" in confirm.text
    assert "Yes, remove dave" in confirm.text and 'href="/admin#members-title"' in confirm.text
    assert "dave" in api.store.account_state("acme")["members"]
    r = alice.post(
        "/admin/members/remove",
        data={"csrf": csrf(confirm.text), "account": "acme", "subject": "dave"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/admin?lang=en&removed=dave#members-title"
    assert "dave" not in api.store.account_state("acme")["members"]
    removed = acme_events(api)[-1]
    assert removed["kind"] == "member.removed" and removed["subject"] == "dave"
    assert removed["actor"] == "alice"
    html = alice.get(r.headers["location"]).text
    assert "Removed dave from acme." in html and '<span class="member">dave</span>' not in html
    assert re.search(r'"Who">alice</td>\s*<td[^>]*>\s*Removed dave\s*</td>', html)
    # dave's own page says who removed him, in his language.
    dave = signed_in(api, "dave")
    assert "Removed from acme by its administrator" in dave.get("/me").text
    assert "Dikeluarkan dari acme oleh administratornya" in dave.get("/me?lang=id").text
    # A made-up confirmation link says nothing untrue.
    assert "Added dave" not in alice.get("/admin?added=dave").text


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter the subject id of the person to invite"),
        ("   ", "Enter the subject id of the person to invite"),
        ("dave smith", "That is not a subject id."),
        ("dave\x07", "That is not a subject id."),
        ("d" * 513, "That is not a subject id."),
    ],
)
def test_adding_a_malformed_subject_id_writes_nothing(api: Api, typed: str, message: str) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    token = csrf(alice.get("/admin").text)
    before = acme_events(api)
    r = alice.post("/admin/members", data={"csrf": token, "account": "acme", "subject": typed})
    assert r.status_code == 422
    assert problem_on_page(r.text).startswith(message)
    assert 'aria-invalid="true"' in r.text
    assert acme_events(api) == before


def test_inviting_twice_records_one_event(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    token = csrf(alice.get("/admin").text)
    before = len(acme_events(api))
    form = {"csrf": token, "account": "acme", "subject": "dave"}
    assert alice.post("/admin/members", data=form, follow_redirects=False).status_code == 303
    again = alice.post("/admin/members", data=form)
    assert again.status_code == 409
    assert problem_on_page(again.text) == (
        "dave is already invited to acme and has not answered yet. Nothing was changed."
    )
    r = alice.post("/admin/members?lang=fr", data={**form, "subject": "bob"})
    assert r.status_code == 409
    assert problem_on_page(r.text) == "bob est déjà membre de acme. Rien n&#39;a été modifié."
    assert [e["kind"] for e in acme_events(api)[before:]] == ["member.invited"]


def test_removing_someone_who_is_not_a_member(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    r = alice.get("/admin/members/remove", params={"subject": "zed"})
    assert r.status_code == 404
    assert problem_on_page(r.text) == "zed is not a member of acme. Nothing was changed."
    before = acme_events(api)
    r = alice.post(
        "/admin/members/remove",
        data={"csrf": csrf(r.text), "account": "acme", "subject": "zed"},
    )
    assert r.status_code == 404 and "zed is not a member of acme" in r.text
    assert acme_events(api) == before
    assert "zed" in api.store.account_state("globex")["members"]


def test_membership_forms_are_refused_as_elsewhere(api: Api) -> None:
    before = acme_events(api)
    html = {"Accept": "text/html"}
    # Not signed in.
    r = api.client.post("/admin/members", data={"csrf": "x", "account": "acme", "subject": "d"})
    assert r.status_code == 401
    # A plain user: the console's refusal.
    bob = signed_in(api, "bob")
    token = csrf(bob.get("/me").text)
    for path in ("/admin/members", "/admin/members/remove"):
        r = bob.post(
            path, data={"csrf": token, "account": "acme", "subject": "carol"}, headers=html
        )
        assert r.status_code == 403 and "for an organisation&#39;s administrators" in r.text
    r = bob.get("/admin/members/remove", params={"subject": "carol"}, headers=html)
    assert r.status_code == 403 and "for an organisation&#39;s administrators" in r.text
    # Another account's admin: the API's refusal, word for word.
    zed = signed_in(api, "zed", "account_admin", "globex")
    token = csrf(zed.get("/admin").text)
    via_api = api.client.post(
        "/v1/accounts/acme/invitations/dave", headers=api.as_("zed", "account_admin", "globex")
    )
    assert via_api.status_code == 403
    for path, subject in (("/admin/members", "dave"), ("/admin/members/remove", "carol")):
        r = zed.post(
            path, data={"csrf": token, "account": "acme", "subject": subject}, headers=html
        )
        assert r.status_code == 403
        assert via_api.json()["detail"].replace("'", "&#39;") in r.text
    # The forms' CSRF protection: a wrong token, no token, another site.
    alice = signed_in(api, "alice", "account_admin", "acme")
    token = csrf(alice.get("/admin").text)
    form = {"account": "acme", "subject": "dave"}
    r = alice.post("/admin/members", data={**form, "csrf": "wrong"}, headers=html)
    assert r.status_code == 403 and "This form is out of date" in r.text
    assert alice.post("/admin/members", data=form).status_code == 422
    r = alice.post(
        "/admin/members/remove",
        data={**form, "subject": "carol", "csrf": token},
        headers={**html, "Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "another site" in r.text
    assert acme_events(api) == before


# -- languages ---------------------------------------------------------------------------------


def test_language_switch_and_machine_translation_notice(api: Api) -> None:
    bob = signed_in(api, "bob")
    html = bob.get("/me?lang=fr").text
    assert '<html lang="fr">' in html and "Comment vos données sont utilisées" in html
    assert "traduit automatiquement" in html and "anglais fait foi" in html
    assert 'href="?lang=en#notice"' in html
    # The choice sticks (cookie) on the next page.
    assert '<html lang="fr">' in bob.get("/me").text
    html = bob.get("/me?lang=id").text
    assert "Cara data Anda digunakan" in html and "diterjemahkan oleh mesin" in html
    html = bob.get("/me?lang=en").text
    assert "translated by machine" not in html
    # Every page has the switcher.
    for lang, name in (("en", "English"), ("id", "Indonesia"), ("fr", "Français")):
        assert f'hreflang="{lang}" lang="{lang}"' in html and name in html


def test_accept_language_is_honoured(api: Api) -> None:
    html = api.client.get("/", headers={"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}).text
    assert '<html lang="id">' in html


def test_catalogs_translate_every_string() -> None:
    """Every UI string in the templates and the code is in the .pot and translated."""
    from babel.messages.extract import extract_from_dir

    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "", "trimmed": "false"}}
    used = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(WEB), method_map, options_map=options, keywords={"_": None, "N_": None}
        )
    }
    with (TRANSLATIONS / "messages.pot").open("rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}
    assert used == template, "regenerate messages.pot (see docs/api.md, Translations)"
    for lang in ("en", "id", "fr"):
        with catalog_path(lang).open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        missing = [m.id for m in catalog if m.id and not m.string]
        assert not missing, (lang, missing)
        assert {m.id for m in catalog if m.id} == template, lang


def test_every_control_is_labelled(api: Api) -> None:
    alice = signed_in(api, "alice", "account_admin", "acme")
    for page in ("/me", "/admin"):
        html = alice.get(page).text
        for button in re.findall(r"<button[^>]*>.*?</button>", html, re.S):
            labelled = "aria-labelledby=" in button or re.sub(r"<[^>]+>", "", button).strip()
            assert labelled, button
        for ident in re.findall(r'aria-labelledby="([^"]+)"', html):
            for part in ident.split():
                assert f'id="{part}"' in html, part
        for radio in re.findall(r"<label><input type=\"radio\"[^>]*>\s*([^<]+)</label>", html):
            assert radio.strip()


def test_where_my_data_went(api: Api, tmp_path: Path) -> None:
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        'item_id,subject_ids,category\nr1,"[""bob""]",content.audio\n'
        'r2,"[""bob""]",content.video\n',
        encoding="utf-8",
    )
    bob = signed_in(api, "bob")
    assert "No dataset or model has used your data yet." in bob.get("/me").text
    api.store.give_consent("bob", "ai.training", ["content"])
    result = api.store.gate(
        manifest, purpose="ai.training", out=tmp_path / "out", dataset_name="meetings-asr-v1"
    )
    api.store.register_model("meetings-asr", [result.dataset_id], version="3")
    html = bob.get("/me").text
    went = html[html.index('id="went-title"') : html.index('id="history-title"')]
    assert "meetings-asr-v1" in went and "meetings-asr 3" in went
    assert "Training AI models" in went and ">2</td>" in went and ">Yes<" in went
    api.store.withdraw_consent("bob", "ai.training", ["content"])
    html = bob.get("/me?lang=fr").text
    went = html[html.index('id="went-title"') : html.index('id="history-title"')]
    assert "Non : il doit être réentraîné ou vos données retirées" in went


def test_me_names_the_organisation_that_decided_in_every_language(api: Api) -> None:
    """Issue 12: the page says which organisation decided (its setting or its switch)."""
    api.store.set_account("acme", "ai.training", "off")
    api.store.set_account("acme", "improvement", "on")
    api.store.set_feature("acme", "ai.feature.meeting_summary", False)
    bob = signed_in(api, "bob")
    expected = {
        "en": (
            "Your organisation acme switched this off.",
            "Your organisation acme has not switched this on.",
            "Agreed by your organisation acme.",
        ),
        "fr": (
            "Votre organisation acme a désactivé ceci.",
            "Votre organisation acme n’a pas activé ceci.",
            "Accepté par votre organisation acme.",
        ),
        "id": (
            "Organisasi Anda acme telah menonaktifkan ini.",
            "Organisasi Anda acme belum mengaktifkan ini.",
            "Disetujui oleh organisasi Anda acme.",
        ),
    }
    for lang, sentences in expected.items():
        html = bob.get(f"/me?lang={lang}").text
        status = {
            rule: html[html.index(f'id="status-{rule}"') :].split("</p>")[0]
            for rule in ("train-on-content", "meeting-summary", "improve-with-content")
        }
        assert sentences[0] in status["train-on-content"], lang
        assert sentences[1] in status["meeting-summary"], lang
        assert sentences[2] in status["improve-with-content"], lang
