"""Offline evaluation: combining signals, purposes, header forms, ai.txt, C2PA, HTML meta."""

from __future__ import annotations

import httpx
import pytest

from consentry.errors import InvalidInput
from consentry.signals import Evaluator, RobotsTxt, evaluate, product_token, uses_of
from consentry.signals.c2pa import check_manifest
from consentry.signals.htmlmeta import parse_html

URL = "https://example.com/media/song.mp3"


def test_purposes_map_to_uses() -> None:
    assert uses_of("train-ai") == ("train-genai",)  # as the current aipref draft defines it
    assert uses_of("ai.training.generative") == ("train-genai",)
    assert uses_of("ai.training.third_party") == ("train-genai", "train-other")
    assert uses_of("ai.training.feature") == ("train-other",)  # no longer train-ai
    assert uses_of("ai.training") == ("train-genai", "train-other")
    assert uses_of("ai.feature.summary") == ("ai-input",)
    assert uses_of("ai-use") == ("ai-input",)  # a removed label, accepted from old callers
    assert uses_of("ai-train") == ("train-genai", "train-other")  # Content-Signal
    assert uses_of("search") == ("search",)
    with pytest.raises(InvalidInput, match="not a use any do-not-train signal speaks about"):
        uses_of("service.delivery")


def test_no_signal_is_unset_not_allowed() -> None:
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", headers={})
    assert (d.decision, d.signal) == ("unset", "")
    assert not d.allowed and not d.denied


def test_most_restrictive_wins_and_all_findings_are_kept() -> None:
    d = evaluate(
        URL,
        user_agent="ExampleBot",
        purpose="train-ai",
        headers={"Content-Usage": "train-ai=y", "tdm-reservation": "1"},
    )
    assert (d.decision, d.signal) == ("deny", "tdmrep")
    assert [f.signal for f in d.findings] == ["content-usage", "tdmrep"]
    assert d.to_dict()["findings"][0]["decision"] == "allow"


def test_allow_needs_an_explicit_yes() -> None:
    d = evaluate(
        URL,
        user_agent="ExampleBot",
        purpose="train-ai",
        headers={"Content-Usage": "train-ai=y", "tdm-reservation": "0"},
    )
    assert (d.decision, d.signal, d.evidence) == (
        "allow",
        "content-usage",
        "Content-Usage: train-ai=y (train-genai: train-ai=y as draft-ietf-aipref-vocab-08"
        " defines it)",
    )


def test_several_content_usage_lines_form_one_field() -> None:
    # RFC 9110 §5.3: lines combine into one field; RFC 9651: the last value of a key wins
    d = evaluate(
        URL,
        user_agent="ExampleBot",
        purpose="train-ai",
        headers=[("Content-Usage", "train-ai=y"), ("content-usage", "train-ai=n")],
    )
    assert d.decision == "deny"
    assert d.evidence.startswith("Content-Usage: train-ai=y, train-ai=n (")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-ROBOTS-TAG": "noai"},
        [("x-robots-tag", "noai")],
        [(b"X-Robots-Tag", b"noai")],
        httpx.Headers({"x-robots-tag": "noai"}),
        {"X-Robots-Tag": ["noindex", "noai"]},
    ],
)
def test_header_forms(headers: object) -> None:
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", headers=headers)
    assert d.decision == "deny"


def test_x_robots_tag_lines_scope_separately() -> None:
    headers = [("X-Robots-Tag", "otherbot: noai"), ("X-Robots-Tag", "noindex")]
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", headers=headers)
    assert d.decision == "unset"  # the otherbot prefix does not reach the second line
    d = evaluate(URL, user_agent="ExampleBot", purpose="search", headers=headers)
    assert (d.decision, d.evidence) == ("deny", "X-Robots-Tag: noindex")


def test_x_robots_tag_scope_switches_within_a_value() -> None:
    value = "otherbot: noai, examplebot: noimageai"
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", headers={"X-Robots-Tag": value})
    assert d.decision == "deny"
    d = evaluate(URL, user_agent="ThirdBot", purpose="train-ai", headers={"X-Robots-Tag": value})
    assert d.decision == "unset"


def test_unavailable_after_is_not_a_user_agent() -> None:
    value = "unavailable_after: 25 Jun 2030 15:00:00 PST, noai"
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", headers={"X-Robots-Tag": value})
    assert d.decision == "deny"


def test_purpose_decides_which_signals_count() -> None:
    headers = {"Content-Usage": "train-ai=n, search=y", "X-Robots-Tag": "noai"}
    assert evaluate(URL, user_agent="B", purpose="search", headers=headers).decision == "allow"
    assert evaluate(URL, user_agent="B", purpose="train-ai", headers=headers).decision == "deny"
    assert evaluate(URL, user_agent="B", purpose="ai-use", headers=headers).decision == "deny"
    tdm = {"tdm-reservation": "1"}
    assert evaluate(URL, user_agent="B", purpose="search", headers=tdm).decision == "unset"


def test_html_meta_robots_for_all_and_for_one_crawler() -> None:
    html = (
        '<html><head><meta name="GPTBot" content="noai"><meta name="description" '
        'content="noai art"></head><body><meta name="robots" content="noai"></body></html>'
    )
    meta = parse_html(html)
    assert meta.robots("gptbot") == [("gptbot", "noai")]
    assert meta.robots("ExampleBot") == []  # the body's meta is not read
    d = evaluate(URL, user_agent="GPTBot/1.2", purpose="train-ai", html=html)
    assert (d.decision, d.signal) == ("deny", "html meta")
    assert evaluate(URL, user_agent="ExampleBot", purpose="train-ai", html=html).decision == (
        "unset"
    )


def test_robots_content_usage_without_path_from_older_drafts() -> None:
    robots = "User-Agent: *\nContent-Usage: train-ai=n\n"
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", robots=robots)
    assert (d.decision, d.signal) == ("deny", "robots.txt content-usage")
    assert d.evidence == (
        "robots.txt line 2: Content-Usage: train-ai=n"
        " (train-genai: train-ai=n as draft-ietf-aipref-vocab-08 defines it)"
    )


def test_aitxt() -> None:
    aitxt = "# Spawning AI\nUser-Agent: *\nDisallow: *.mp3\nAllow: /open/\n"
    d = evaluate(URL, user_agent="ExampleBot", purpose="train-ai", aitxt=aitxt)
    assert (d.decision, d.signal, d.evidence) == (
        "deny",
        "ai.txt",
        "ai.txt line 3: Disallow: *.mp3",
    )
    d = evaluate(
        "https://example.com/open/a.txt", user_agent="ExampleBot", purpose="train-ai", aitxt=aitxt
    )
    assert d.decision == "allow"
    # ai.txt is about training: it says nothing for ai-use
    assert evaluate(URL, user_agent="B", purpose="ai-use", aitxt=aitxt).decision == "unset"
    # a Markdown "ai.txt" has no groups and says nothing
    assert evaluate(URL, user_agent="B", purpose="train-ai", aitxt="# About us\n").decision == (
        "unset"
    )


def manifest(entries: dict[str, dict[str, str]], label: str = "cawg.training-mining") -> dict:
    return {
        "active_manifest": "urn:m1",
        "manifests": {"urn:m1": {"assertions": [{"label": label, "data": {"entries": entries}}]}},
    }


@pytest.mark.parametrize(
    ("entries", "purpose", "expected"),
    [
        ({"cawg.ai_generative_training": {"use": "notAllowed"}}, "train-ai", "deny"),
        (
            {"cawg.ai_training": {"use": "constrained", "constraint_info": "ask"}},
            "train-ai",
            "deny",
        ),
        ({"cawg.ai_training": {"use": "allowed"}}, "train-ai", "allow"),
        ({"cawg.ai_inference": {"use": "notAllowed"}}, "train-ai", "unset"),
        ({"cawg.ai_inference": {"use": "notAllowed"}}, "ai-use", "deny"),
        ({"cawg.data_mining": {"use": "notAllowed"}}, "ai-use", "deny"),
        ({}, "train-ai", "unset"),
    ],
)
def test_c2pa_training_mining(entries: dict, purpose: str, expected: str) -> None:
    d = evaluate(URL, user_agent="B", purpose=purpose, c2pa=manifest(entries))
    assert d.decision == expected


def test_c2pa_old_label_and_no_manifest() -> None:
    store = manifest({"c2pa.ai_training": {"use": "notAllowed"}}, label="c2pa.training-mining")
    assert check_manifest(store, "train-ai").decision == "deny"
    assert check_manifest(None, "train-ai").decision == "unset"
    assert check_manifest({"manifests": {}}, "train-ai").decision == "unset"


def test_c2pa_file_without_manifest_is_unset(tmp_path: object) -> None:
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python (the [c2pa] extra) not installed")
    assert c2pa  # the library is there; a plain PNG has no manifest
    import io
    import zlib
    from pathlib import Path

    from consentry.signals.c2pa import read_manifest

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    png = io.BytesIO()
    png.write(b"\x89PNG\r\n\x1a\n")
    png.write(chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00"))
    png.write(chunk(b"IDAT", zlib.compress(b"\x00\x00")))
    png.write(chunk(b"IEND", b""))
    path = Path(str(tmp_path)) / "plain.png"
    path.write_bytes(png.getvalue())
    assert read_manifest(path) is None
    assert read_manifest(png.getvalue(), "image/png") is None
    d = evaluate(URL, user_agent="B", purpose="train-ai", c2pa=read_manifest(path))
    assert d.decision == "unset"


def test_evaluator_is_reusable_and_cached_answers_carry_the_url() -> None:
    ev = Evaluator(user_agent="Mozilla/5.0 (compatible; ExampleBot/2.0)", purpose="train-ai")
    assert ev.token == "ExampleBot"
    a = ev.evaluate("https://a.example/1", headers={"x-robots-tag": "noai"})
    b = ev.evaluate("https://b.example/2", headers={"X-Robots-Tag": "noai"})
    assert (a.url, b.url) == ("https://a.example/1", "https://b.example/2")
    assert a.decision == b.decision == "deny"


@pytest.mark.parametrize(
    ("ua", "token"),
    [
        ("GPTBot", "GPTBot"),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)", "GPTBot"),
        ("Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", "ClaudeBot"),
        ("CCBot/2.0 (https://commoncrawl.org/faq/)", "CCBot"),
        ("AI2Bot", "AI2Bot"),
    ],
)
def test_product_token(ua: str, token: str) -> None:
    assert product_token(ua) == token


def test_robots_truncates_at_500_kib_and_strips_bom() -> None:
    text = "\ufeffUser-agent: *\nDisallow: /a/\n" + "#" * (600 * 1024) + "\nDisallow: /b/\n"
    robots = RobotsTxt.parse(text)
    assert robots.truncated
    assert not robots.can_fetch("https://e.com/a/x", "bot")
    assert robots.can_fetch("https://e.com/b/x", "bot")


def test_rules_before_any_user_agent_apply_to_nobody() -> None:
    robots = RobotsTxt.parse("Disallow: /\nUser-agent: *\nDisallow: /x\n")
    assert robots.can_fetch("https://e.com/y", "bot")
    assert not robots.can_fetch("https://e.com/x", "bot")


def test_plain_rules_fast_path_agrees_with_protego() -> None:
    """Plain prefix rules are decided without Protego; the answer must be Protego's."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from protego import Protego

    segment = st.text(alphabet="ab/.-", min_size=1, max_size=6)
    rules = st.lists(st.tuples(st.sampled_from(["Allow", "Disallow"]), segment), max_size=6)

    @settings(max_examples=300, deadline=None)
    @given(rules=rules, path=segment)
    def check(rules: list[tuple[str, str]], path: str) -> None:
        text = "User-agent: *\n" + "".join(f"{k}: /{p}\n" for k, p in rules)
        url = "https://example.com/" + path
        ours = RobotsTxt.parse(text).check(url, "ExampleBot").allowed
        assert ours is Protego.parse(text).can_fetch(url, "ExampleBot"), (text, url)

    check()
