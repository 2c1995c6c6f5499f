"""The web pages in a real browser: Debian's Chromium driven by Playwright.

The service runs with uvicorn in a background thread on a free loopback port. Screenshots of
each page are saved under ``test-artifacts/screenshots/``; the documentation's images in
``docs/img/`` are made by ``tests/web/screenshots.py`` (``make screenshots``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import MEETINGS, SECRET, populate, sign

from consentry import Store
from consentry.api import Settings, create_app
from consentry.api.keys import ApiKeys

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _why_no_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
            "`make test` does this when run as root)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    def __init__(self, tmp: Path) -> None:
        import uvicorn

        self.store = Store(f"sqlite:///{tmp}/browser.db")
        self.store.init(policies=[MEETINGS])
        populate(self.store)
        self.service_key = ApiKeys(self.store).create("browser-tests", "service").secret
        settings = Settings(
            database_url=self.store.url, jwt_secret=SECRET, decision_max_staleness_ms=0
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, store=self.store),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()

    def login(self, sub: str, role: str = "subject", account: str | None = None) -> str:
        return f"{self.url}/login?token={sign(sub, role, account)}"

    def decide(self, subject: str) -> dict[str, Any]:
        r = httpx.post(
            f"{self.url}/v1/decisions",
            json={"subject": subject, "purpose": "ai.training", "category": "content.audio"},
            headers={"Authorization": f"Bearer {self.service_key}"},
        )
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("browser")) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _why_no_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {exc.message.splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1100, "height": 900}, locale="en-GB"
    )
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)


TRAINING = "Training AI models Your data: your content"


def test_member_opts_in_downloads_the_receipt_and_withdraws(server: LiveServer, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.login("bob"))
    expect(page).to_have_url(f"{server.url}/me")
    expect(page.get_by_role("heading", level=1)).to_have_text("How your data is used")
    toggle = page.get_by_role("switch", name=TRAINING)
    expect(toggle).to_have_attribute("aria-checked", "false")
    shot(page, "me-before")
    assert server.decide("bob")["reason"] == "no_consent"

    toggle.click()
    # The confirmation is beside the switch, which has the focus again (not <body>), in view.
    rule = page.locator("#rule-train-on-content")
    expect(rule.get_by_role("status")).to_have_text("Saved. Its receipt is in the history below.")
    expect(page.get_by_role("status")).to_have_count(1)
    expect(toggle).to_be_focused()
    expect(toggle).to_be_in_viewport()
    expect(rule.get_by_role("status")).to_be_in_viewport()
    expect(toggle).to_have_attribute("aria-checked", "true")
    decision = server.decide("bob")
    assert decision["allowed"] and decision["reason"] == "consent"
    shot(page, "me-opted-in")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download receipt").first.click()
    download = download_info.value
    target = ARTIFACTS.parent / "receipts" / download.suggested_filename
    target.parent.mkdir(parents=True, exist_ok=True)
    download.save_as(str(target))
    receipt = json.loads(target.read_text(encoding="utf-8"))
    assert receipt["receipt"]["pii_principal_id"] == "bob"
    assert receipt["receipt"]["status"] == "given"
    check = httpx.post(
        f"{server.url}/v1/receipts/verify",
        json=receipt,
        headers={"Authorization": f"Bearer {server.service_key}"},
    )
    assert check.json()["valid"] is True

    # Withdrawing is one click, from the keyboard as well.
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-checked", "false")
    expect(toggle).to_be_focused()  # a second Enter would opt in again
    decision = server.decide("bob")
    assert not decision["allowed"] and decision["reason"] == "withdrawn"
    expect(page.get_by_text("Off: you withdrew your consent.")).to_be_visible()
    shot(page, "me-withdrawn")


def test_admin_switches_training_off_and_the_member_sees_why(
    server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    admin = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    admin.goto(server.login("alice", "account_admin", "acme"))
    expect(admin).to_have_url(f"{server.url}/admin")
    expect(admin.get_by_role("heading", level=1)).to_have_text("Admin console: acme")
    shot(admin, "admin")
    training = admin.get_by_role("group", name="Training AI models", exact=True)
    child = admin.get_by_role("group", name="Training the models behind our own features")
    expect(child.get_by_label("Each member chooses")).to_be_checked()
    training.get_by_label("Off for every member").check()
    training.get_by_role("button", name="Save").click()
    training = admin.get_by_role("group", name="Training AI models", exact=True)
    expect(training.get_by_role("status")).to_have_text(
        "Saved. This also applies to: Training the models behind our own features."
    )
    save = training.get_by_role("button", name="Save")
    expect(save).to_be_focused()
    expect(training.get_by_role("status")).to_be_in_viewport()
    expect(training.get_by_label("Off for every member")).to_be_checked()
    # The purpose beneath shows what applies to it and where that comes from; no choice it
    # cannot have is offered.
    expect(child).to_contain_text("Off for every member: set on Training AI models")
    expect(child.get_by_role("radio")).to_have_count(0)
    child.get_by_role("link", name="Change it there").click()
    expect(admin).to_have_url(f"{server.url}/admin?lang=en&saved=ai.training#setting-ai.training")
    expect(admin.get_by_role("table").last).to_contain_text(
        "Training AI models → Off for every member"
    )
    shot(admin, "admin-training-off")
    admin.context.close()

    member = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    member.goto(server.login("carol"))
    toggle = member.get_by_role("switch", name=TRAINING)
    expect(toggle).to_be_disabled()
    expect(member.locator("#status-train-on-content")).to_contain_text(
        "switched this off for all members"
    )
    expect(member.locator("#status-train-on-content")).to_contain_text(
        "Your organisation acme switched this off."
    )
    assert server.decide("carol")["reason"] == "account_off"
    member.locator("#rule-train-on-content").scroll_into_view_if_needed()
    shot(member, "me-capped-by-admin")
    member.context.close()


def test_admin_invites_the_person_accepts_on_me_then_is_removed(
    server: LiveServer, page: Any
) -> None:
    from playwright.sync_api import expect

    # globex agrees to training for its members; dave is not one of them yet.
    page.goto(server.login("zed", "account_admin", "globex"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Admin console: globex")
    training = page.get_by_role("group", name="Training AI models", exact=True)
    training.get_by_label("On for all members (each can opt out)").check()
    training.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    assert not server.decide("dave")["allowed"]

    members = page.get_by_role("region", name="Members")
    field = members.get_by_label("Subject id of the person to invite")
    # A typing mistake is explained on the page, and nothing is written.
    field.fill("dave smith")
    members.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("alert")).to_contain_text("That is not a subject id.")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(members.get_by_role("listitem")).to_have_count(1)

    field = page.get_by_role("region", name="Members").get_by_label(
        "Subject id of the person to invite"
    )
    field.fill("dave")
    page.keyboard.press("Enter")
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("status")).to_have_text(
        "Invited dave to globex. They become a member when they accept."
    )
    expect(page.get_by_role("list", name="Invited, not yet accepted")).to_contain_text("dave")
    expect(page.get_by_role("table").last).to_contain_text("Invited dave")
    # An invitation alone changes nothing for dave.
    decision = server.decide("dave")
    assert not decision["allowed"] and decision["reason"] == "no_consent"
    shot(page, "admin-member-invited")

    # Inviting dave again says so and records nothing.
    members.get_by_label("Subject id of the person to invite").fill("dave")
    members.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("alert")).to_have_text(
        "dave is already invited to globex and has not answered yet. Nothing was changed."
    )

    # dave sees the invitation on his own page and accepts it.
    dave = page.context.browser.new_context().new_page()
    dave.goto(server.login("dave"))
    invitations = dave.get_by_role("region", name="Invitations")
    expect(invitations).to_contain_text("globex invited you")
    shot(dave, "me-invitation")
    invitations.get_by_role("button", name="Accept globex").click()
    expect(dave.get_by_role("status")).to_have_text(
        "You joined globex. Its settings now apply to you."
    )
    expect(dave.get_by_role("region", name="Invitations")).to_have_count(0)
    decision = server.decide("dave")
    assert decision["allowed"] and decision["reason"] == "account_consent"
    dave.context.close()

    page.goto(server.url + "/admin")
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("listitem").filter(has_text="dave")).to_have_count(1)
    expect(page.get_by_role("table").last).to_contain_text("dave accepted the invitation")
    shot(page, "admin-member-added")

    # Removing asks first, on a page of its own.
    page.get_by_role("region", name="Members").get_by_role("button", name="Remove dave").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove dave from globex?")
    shot(page, "admin-remove-member")
    page.get_by_role("link", name="No, keep dave").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Admin console: globex")
    assert server.decide("dave")["allowed"]
    page.get_by_role("region", name="Members").get_by_role("button", name="Remove dave").click()
    page.get_by_role("button", name="Yes, remove dave").click()
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("status")).to_have_text("Removed dave from globex.")
    expect(members.get_by_role("listitem").filter(has_text="dave")).to_have_count(0)
    expect(members.get_by_role("listitem")).to_have_count(1)
    expect(page.get_by_role("table").last).to_contain_text("Removed dave")
    decision = server.decide("dave")
    assert not decision["allowed"] and decision["reason"] != "account_consent"
    shot(page, "admin-member-removed")


def test_sign_out_ends_the_session_at_once(server: LiveServer, page: Any) -> None:
    """A copy of the cookie taken before signing out stops working with the sign-out."""
    from playwright.sync_api import expect

    page.goto(server.login("carol"))
    expect(page.get_by_role("heading", level=1)).to_have_text("How your data is used")
    cookies = page.context.cookies()
    assert any(c["name"].startswith("consentry_session_") for c in cookies)
    copy = page.context.browser.new_context()
    copy.add_cookies(cookies)
    other = copy.new_page()
    other.goto(server.url + "/me")
    expect(other.get_by_role("heading", level=1)).to_have_text("How your data is used")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
    response = other.goto(server.url + "/me")
    assert response is not None and response.status == 401
    expect(other.get_by_role("alert")).to_contain_text("You are not signed in")
    shot(other, "session-ended")
    copy.close()


def test_languages(server: LiveServer, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.login("bob"))
    page.get_by_role("navigation", name="Language").get_by_role("link", name="Indonesia").click()
    expect(page.locator("html")).to_have_attribute("lang", "id")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cara data Anda digunakan")
    expect(page.get_by_role("note")).to_contain_text("diterjemahkan oleh mesin")
    shot(page, "me-id")
    page.get_by_role("navigation", name="Bahasa").get_by_role("link", name="Français").click()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", level=1)).to_have_text("Comment vos données sont utilisées")
    note = page.get_by_role("note")
    expect(note).to_contain_text("La version en anglais fait foi et prévaut")
    shot(page, "me-fr")
    note.get_by_role("link", name="Lire la version qui fait foi").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("note")).to_have_count(0)
    # Sign out, in English again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
    shot(page, "signed-out")


def test_home_and_a_bad_link(server: LiveServer, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your data and AI")
    shot(page, "home")
    page.goto(server.url + "/login?token=expired-or-forged")
    expect(page.get_by_role("heading", level=1)).to_have_text("This sign-in link is not valid")
    expect(page.get_by_role("main")).to_contain_text("it gives you a new sign-in link")
    expect(page.get_by_role("main")).not_to_contain_text("JWT")
    shot(page, "error")
    page.goto(server.login("bob").replace("token=", "lang=fr&token=") + "x")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Ce lien de connexion n'est pas valide"
    )


# -- every page on a phone and on a desktop -----------------------------------------------------

#: A person whose id is long, as e-mail addresses are: it must wrap, never widen the page.
LONG_ID = "maria.fernanda.rodrigues-oliveira@subsidiary.very-long-organisation-name.example"


def _prepare_wide_content(server: LiveServer, tmp: Path) -> None:
    """What makes pages wide: a dataset with a long name in "where your data went", a long
    member id, a long history."""
    store = server.store
    if store.datasets():
        return
    store.invite_member(LONG_ID, "initech", actor="pat")
    store.accept_invitation(LONG_ID, "initech")
    store.add_member("pat", "initech")
    store.set_account("initech", "ai.training", "off", actor="pat")
    for subject in ("bob", LONG_ID):
        store.give_consent(subject, "improvement", ["content"])
        store.give_consent(subject, "ai.training", ["content"])
    manifest = tmp / "items.csv"
    manifest.write_text(
        "item_id,subject_ids,category\n"
        'r1,"[""bob""]",content.audio\n'
        f'r2,"[""bob"", ""{LONG_ID}""]",content.video\n',
        encoding="utf-8",
    )
    result = store.gate(
        manifest,
        purpose="ai.training",
        out=tmp / "out",
        dataset_name="meetings-automatic-speech-recognition-2026-q4-candidate-v12",
    )
    store.register_model("meetings-asr-large-multilingual", [result.dataset_id], version="12")
    store.withdraw_consent("bob", "ai.training", ["content"])


def _overflow(page: Any) -> dict[str, Any]:
    """How wide the page scrolls against the window, and the elements that stick out."""
    result: dict[str, Any] = page.evaluate(
        """() => {
            const width = window.innerWidth;
            const out = [];
            for (const el of document.querySelectorAll("body *")) {
                const box = el.getBoundingClientRect();
                if (box.width && box.right > width + 0.5) {
                    out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
                        + (el.className ? "." + String(el.className).replace(/ /g, ".") : "")
                        + " right=" + Math.round(box.right));
                }
            }
            return {scroll: document.scrollingElement.scrollWidth, width, out: out.slice(0, 8)};
        }"""
    )
    return result


@pytest.mark.parametrize("width", [390, 1280])
def test_no_page_scrolls_sideways(
    server: LiveServer, browser: Any, width: int, tmp_path: Path
) -> None:
    """At a phone's 390 px and a desktop's 1280 px, no page is wider than the window: the
    tables become cards on a phone, long ids wrap."""
    from playwright.sync_api import expect

    _prepare_wide_content(server, tmp_path)
    context = browser.new_context(viewport={"width": width, "height": 844}, locale="en-GB")
    page = context.new_page()
    visits: list[tuple[str, str]] = [
        ("home", server.url + "/"),
        ("sign-in-expired", server.url + "/login?token=" + sign("bob", "subject", exp=1)),
        ("sign-in-garbage", server.url + "/login?token=garbage"),
        ("not-found", server.url + "/no-such-page"),
        ("me", server.login("bob")),
        ("me-fr", server.url + "/me?lang=fr"),
        ("me-id", server.url + "/me?lang=id"),
        ("me-long-id", server.login(LONG_ID)),
        ("me-solo", server.login("erin")),
        ("admin", server.login("alice", "account_admin", "acme")),
        ("admin-fr", server.url + "/admin?lang=fr"),
        ("admin-long-member", server.login("pat", "account_admin", "initech")),
        ("admin-remove", server.url + f"/admin/members/remove?subject={LONG_ID}&lang=en"),
    ]
    try:
        for name, url in visits:
            page.goto(url)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            found = _overflow(page)
            shot(page, f"{name}-{width}")
            assert found["scroll"] <= found["width"], (name, width, found)
        page.goto(server.url + "/me")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
        found = _overflow(page)
        assert found["scroll"] <= found["width"], ("signed-out", width, found)
    finally:
        context.close()
    if width == 390:
        # On a phone the tables are cards: each value under its column's name.
        context = browser.new_context(viewport={"width": width, "height": 844}, locale="en-GB")
        page = context.new_page()
        page.goto(server.login("bob"))
        history = page.get_by_role("table", name="History of your choices")
        expect(history.get_by_role("columnheader", name="When")).to_be_attached()
        cell = history.get_by_role("row").nth(1).get_by_role("cell").first
        label = cell.evaluate("el => getComputedStyle(el, '::before').content")
        assert "When" in label, label
        context.close()


def test_the_documentation_screenshots_are_made_by_a_script(browser: Any, tmp_path: Path) -> None:
    """``make screenshots`` (tests/web/screenshots.py) makes every image docs/ shows, from the
    demo's data, at a desktop's and a phone's width."""
    import struct

    import screenshots

    written = screenshots.take(tmp_path, browser)
    widths = {}
    for path in written:
        header = path.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n", path
        widths[path.name] = struct.unpack(">I", header[16:20])[0]
    assert widths == {
        "admin.png": 1280,
        "me-opted-in.png": 1280,
        "me-fr.png": 1280,
        "admin-capped.png": 1280,
        "me-capped-by-admin.png": 1280,
        "me-phone.png": 390,
        "admin-phone.png": 390,
    }
    # Every image the documentation shows is one the script makes.
    shown = set()
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        shown |= set(re.findall(r"img/([\w-]+\.png)", doc.read_text(encoding="utf-8")))
    assert shown <= set(widths), shown - set(widths)


def test_global_privacy_control_on_me(server: LiveServer, browser: Any) -> None:
    # A browser with GPC on sends Sec-GPC: 1 with every request: /me records it once and says
    # what it meant; the meetings policy gives it no meaning, and the page says so, in each
    # language.
    from playwright.sync_api import expect

    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"}, locale="en-GB")
    page = context.new_page()
    try:
        page.goto(server.login("gpc-visitor"))
        expect(page).to_have_url(f"{server.url}/me")
        section = page.locator("#gpc")
        expect(section.get_by_role("heading", level=2)).to_have_text("Global Privacy Control")
        expect(section).to_contain_text("changed none of your choices")
        for lang, words in (("id", "tidak mengubah pilihan Anda"), ("fr", "aucun de vos choix")):
            page.goto(f"{server.url}/me?lang={lang}")
            expect(page.locator("html")).to_have_attribute("lang", lang)
            expect(page.locator("#gpc")).to_contain_text(words)
    finally:
        context.close()
    kinds = [str(e.kind) for e in server.store.ledger.events(subjects=["gpc-visitor"])]
    assert kinds.count("signal.gpc") == 1, kinds
