"""Publishing: the files and headers say no by default, and consentry's own reader agrees."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from consentry.errors import InvalidInput
from consentry.signals import (
    DoNotTrainMiddleware,
    ItemOwners,
    SignalsConfig,
    ai_txt,
    evaluate,
    html_meta,
    load_crawlers,
    response_headers,
    robots_txt,
    signals_app,
    tdmrep_json,
)
from consentry.signals.cli import app as cli_app
from consentry.signals.crawlers import parse_crawler_list
from consentry.signals.publish import tdm_policy_json

SITE = "https://music.example"
REQUIRED = [
    "GPTBot",
    "ClaudeBot",
    "Google-Extended",
    "Applebot-Extended",
    "CCBot",
    "PerplexityBot",
    "Meta-ExternalAgent",
    "Bytespider",
    "Amazonbot",
    "cohere-ai",
    "AI2Bot",
]


def test_crawler_list_has_source_date_and_the_named_crawlers() -> None:
    crawlers = load_crawlers()
    assert crawlers.date == "2026-11-23"
    assert crawlers.source.startswith("https://")
    for token in REQUIRED:
        entry = crawlers.get(token)
        assert entry is not None, token
        assert entry.docs.startswith("https://") and entry.owner
    assert len(crawlers.crawlers) >= 30


def test_crawler_list_validation() -> None:
    with pytest.raises(InvalidInput, match="no 'date'"):
        parse_crawler_list('{"source": "x", "crawlers": []}')
    bad = '{"source": "x", "date": "d", "crawlers": [{"token": "A Bot", "purpose": "training"}]}'
    with pytest.raises(InvalidInput, match="invalid product token"):
        parse_crawler_list(bad)


def test_default_robots_txt_blocks_training_crawlers_and_says_train_ai_n() -> None:
    text = robots_txt(SignalsConfig(base_url=SITE, contact="ai@music.example"))
    assert "User-agent: GPTBot" in text and "User-agent: CCBot" in text
    assert "User-agent: PerplexityBot" not in text  # search crawlers are not blocked by default
    assert "Content-Usage: / train-ai=n" in text
    assert "checked 2026-11-23" in text
    for token in ("GPTBot", "ClaudeBot/1.0", "Google-Extended", "AI2Bot"):
        d = evaluate(SITE + "/track/1", user_agent=token, purpose="train-ai", robots=text)
        assert (d.decision, d.signal) == ("deny", "robots.txt"), token
    # any other crawler may fetch, but is told not to train
    d = evaluate(SITE + "/track/1", user_agent="SomeBot", purpose="train-ai", robots=text)
    assert (d.decision, d.signal) == ("deny", "robots.txt content-usage")
    d = evaluate(SITE + "/track/1", user_agent="SomeBot", purpose="search", robots=text)
    assert d.decision == "unset"


def test_block_purposes_and_exclusions() -> None:
    cfg = SignalsConfig(block_purposes=("training", "search"), exclude_crawlers=("CCBot",))
    text = robots_txt(cfg)
    assert "User-agent: PerplexityBot" in text
    assert "User-agent: CCBot" not in text
    with pytest.raises(InvalidInput, match="unknown crawler purpose"):
        SignalsConfig(block_purposes=("scraping",))


def test_tdmrep_and_aitxt_round_trip() -> None:
    cfg = SignalsConfig(tdm_policy=SITE + "/tdm-policy.json")
    rules = json.loads(tdmrep_json(cfg))
    assert rules == [
        {"location": "/", "tdm-reservation": 1, "tdm-policy": SITE + "/tdm-policy.json"}
    ]
    d = evaluate(SITE + "/a", user_agent="B", purpose="train-ai", tdmrep=tdmrep_json(cfg))
    assert (d.decision, d.signal) == ("deny", "tdmrep")
    d = evaluate(SITE + "/a.mp3", user_agent="B", purpose="train-ai", aitxt=ai_txt(cfg))
    assert (d.decision, d.signal) == ("deny", "ai.txt")


def test_headers_default_deny_and_consented_items() -> None:
    closed = SignalsConfig(tdm_policy="https://p.example/tdm")
    assert response_headers(closed) == {
        "Content-Usage": "train-ai=n",
        "tdm-reservation": "1",
        "tdm-policy": "https://p.example/tdm",
        "X-Robots-Tag": "noai, noimageai",
    }
    # consent does not open anything while the policy forbids third-party training
    assert response_headers(closed, training_permitted=True)["Content-Usage"] == "train-ai=n"
    open_ = SignalsConfig(third_party_training_allowed=True, search_allowed=True)
    assert response_headers(open_, training_permitted=True) == {
        "Content-Usage": "train-ai=y, search=y",
        "tdm-reservation": "0",
    }
    assert 'content="1"' in html_meta(closed) and "noai" in html_meta(closed)
    assert html_meta(open_, training_permitted=True) == '<meta name="tdm-reservation" content="0">'
    for headers, expected in (
        (response_headers(closed), "deny"),
        (response_headers(open_, training_permitted=True), "allow"),
    ):
        assert evaluate(SITE, user_agent="B", purpose="train-ai", headers=headers).decision == (
            expected
        )


def test_open_paths() -> None:
    with pytest.raises(InvalidInput, match="needs third_party_training_allowed"):
        SignalsConfig(open_paths=("/open/",))
    with pytest.raises(InvalidInput, match="must start with '/'"):
        SignalsConfig(third_party_training_allowed=True, open_paths=("open",))
    cfg = SignalsConfig(third_party_training_allowed=True, open_paths=("/open/",))
    text = robots_txt(cfg)
    closed, opened = SITE + "/track/1", SITE + "/open/track/2"
    assert evaluate(closed, user_agent="GPTBot", purpose="train-ai", robots=text).denied
    assert evaluate(opened, user_agent="GPTBot", purpose="train-ai", robots=text).allowed
    assert evaluate(closed, user_agent="X", purpose="train-ai", tdmrep=tdmrep_json(cfg)).denied
    assert evaluate(opened, user_agent="X", purpose="train-ai", tdmrep=tdmrep_json(cfg)).allowed
    assert evaluate(opened, user_agent="X", purpose="train-ai", aitxt=ai_txt(cfg)).allowed
    # an item under an open path whose owner withdrew: the header's n wins over robots' y
    d = evaluate(
        opened,
        user_agent="X",
        purpose="train-ai",
        robots=text,
        headers=response_headers(cfg, training_permitted=False),
    )
    assert d.denied


def test_from_mapping() -> None:
    cfg = SignalsConfig.from_mapping(
        {"base_url": SITE, "open_paths": ["/o/"], "third_party_training_allowed": True}
    )
    assert cfg.open_paths == ("/o/",)
    with pytest.raises(InvalidInput, match="unknown signals setting 'base_ur'"):
        SignalsConfig.from_mapping({"base_ur": SITE})


# -- middleware --------------------------------------------------------------------------


def sync(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


async def page(scope: dict, receive: object, send: object) -> None:
    await send(  # type: ignore[operator]
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"x-robots-tag", b"noindex"),
                (b"content-usage", b"train-ai=y"),  # the app cannot override the middleware
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


ITEMS = {"/tracks/1": ItemOwners("t1", ["alice"]), "/tracks/2": ItemOwners("t2", ["bob", "eve"])}
CONSENTED = {"alice", "bob"}


def resolve(path: str) -> ItemOwners | None:
    return ITEMS.get(path)


async def aresolve(path: str) -> ItemOwners | None:
    return ITEMS.get(path)


def permits(item_id: str, owners: Sequence[str]) -> bool:
    return all(o in CONSENTED for o in owners)


async def apermits(item_id: str, owners: Sequence[str]) -> bool:
    return permits(item_id, owners)


def client(mw: DoNotTrainMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t")


OPEN = SignalsConfig(third_party_training_allowed=True)


@pytest.mark.parametrize(("res", "perm"), [(resolve, permits), (aresolve, apermits)])
@sync
async def test_middleware_per_item(res: object, perm: object) -> None:
    mw = DoNotTrainMiddleware(page, config=OPEN, resolve=res, permits_training=perm)  # type: ignore[arg-type]
    async with client(mw) as c:
        yes = await c.get("/tracks/1")
        mixed = await c.get("/tracks/2")  # eve did not consent
        other = await c.get("/about")
    assert yes.headers["content-usage"] == "train-ai=y"
    assert yes.headers["tdm-reservation"] == "0"
    assert yes.headers.get_list("x-robots-tag") == ["noindex"]
    for resp in (mixed, other):
        assert resp.headers["content-usage"] == "train-ai=n"
        assert resp.headers["tdm-reservation"] == "1"
        assert resp.headers.get_list("x-robots-tag") == ["noindex", "noai, noimageai"]
    assert yes.text == "hello"


@sync
async def test_middleware_default_is_deny_and_policy_caps_consent() -> None:
    for mw in (
        DoNotTrainMiddleware(page),
        DoNotTrainMiddleware(page, resolve=resolve, permits_training=permits),  # policy: no
    ):
        async with client(mw) as c:
            resp = await c.get("/tracks/1")
        assert resp.headers["content-usage"] == "train-ai=n"


@sync
async def test_middleware_fails_closed() -> None:
    def broken(path: str) -> ItemOwners:
        raise RuntimeError("store down")

    def truthy(item_id: str, owners: Sequence[str]) -> bool:
        return "yes"  # type: ignore[return-value]  # only True counts

    for mw in (
        DoNotTrainMiddleware(page, config=OPEN, resolve=broken, permits_training=permits),
        DoNotTrainMiddleware(page, config=OPEN, resolve=resolve, permits_training=truthy),
        DoNotTrainMiddleware(
            page, config=OPEN, resolve=lambda p: ItemOwners("x", []), permits_training=permits
        ),
    ):
        async with client(mw) as c:
            assert (await c.get("/tracks/1")).headers["content-usage"] == "train-ai=n"


@sync
async def test_middleware_serves_files_and_limits_paths() -> None:
    mw = DoNotTrainMiddleware(page, serve_files=True, paths=["/tracks/"])
    async with client(mw) as c:
        robots = await c.get("/robots.txt")
        tdm = await c.get("/.well-known/tdmrep.json")
        ai = await c.head("/ai.txt")
        outside = await c.get("/about")
    assert robots.status_code == 200 and "User-agent: GPTBot" in robots.text
    assert robots.headers["content-type"].startswith("text/plain")
    assert json.loads(tdm.text)[0]["tdm-reservation"] == 1
    assert ai.status_code == 200 and ai.content == b""
    assert outside.headers["content-usage"] == "train-ai=y"  # untouched: outside `paths`


@sync
async def test_signals_app() -> None:
    app = signals_app(SignalsConfig(contact="ai@x.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert "ai@x.example" in (await c.get("/ai.txt")).text
        assert (await c.get("/nope")).status_code == 404
        policy = await c.get("/.well-known/consentry-tdm-policy.json")
        assert policy.headers["content-type"].startswith("application/ld+json")
        assert policy.json()["vocabulary"]["aipref"] == "draft-ietf-aipref-vocab-08"


# -- CLI ---------------------------------------------------------------------------------


def test_cli_prints_files(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["robots", "--base-url", SITE, "--contact", "ai@m.example"])
    assert result.exit_code == 0
    assert result.stdout == robots_txt(SignalsConfig(base_url=SITE, contact="ai@m.example"))
    config = tmp_path / "signals.yaml"
    config.write_text(
        "signals:\n  tdm_policy: https://m.example/tdm\n  third_party_training_allowed: true\n"
        "  open_paths: [/open/]\n"
    )
    result = runner.invoke(cli_app, ["tdmrep", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0] == {"location": "/open/", "tdm-reservation": 0}
    result = runner.invoke(cli_app, ["aitxt", "--config", str(config), "--no-third-party-training"])
    assert result.exit_code == 2
    assert "needs third_party_training_allowed" in result.output
    result = runner.invoke(cli_app, ["aitxt"])
    assert result.exit_code == 0 and "Disallow: /" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"tdm_polcy": "x"}')
    result = runner.invoke(cli_app, ["robots", "--config", str(bad)])
    assert result.exit_code == 2 and "did you mean 'tdm_policy'" in result.output


def test_robots_txt_names_the_draft_publishes_only_current_labels_and_own_terms() -> None:
    from consentry.signals.aipref import serialize

    text = robots_txt(SignalsConfig(base_url=SITE, ai_input_allowed=False, search_allowed=True))
    assert "draft-ietf-aipref-vocab-08" in text
    assert "Content-Usage: / train-ai=n, search=y" in text
    assert "Content-Signal: search=yes, ai-input=no, ai-train=no" in text
    # no label the current draft does not define
    usage_lines = [line for line in text.splitlines() if line.startswith("Content-Usage:")]
    assert all("ai-use" not in line and "train-genai" not in line for line in usage_lines)
    # what no current label covers is stated in consentry's own terms, in a comment
    assert "#   consentry:train-other=n" in text
    assert "#   consentry:ai-input=n" in text
    with pytest.raises(ValueError, match="not defined by draft-ietf-aipref-vocab-08"):
        serialize({"ai-use": False})
    # the file says what the platform meant, to a reader of either vocabulary
    for purpose, expected in (
        ("ai.training.generative", "deny"),
        ("ai.training.feature", "deny"),
        ("ai.feature.summary", "deny"),
        ("search", "allow"),
    ):
        d = evaluate(SITE + "/t/1", user_agent="SomeBot", purpose=purpose, robots=text)
        assert d.decision == expected, (purpose, d)


def test_content_signal_can_be_switched_off_and_open_paths_open_it() -> None:
    assert "Content-Signal:" not in robots_txt(SignalsConfig(content_signal=False))
    cfg = SignalsConfig(third_party_training_allowed=True, open_paths=("/open/",))
    text = robots_txt(cfg)
    assert "Content-Signal: /open/ ai-train=yes" in text
    opened, closed = SITE + "/open/a", SITE + "/b"
    assert evaluate(opened, user_agent="X", purpose="ai-train", robots=text).allowed
    assert evaluate(closed, user_agent="X", purpose="ai-train", robots=text).denied


def test_old_setting_name_ai_use_allowed_is_read_as_ai_input() -> None:
    cfg = SignalsConfig.from_mapping({"ai_use_allowed": False})
    assert cfg.ai_input_allowed is False
    assert "ai-use" not in response_headers(cfg)["Content-Usage"]


def test_config_from_policy() -> None:
    from consentry.policy.loader import load_policies

    policy = load_policies(Path(__file__).parents[1] / "data" / "decisions.yaml")[0]
    cfg = SignalsConfig.from_policy(policy, base_url=SITE)
    # ai.training.third_party is prohibited on content: no third-party training at all
    assert cfg.third_party_training_allowed is False
    assert cfg.ai_input_allowed is None and cfg.search_allowed is None
    cfg = SignalsConfig.from_policy(
        policy,
        purposes={"ai-train": "ai.training", "ai-input": "ai.feature.summary"},
        category="content.audio",
    )
    # ai.training has a consent basis: owners may consent item by item
    assert cfg.third_party_training_allowed is True
    # ai.feature.summary's basis: the test policy says consent → no site-wide yes
    rule = policy.rule_for("ai.feature.summary", "content.audio")
    assert rule is not None
    assert cfg.ai_input_allowed is (str(rule.basis) in ("contract", "legitimate_interest"))
    with pytest.raises(InvalidInput, match="unknown Content-Signal key"):
        SignalsConfig.from_policy(policy, purposes={"ai-use": "ai.feature"})


def test_tdm_policy_in_own_terms() -> None:
    cfg = SignalsConfig(base_url=SITE, search_allowed=True)
    rules = json.loads(tdmrep_json(cfg))
    assert rules[-1]["tdm-policy"] == SITE + "/.well-known/consentry-tdm-policy.json"
    doc = json.loads(tdm_policy_json(cfg))
    assert doc["profile"] == "http://www.w3.org/ns/tdmrep"
    assert doc["vocabulary"]["aipref"] == "draft-ietf-aipref-vocab-08"
    prohibited = {c["rightOperand"] for r in doc["prohibition"] for c in r["constraint"]}
    permitted = {c["rightOperand"] for r in doc["permission"] for c in r["constraint"]}
    assert prohibited == {"consentry:train-genai", "consentry:train-other"}
    assert permitted == {"consentry:search"}
