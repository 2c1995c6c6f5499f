"""The bulk checker against loopback hosts that redirect, 404, 500, time out or are oversized."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consentry.signals import SignalChecker, bulk_check, check_url, load_opt_outs, read_table
from consentry.signals.cli import app

from .loopback import LoopbackServer, Reply

UA = "ExampleBot/1.0"
HTML = {"Content-Type": "text/html; charset=utf-8"}
BIG_PADDING = ("# " + "x" * 98 + "\n") * 6000  # ~600 KiB of comments


def good(path: str) -> Reply:
    if path == "/robots.txt":
        return Reply(
            body=b"User-agent: *\nDisallow: /private/\nContent-Usage: /cu/ train-ai=n\n",
            headers={"Cache-Control": "max-age=3600"},
        )
    if path == "/.well-known/tdmrep.json":
        return Reply(body=b'[{"location": "/tdm/", "tdm-reservation": 1}]')
    if path == "/ai.txt":
        return Reply(
            body=b"User-Agent: *\nDisallow: *.jpg\n", headers={"Content-Type": "text/plain"}
        )
    pages: dict[str, Reply] = {
        "/page.html": Reply(body=b"<html><head><title>x</title></head></html>", headers=HTML),
        "/cu/x": Reply(body=b"ok"),
        "/tdm/x": Reply(body=b"ok"),
        "/xrt": Reply(body=b"ok", headers={"X-Robots-Tag": "NoAI"}),
        "/header-cu": Reply(body=b"ok", headers={"Content-Usage": "train-ai=y"}),
        "/meta.html": Reply(
            body=b'<html><head><meta name="robots" content="noindex, NoAI"></head><body>',
            headers=HTML,
        ),
        "/img.jpg": Reply(body=b"\xff\xd8", headers={"Content-Type": "image/jpeg"}),
        "/hop": Reply(status=302, headers={"Location": "/page.html"}),
        "/loop": Reply(status=302, headers={"Location": "/loop"}),
    }
    return pages.get(path, Reply(status=404, body=b"nope"))


def make_redirecting(hops: int) -> object:
    def handler(path: str) -> Reply:
        if path == "/robots.txt":
            return Reply(status=301, headers={"Location": "/r1"})
        if path.startswith("/r"):
            n = int(path[2:])
            if n < hops:
                return Reply(status=301, headers={"Location": f"/r{n + 1}"})
            return Reply(body=b"User-agent: *\nDisallow: /\n")
        return Reply(body=b"ok")

    return handler


def notfound(path: str) -> Reply:
    if path == "/page.html":
        return Reply(body=b"ok", headers={"Content-Usage": "train-ai=n"})
    return Reply(status=404)


def error(path: str) -> Reply:
    return Reply(status=500 if path == "/robots.txt" else 200, body=b"ok")


def slow(path: str) -> Reply:
    return Reply(hang=5.0) if path == "/robots.txt" else Reply(body=b"ok")


def huge(path: str) -> Reply:
    if path == "/robots.txt":
        text = "User-agent: *\nDisallow: /private/\n" + BIG_PADDING + "Disallow: /late/\n"
        return Reply(body=text.encode())
    return Reply(body=b"ok")


def blocked(path: str) -> Reply:
    if path == "/robots.txt":
        return Reply(body=b"User-agent: *\nDisallow: /\n")
    return Reply(body=b"secret")


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    handlers = {
        "good": good,
        "redirect3": make_redirecting(3),
        "redirect6": make_redirecting(6),
        "notfound": notfound,
        "error": error,
        "slow": slow,
        "huge": huge,
        "blocked": blocked,
    }
    with LoopbackServer(handlers) as srv:  # type: ignore[arg-type]
        yield srv


def cases(server: LoopbackServer) -> list[tuple[str, str, str]]:
    """(url, expected decision, expected signal)."""
    u = server.url
    return [
        (u("good", "/page.html"), "unset", ""),
        (u("good", "/private/x"), "deny", "robots.txt"),
        (u("good", "/cu/x"), "deny", "robots.txt content-usage"),
        (u("good", "/tdm/x"), "deny", "tdmrep"),
        (u("good", "/xrt"), "deny", "x-robots-tag"),
        (u("good", "/header-cu"), "allow", "content-usage"),
        (u("good", "/meta.html"), "deny", "html meta"),
        (u("good", "/img.jpg"), "deny", "ai.txt"),
        (u("good", "/missing"), "unset", ""),
        (u("good", "/hop"), "unset", ""),
        (u("good", "/loop"), "unset", ""),
        (u("good", "/away"), "unset", ""),
        (u("redirect3", "/page"), "deny", "robots.txt"),
        (u("redirect6", "/page"), "unset", ""),
        (u("notfound", "/page.html"), "deny", "content-usage"),
        (u("error", "/page"), "deny", "robots.txt"),
        (u("slow", "/page"), "deny", "robots.txt"),
        (u("huge", "/private/x"), "deny", "robots.txt"),
        (u("huge", "/late/x"), "unset", ""),
    ]


@pytest.fixture(params=["httpx", "aiohttp", "direct"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "aiohttp":
        pytest.importorskip("aiohttp", reason="aiohttp not installed")
    if request.param == "direct":
        pytest.importorskip("httptools", reason="httptools not installed")
    return str(request.param)


def test_bulk_decisions_and_one_robots_fetch_per_host(server: LoopbackServer, engine: str) -> None:
    server.hits.clear()
    expected = cases(server)
    urls = [url for url, _, _ in expected] * 2  # repeats are checked once
    report = bulk_check(urls, user_agent=UA, purpose="train-ai", timeout=0.5, engine=engine)
    assert report.urls == len(expected)
    got = {d.url: d for d in report.decisions}
    for url, decision, signal in expected:
        assert (got[url].decision, got[url].signal) == (decision, signal), (url, got[url])
    for name in server.ports:
        if name != "blocked":  # only a redirect target, see the cross-host test
            assert server.hits[(name, "/robots.txt")] == 1, name
    # disallowed URLs are never fetched
    assert server.hits[("good", "/private/x")] == 0
    assert server.hits[("error", "/page")] == 0
    assert server.hits[("slow", "/page")] == 0
    assert server.hits[("redirect3", "/page")] == 0
    assert server.hits[("huge", "/private/x")] == 0
    # nor are URLs that a site-wide signal already denies (no response could allow them)
    assert server.hits[("good", "/cu/x")] == 0
    assert server.hits[("good", "/img.jpg")] == 0
    assert server.hits[("good", "/tdm/x")] == 1  # a TDMRep header could supersede the file
    # site-wide files fetched once per host too
    assert server.hits[("good", "/.well-known/tdmrep.json")] == 1
    assert server.hits[("good", "/ai.txt")] == 1
    assert report.requests["robots.txt"] >= len(server.ports) - 1


def test_evidence_and_errors(server: LoopbackServer, engine: str) -> None:
    u = server.url
    urls = [
        u("error", "/page"),
        u("slow", "/page"),
        u("good", "/missing"),
        u("good", "/loop"),
        u("good", "/hop"),
        u("good", "/tdm/x"),
        u("good", "/private/x"),
    ]
    report = bulk_check(urls, user_agent=UA, purpose="train-ai", timeout=0.5, engine=engine)
    d = {x.url: x for x in report.decisions}
    assert "HTTP 500" in d[urls[0]].evidence and "RFC 9309" in d[urls[0]].evidence
    assert "unreachable" in d[urls[1]].evidence
    assert d[urls[2]].error == "HTTP 404"
    assert "redirects" in d[urls[3]].error
    assert d[urls[4]].url == urls[4] and d[urls[4]].error == ""
    assert d[urls[5]].evidence.startswith("tdmrep.json rule 1:")
    assert d[urls[6]].evidence == "robots.txt line 2: Disallow: /private/"


def test_cross_host_redirect_checks_the_target_robots(server: LoopbackServer) -> None:
    def away(path: str) -> Reply:
        if path == "/robots.txt":
            return Reply(status=404)
        return Reply(status=302, headers={"Location": server.url("blocked", "/secret")})

    with LoopbackServer({"away": away}) as other:
        server.hits.clear()
        decision = check_url(
            other.url("away", "/x"), user_agent=UA, purpose="train-ai", engine="httpx"
        )
    assert decision.decision == "deny"
    assert decision.evidence.startswith("redirected to ")
    assert server.hits[("blocked", "/secret")] == 0


def test_oversized_robots_is_cut_at_500_kib(server: LoopbackServer, engine: str) -> None:
    async def run() -> tuple[str, bool]:
        async with SignalChecker(user_agent=UA, purpose="train-ai", engine=engine) as checker:
            signals = await checker.host_signals(server.origin("huge"))
        robots = signals.robots.robots
        assert robots is not None
        return signals.robots.evidence, robots.can_fetch(server.url("huge", "/late/x"), UA)

    evidence, late_allowed = asyncio.run(run())
    assert "cut at 500 KiB" in evidence
    assert late_allowed


def test_search_purpose_skips_tdmrep_and_aitxt(server: LoopbackServer) -> None:
    server.hits.clear()
    report = bulk_check(
        [server.url("good", "/xrt"), server.url("good", "/meta.html")],
        user_agent=UA,
        purpose="search",
        engine="httpx",
    )
    d = {x.url: x.decision for x in report.decisions}
    assert d[server.url("good", "/xrt")] == "unset"  # noai says nothing about search
    assert d[server.url("good", "/meta.html")] == "deny"  # noindex does
    assert server.hits[("good", "/.well-known/tdmrep.json")] == 0
    assert server.hits[("good", "/ai.txt")] == 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_table_round_trip_and_opt_outs(server: LoopbackServer, tmp_path: Path, suffix: str) -> None:
    urls = [server.url("good", "/private/x"), server.url("good", "/page.html")]
    out = tmp_path / f"signals{suffix}"
    bulk_check(urls, user_agent=UA, purpose="train-ai", out=out, engine="httpx")
    rows = read_table(out)
    assert {r["url"] for r in rows} == set(urls)
    assert set(rows[0]) >= {"url", "host", "decision", "signal", "evidence", "checked_at"}
    assert load_opt_outs(out) == {urls[0]}
    assert rows[0]["checked_at"].endswith("Z")


def test_opt_outs_can_include_unchecked(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    rows = [
        {"url": "https://a/1", "decision": "deny", "error": ""},
        {"url": "https://a/2", "decision": "unset", "error": "HTTP 503"},
        {"url": "https://a/3", "decision": "unset", "error": ""},
        {"url": "https://a/4", "decision": "allow", "error": ""},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_opt_outs(out) == {"https://a/1"}
    assert load_opt_outs(out, include_unchecked=True) == {"https://a/1", "https://a/2"}


def test_cli_check_with_urls_and_manifest(server: LoopbackServer, tmp_path: Path) -> None:
    runner = CliRunner()
    url_file = tmp_path / "urls.txt"
    url_file.write_text(f"# sources\n{server.url('good', '/xrt')}\n\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            "check",
            "--urls",
            str(url_file),
            "--user-agent",
            UA,
            "--purpose",
            "train-ai",
            "--out",
            str(out),
            "--engine",
            "httpx",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["decisions"] == {"deny": 1}
    with out.open() as fh:
        assert next(csv.DictReader(fh))["signal"] == "x-robots-tag"

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "item_id,source_url\n1,"
        + server.url("good", "/header-cu")
        + "\n2,"
        + server.url("good", "/header-cu")
        + "\n"
    )
    out2 = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "check",
            "--manifest",
            str(manifest),
            "--column",
            "source_url",
            "--user-agent",
            UA,
            "--purpose",
            "ai.training.generative",
            "--out",
            str(out2),
            "--engine",
            "httpx",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "checked 1 URLs on 1 hosts" in result.stdout
    assert read_table(out2)[0]["decision"] == "allow"


def test_cli_check_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["check", "--user-agent", UA, "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "exactly one of --urls" in result.output
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,url\n1,http://127.0.0.1:9/x\n")
    result = runner.invoke(
        app,
        [
            "check",
            "--manifest",
            str(manifest),
            "--user-agent",
            UA,
            "--out",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "no column 'source_url'" in result.output
    assert "url" in result.output  # the hint lists the columns
    result = runner.invoke(
        app,
        [
            "check",
            "--manifest",
            str(manifest),
            "--column",
            "url",
            "--user-agent",
            UA,
            "--purpose",
            "service.delivery",
            "--out",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "is not a use any do-not-train signal speaks about" in result.output
    result = runner.invoke(
        app,
        [
            "check",
            "--manifest",
            str(manifest),
            "--column",
            "url",
            "--user-agent",
            UA,
            "--out",
            str(tmp_path / "o.xlsx"),
        ],
    )
    assert result.exit_code == 2
    assert ".parquet, .csv or .jsonl" in result.output


def test_httpx_engine_closes_least_recently_used_clients(server: LoopbackServer) -> None:
    from consentry.signals.fetch import HttpxEngine

    async def run() -> list[int]:
        engine = HttpxEngine(user_agent=UA, timeout=2.0, per_host=2, trust_env=False, max_clients=1)
        statuses = []
        for name in ("good", "notfound", "good"):
            resp = await engine.get(server.url(name, "/page.html"), read_body=lambda r: 0)
            statuses.append(resp.status)
        assert len(engine._clients) == 1
        await engine.aclose()
        return statuses

    assert asyncio.run(run()) == [200, 200, 200]


def test_unknown_engine_is_an_error() -> None:
    from consentry.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown engine"):
        check_url("http://127.0.0.1:9/x", user_agent=UA, purpose="train-ai", engine="curl")


def test_complete_fetches_even_when_the_site_already_denies(server: LoopbackServer) -> None:
    server.hits.clear()
    report = bulk_check(
        [server.url("good", "/cu/x")],
        user_agent=UA,
        purpose="train-ai",
        engine="httpx",
        complete=True,
    )
    assert report.decisions[0].signal == "robots.txt content-usage"
    assert server.hits[("good", "/cu/x")] == 1
