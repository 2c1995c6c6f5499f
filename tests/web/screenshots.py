"""The documentation's screenshots (``docs/img/*.png``), made from the demo's data.

Run ``make screenshots`` (or ``python tests/web/screenshots.py [--out DIR]``) after changing
a page: it builds the demo stores (``consentry.demo``) in a temporary directory, serves the
meetings service on a free loopback port, and drives Debian's Chromium (``/usr/bin/chromium``)
through Playwright, at a desktop's 1280 px and a phone's 390 px. Nothing is drawn by hand, so
the images show what the pages really do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC_IMAGES = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@contextmanager
def demo_service(directory: Path) -> Iterator[tuple[str, Any]]:
    """The demo's meetings service, served from ``directory`` on a free port: (its URL, its
    demo store description)."""
    import uvicorn

    from consentry.api import Settings, create_app
    from consentry.demo import build, listen

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    meetings = build(directory, port=port, music_port=port + 1)[0]
    settings = Settings(database_url=meetings.url, jwt_secret=meetings.secret)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo service did not start within 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", meetings
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def _top(page: Any, selector: str) -> None:
    """Scroll so that ``selector`` is near the top of the window."""
    page.locator(selector).first.evaluate(
        "el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -16); }"
    )


def take(out: Path, browser: Any = None) -> list[Path]:
    """Make every documentation image under ``out``; the paths written. ``browser``: a
    Playwright Chromium already running (the tests'), else one is started."""
    from playwright.sync_api import sync_playwright

    if browser is None:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                return take(out, chromium)
            finally:
                chromium.close()
    return _take(out, browser)


def _take(out: Path, browser: Any) -> list[Path]:
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(page: Any, name: str) -> None:
        path = out / f"{name}.png"
        page.screenshot(path=str(path))
        written.append(path)

    with tempfile.TemporaryDirectory() as tmp, demo_service(Path(tmp) / "demo") as (url, demo):
        people = {p.sub.split("@")[0]: p for p in demo.people}

        def link(who: str, lang: str = "en") -> str:
            return demo.link("127.0.0.1", people[who]).replace("/login?", f"/login?lang={lang}&")

        contexts: list[Any] = []

        def new_page(viewport: dict[str, int]) -> Any:
            contexts.append(browser.new_context(viewport=viewport, locale="en-GB"))
            return contexts[-1].new_page()

        # The admin console as alice finds it.
        admin = new_page(DESKTOP)
        admin.goto(link("alice"))
        expect(admin.get_by_role("heading", level=1)).to_have_text("Admin console: acme")
        save(admin, "admin")

        # dan opts in: the confirmation beside the switch, which keeps the focus.
        dan = new_page(DESKTOP)
        dan.goto(link("dan"))
        dan.get_by_role("switch", name="Training AI models Your data: your content").click()
        expect(dan.locator("#saved-train-on-content")).to_be_visible()
        save(dan, "me-opted-in")
        dan.goto(url + "/me?lang=fr")
        expect(dan.locator("html")).to_have_attribute("lang", "fr")
        save(dan, "me-fr")

        # alice switches training off for every member: the purpose beneath follows.
        training = admin.get_by_role("group", name="Training AI models", exact=True)
        training.get_by_label("Off for every member").check()
        training.get_by_role("button", name="Save").click()
        expect(admin.locator("#saved-ai\\.training")).to_be_visible()
        _top(admin, "#setting-ai\\.training")
        save(admin, "admin-capped")

        # bob opted in, but the organisation's "off" wins, and his page says so.
        bob = new_page(DESKTOP)
        bob.goto(link("bob"))
        _top(bob, "#rule-train-on-content")
        save(bob, "me-capped-by-admin")

        # On a phone: the tables are cards, nothing is wider than the screen.
        phone = new_page(PHONE)
        phone.goto(link("bob"))
        _top(phone, "#went-title")
        save(phone, "me-phone")
        phone.goto(link("alice"))
        _top(phone, "#setting-ai\\.training")
        save(phone, "admin-phone")
        for context in contexts:
            context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOC_IMAGES, help="where to write the images")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 1
    for path in take(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
