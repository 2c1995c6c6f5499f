"""Signals benchmark: offline header evaluation and bulk URL checking, beside datadiligence.

Run:  python benchmarks/signals.py [--urls 10000] [--hosts 100] [--engine auto] [--json FILE]

1. Offline: a corpus of response-header sets is evaluated by consentry (every signal: aipref
   Content-Usage, TDMRep, X-Robots-Tag with user-agent scopes) and by datadiligence's
   ``XRobotsTagHeader`` + ``TDMRepHeader`` on the same inputs; time per header set and an
   agreement table.
2. Bulk: ``--hosts`` HTTP servers on loopback ports (one server process, 127.0.0.1 only) serve
   robots.txt, tdmrep.json, ai.txt and pages; consentry checks ``--urls`` URLs with its async
   checker, and datadiligence checks the same list with ``is_allowed(url=...)``. The server
   counts requests, so the run verifies that consentry fetched each robots.txt exactly once.

datadiligence's only remote call is the Spawning API (its ``PreprocessEvaluator``), used for
``is_allowed(urls=[...])`` and only with an API key; this benchmark calls ``is_allowed(url=...)``
(the post-process evaluator: X-Robots-Tag, TDMRep header, C2PA, fetched from the URL itself)
and unsets ``SPAWNING_OPTS_KEY``, so every request goes to the loopback servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

os.environ.pop("SPAWNING_OPTS_KEY", None)

UA = "ExampleBot"
FULL_UA = "Mozilla/5.0 (compatible; ExampleBot/1.0; +https://example.com/bot)"

# -- offline corpus ----------------------------------------------------------------------

_XRT = [
    None,
    "noai",
    "NoAI",
    "noimageai",
    "noindex",
    "noindex, nofollow",
    "googlebot: noindex, noai",
    "examplebot: noai",
    "otherbot: noai, noimageai",
    "none",
    "unavailable_after: 25 Jun 2030 15:00:00 PST",
]
_CU = [None, "train-ai=n", "train-ai=y", "train-ai=n, search=y", "search=y", 'train-ai="n"']
_TDM = [None, "1", "0", " 1", "2"]
_KEYS = {
    "X-Robots-Tag": ["X-Robots-Tag", "x-robots-tag", "X-ROBOTS-TAG"],
    "tdm-reservation": ["tdm-reservation", "TDM-Reservation"],
    "Content-Usage": ["Content-Usage", "content-usage"],
}


def header_corpus(n: int, seed: int = 7) -> list[dict[str, str]]:
    """``n`` distinct, realistic response-header dicts."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        h = {
            "Date": f"Mon, 23 Nov 2026 12:{i % 60:02d}:{i % 59:02d} GMT",
            "Content-Type": rng.choice(["text/html; charset=utf-8", "image/jpeg", "audio/mpeg"]),
            "Content-Length": str(rng.randint(100, 10**7)),
            "Server": rng.choice(["nginx", "cloudflare", "Apache"]),
            "Cache-Control": f"max-age={rng.randint(0, 86400)}",
            "ETag": f'"{i:08x}"',
        }
        xrt, cu, tdm = rng.choice(_XRT), rng.choice(_CU), rng.choice(_TDM)
        if xrt:
            h[rng.choice(_KEYS["X-Robots-Tag"])] = xrt
        if cu:
            h[rng.choice(_KEYS["Content-Usage"])] = cu
        if tdm:
            h[rng.choice(_KEYS["tdm-reservation"])] = tdm
            if tdm.strip() == "1" and rng.random() < 0.5:
                h["tdm-policy"] = "https://example.com/policies/tdm.json"
        out.append(h)
    return out


def bench_offline(n_sets: int, rounds: int) -> dict[str, Any]:
    """Time per header set, consentry and datadiligence passes interleaved (best and median)."""
    from consentry.signals import Evaluator, aipref, xrobots

    corpus = header_corpus(n_sets)
    urls = [f"https://site{i % 97}.example/item/{i}" for i in range(n_sets)]

    # cold: a new evaluator and empty parse caches, each header set seen for the first time
    aipref._CACHE.clear()
    xrobots._CACHE.clear()
    ev = Evaluator(user_agent=UA, purpose="train-ai")
    t = time.perf_counter()
    ours = [ev.evaluate(u, headers=h) for u, h in zip(urls, corpus, strict=True)]
    cold = (time.perf_counter() - t) / n_sets

    def consentry_pass() -> float:
        t = time.perf_counter()
        for u, h in zip(urls, corpus, strict=True):
            ev.evaluate(u, headers=h)
        return (time.perf_counter() - t) / n_sets

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from datadiligence.rules import TDMRepHeader, XRobotsTagHeader
    except ImportError:
        dd_passes: list[float] = []
        ours_passes = sorted(consentry_pass() for _ in range(rounds))
        theirs: list[bool] = []
    else:
        xrt, tdm = XRobotsTagHeader(user_agent=UA), TDMRepHeader()
        theirs = [xrt.is_allowed(headers=h) and tdm.is_allowed(headers=h) for h in corpus]

        def dd_pass() -> float:
            t = time.perf_counter()
            for h in corpus:
                xrt.is_allowed(headers=h) and tdm.is_allowed(headers=h)
            return (time.perf_counter() - t) / n_sets

        ours_passes, dd_passes = [], []
        for _ in range(rounds):  # interleaved, so both see the same machine load
            ours_passes.append(consentry_pass())
            dd_passes.append(dd_pass())
        ours_passes.sort()
        dd_passes.sort()

    agreement: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    for h, d, allowed in zip(corpus, ours, theirs, strict=False):
        key = ("allow" if allowed else "deny", d.decision)
        agreement[key] += 1
        if key not in examples:
            shown = {
                k: v
                for k, v in h.items()
                if k.lower() in ("x-robots-tag", "tdm-reservation", "content-usage")
            }
            examples[key] = json.dumps(shown) + (f" → {d.signal}: {d.evidence}" if d.signal else "")
    best, median = ours_passes[0], ours_passes[len(ours_passes) // 2]
    dd_best = dd_passes[0] if dd_passes else None
    dd_median = dd_passes[len(dd_passes) // 2] if dd_passes else None
    return {
        "header_sets": n_sets,
        "rounds": rounds,
        "consentry_us_cold": cold * 1e6,
        "consentry_us_best": best * 1e6,
        "consentry_us_median": median * 1e6,
        "datadiligence_us_best": dd_best * 1e6 if dd_best else None,
        "datadiligence_us_median": dd_median * 1e6 if dd_median else None,
        "ratio_best": best / dd_best if dd_best else None,
        "ratio_median": median / dd_median if dd_median else None,
        "ratio_cold": cold / dd_median if dd_median else None,
        "datadiligence_available": bool(dd_passes),
        "agreement": [
            {"datadiligence": k[0], "consentry": k[1], "count": v, "example": examples[k]}
            for k, v in sorted(agreement.items())
        ],
    }


# -- loopback hosts ----------------------------------------------------------------------


def host_files(index: int) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """What loopback host ``index`` serves (path → status, headers, body); pages added later."""
    files: dict[str, tuple[int, dict[str, str], bytes]] = {}
    kind = index % 10
    if kind == 0:
        files["/robots.txt"] = (404, {}, b"not found")
    elif kind == 1:
        files["/robots.txt"] = (200, {}, b"User-agent: ExampleBot\nDisallow: /\n")
    else:
        robots = "User-agent: *\nDisallow: /private/\nContent-Usage: /aipref/ train-ai=n\n"
        files["/robots.txt"] = (200, {"Content-Type": "text/plain"}, robots.encode())
    if kind in (2, 3):
        files["/.well-known/tdmrep.json"] = (
            200,
            {"Content-Type": "application/json"},
            b'[{"location": "/tdm/", "tdm-reservation": 1}]',
        )
    if kind == 4:
        files["/ai.txt"] = (
            200,
            {"Content-Type": "text/plain"},
            b"User-Agent: *\nDisallow: *.jpg\n",
        )
    return files


def page_headers(index: int, n: int) -> dict[str, str]:
    variant = (n * 2654435761 >> 9) % 8  # spread over hosts and paths
    headers = {"Content-Type": "text/plain"}
    if variant == 1:
        headers["X-Robots-Tag"] = "noai"
    elif variant == 2:
        headers["X-Robots-Tag"] = "NoAI"
    elif variant == 3:
        headers["tdm-reservation"] = "1"
    elif variant == 4:
        headers["Content-Usage"] = "train-ai=n"
    elif variant == 5:
        headers["X-Robots-Tag"] = "googlebot: noindex, noai"
    return headers


def url_list(n_urls: int, n_hosts: int, port0: int) -> list[str]:
    urls = []
    prefixes = ["/a/", "/b/", "/private/", "/aipref/", "/tdm/", "/c/"]
    for n in range(n_urls):
        index = n % n_hosts
        prefix = prefixes[(n // n_hosts) % len(prefixes)]
        ext = ".jpg" if n % 13 == 0 else ".txt"
        urls.append(f"http://127.0.0.1:{port0 + index}{prefix}{n}{ext}")
    return urls


def _serve(port0: int, n_hosts: int, ready: Any, stop: Any) -> None:
    """The server process: one asyncio server per port, fixed answers, request counting."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    counts: Counter[tuple[int, str]] = Counter()
    reasons = {200: b"OK", 404: b"Not Found"}

    def response(status: int, headers: dict[str, str], body: bytes) -> bytes:
        head = [b"HTTP/1.1 %d %s" % (status, reasons.get(status, b"X"))]
        head.append(b"Content-Length: %d" % len(body))
        head.extend(f"{k}: {v}".encode() for k, v in headers.items())
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    tables = []
    for index in range(n_hosts):
        table = {path: response(*spec) for path, spec in host_files(index).items()}
        tables.append(table)
    not_found = response(404, {}, b"not found")

    class Handler(asyncio.Protocol):
        def __init__(self, index: int) -> None:
            self.index = index
            self.buf = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                path = head.split(b" ", 2)[1].decode("latin-1")
                counts[(self.index, path)] += 1
                if path == "/__stats":
                    body = json.dumps(
                        {f"{i} {p}": c for (i, p), c in counts.items() if p == "/robots.txt"}
                    ).encode()
                    self.transport.write(response(200, {}, body))  # type: ignore[attr-defined]
                    continue
                if path == "/__reset":
                    counts.clear()
                    self.transport.write(response(200, {}, b"ok"))  # type: ignore[attr-defined]
                    continue
                answer = tables[self.index].get(path)
                if answer is None:
                    if path.startswith(("/.well-known/", "/ai.txt", "/robots.txt")):
                        answer = not_found
                    else:
                        n = int(path.rsplit("/", 1)[1].split(".")[0] or 0)
                        answer = response(200, page_headers(self.index, n), b"content")
                self.transport.write(answer)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(
                lambda i=i: Handler(i), "127.0.0.1", port0 + i, backlog=1024, reuse_address=True
            )
            for i in range(n_hosts)
        ]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for s in servers:
            s.close()

    asyncio.run(main())


@contextlib.contextmanager
def loopback_hosts(n_hosts: int, port0: int) -> Iterator[None]:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(port0, n_hosts, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("loopback servers did not start")
        yield
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        return bytes(resp.read())


def _consentry_run(urls: list[str], engine: str, stats_url: str, reset_url: str) -> dict[str, Any]:
    from consentry.signals import bulk_check

    _get(reset_url)
    report = bulk_check(
        urls,
        user_agent=FULL_UA,
        purpose="train-ai",
        engine=engine,
        per_host=4,
        concurrency=400,
        timeout=10.0,
    )
    robots_hits = json.loads(_get(stats_url))
    return {
        "seconds": report.seconds,
        "urls_per_second": report.urls_per_second,
        "decisions": report.counts,
        "requests": report.requests,
        "robots_fetches_per_host": sorted(set(robots_hits.values())),
        "hosts_with_robots_fetched": len(robots_hits),
    }


def bench_bulk(
    n_urls: int, n_hosts: int, engine: str, port0: int, dd_limit: int, repeat: int
) -> dict[str, Any]:
    """consentry and datadiligence, interleaved so that both see the same machine load.

    Each of ``repeat`` rounds runs consentry over the whole list with each engine of
    ``engine`` (a comma-separated list; ``both`` is ``aiohttp`` plus one ``httpx`` run at the
    end, as before), then datadiligence over the next slice of it; together the slices cover
    the list (or its first ``dd_limit`` URLs). Ratios are per round, so each compares runs
    that met the same load.
    """
    urls = url_list(n_urls, n_hosts, port0)
    out: dict[str, Any] = {"urls": n_urls, "hosts": n_hosts, "rounds": repeat}
    engines = ["aiohttp"] if engine == "both" else [e.strip() for e in engine.split(",")]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import datadiligence as dd
    except ImportError:
        dd = None
    logging.disable(logging.ERROR)  # datadiligence's C2PA rule logs an error per non-image
    sample = urls[: dd_limit or None]
    step = -(-len(sample) // repeat)
    with loopback_hosts(n_hosts, port0):
        stats_url = f"http://127.0.0.1:{port0}/__stats"
        reset_url = f"http://127.0.0.1:{port0}/__reset"
        runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        dd_rounds: list[dict[str, Any]] = []
        loads: list[list[float]] = []
        for r in range(repeat):
            loads.append([round(x, 2) for x in os.getloadavg()])
            for name in engines:
                runs[name].append(_consentry_run(urls, name, stats_url, reset_url))
            if dd is None:
                continue
            part = sample[r * step : (r + 1) * step]
            denied = errors = 0
            t = time.perf_counter()
            for url in part:
                try:
                    if not dd.is_allowed(url=url):
                        denied += 1
                except Exception:
                    errors += 1
            seconds = time.perf_counter() - t
            dd_rounds.append(
                {"urls": len(part), "seconds": seconds, "denied": denied, "errors": errors}
            )
        out["load_average_per_round"] = loads
        for name in engines:
            ordered = sorted(runs[name], key=lambda x: x["urls_per_second"])
            out[name] = {
                **ordered[len(ordered) // 2],
                "runs_urls_per_second": [round(x["urls_per_second"]) for x in runs[name]],
            }
        if dd_rounds:
            total = sum(x["seconds"] for x in dd_rounds)
            checked = sum(x["urls"] for x in dd_rounds)
            out["datadiligence"] = {
                "urls": checked,
                "seconds": total,
                "urls_per_second": checked / total,
                "rounds_urls_per_second": [round(x["urls"] / x["seconds"]) for x in dd_rounds],
                "denied": sum(x["denied"] for x in dd_rounds),
                "errors": sum(x["errors"] for x in dd_rounds),
            }
            out["ratios"] = {}
            for name in engines:
                per_round = [
                    c["urls_per_second"] / (d["urls"] / d["seconds"])
                    for c, d in zip(runs[name], dd_rounds, strict=True)
                ]
                ordered_ratios = sorted(per_round)
                out["ratios"][name] = {
                    "per_round": [round(x, 1) for x in per_round],
                    "median": ordered_ratios[len(ordered_ratios) // 2],
                }
            first = engines[0]
            out["ratio_per_round"] = out["ratios"][first]["per_round"]
            out["ratio_median"] = out["ratios"][first]["median"]
        if engine == "both":
            out["httpx"] = _consentry_run(urls, "httpx", stats_url, reset_url)
            out["httpx"]["runs_urls_per_second"] = [round(out["httpx"]["urls_per_second"])]
    return out


def profile_bulk(n_urls: int, n_hosts: int, engine: str, port0: int, out: str) -> int:
    """One warm-up and one profiled bulk run per engine; CPU time, not wall time.

    The checker shares the machine with the server process (and, on a shared VM, with
    everything else), so wall time in a profile mostly measures waiting; CPU time shows where
    the checker's own work goes.
    """
    import cProfile
    import pstats

    from consentry.signals import bulk_check

    urls = url_list(n_urls, n_hosts, port0)
    options = {"per_host": 4, "concurrency": 400, "timeout": 10.0}
    with loopback_hosts(n_hosts, port0):
        for name in [e.strip() for e in engine.split(",")]:
            bulk_check(urls, user_agent=FULL_UA, purpose="train-ai", engine=name, **options)
            profiler = cProfile.Profile(time.process_time)
            cpu, wall = time.process_time(), time.perf_counter()
            profiler.enable()
            report = bulk_check(
                urls, user_agent=FULL_UA, purpose="train-ai", engine=name, **options
            )
            profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            plain_cpu = time.process_time()
            plain = bulk_check(urls, user_agent=FULL_UA, purpose="train-ai", engine=name, **options)
            plain_cpu = time.process_time() - plain_cpu
            print(
                f"{name}: profiled run {cpu:.2f} s CPU in {wall:.2f} s; unprofiled run"
                f" {plain.urls_per_second:.0f} URLs/s, {plain_cpu:.2f} s CPU"
                f" ({plain_cpu / n_urls * 1e6:.0f} µs per URL); requests {report.requests};"
                f" load average {os.getloadavg()}"
            )
            profiler.dump_stats(f"{out}.{name}")
            pstats.Stats(f"{out}.{name}").sort_stats("tottime").print_stats(25)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument(
        "--engine",
        default="direct,aiohttp",
        help="engines to run each round, comma-separated (direct, aiohttp, httpx, auto),"
        " or both (aiohttp each round, httpx once)",
    )
    parser.add_argument("--port", type=int, default=24100, help="first loopback port")
    parser.add_argument("--header-sets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--dd-limit", type=int, default=0, help="check only this many URLs with datadiligence"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="bulk rounds (consentry + a datadiligence slice)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="instead: profile one bulk run per engine (CPU time, cProfile) into FILE.<engine>",
    )
    args = parser.parse_args(argv)
    if args.profile:
        return profile_bulk(args.urls, args.hosts, args.engine, args.port, args.profile)

    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python benchmarks/signals.py " + " ".join(sys.argv[1:]),
        "load_average_before": os.getloadavg(),
    }
    off = bench_offline(args.header_sets, args.rounds)
    results["offline"] = off
    print(f"offline: {off['header_sets']} header sets x {off['rounds']} rounds")
    print(
        f"  consentry     {off['consentry_us_best']:.2f} µs/set best,"
        f" {off['consentry_us_median']:.2f} median (first pass, cold caches:"
        f" {off['consentry_us_cold']:.2f})"
    )
    if off["datadiligence_available"]:
        print(
            f"  datadiligence {off['datadiligence_us_best']:.2f} µs/set best,"
            f" {off['datadiligence_us_median']:.2f} median"
        )
        print(
            f"  ratio         {off['ratio_best']:.2f}x best, {off['ratio_median']:.2f}x median"
            f" (cold first pass {off['ratio_cold']:.2f}x)"
        )
        for row in off["agreement"]:
            print(
                f"  dd {row['datadiligence']:5} / consentry {row['consentry']:5}:"
                f" {row['count']:5}  e.g. {row['example']}"
            )
    bulk = bench_bulk(args.urls, args.hosts, args.engine, args.port, args.dd_limit, args.repeat)
    results["load_average_after"] = os.getloadavg()
    results["bulk"] = bulk
    dd_rate = bulk["datadiligence"]["urls_per_second"] if bulk.get("datadiligence") else None
    print(f"bulk: {bulk['urls']} URLs over {bulk['hosts']} loopback hosts")
    for name in ("direct", "aiohttp", "httpx", "auto"):
        if name in bulk:
            r = bulk[name]
            extra = f" = {r['urls_per_second'] / dd_rate:.1f}x datadiligence" if dd_rate else ""
            print(
                f"  consentry[{name}] {r['urls_per_second']:8.0f} URLs/s"
                f" ({r['seconds']:.2f}s){extra};"
                f" runs {r['runs_urls_per_second']};"
                f" robots.txt fetches per host {r['robots_fetches_per_host']}"
                f" on {r['hosts_with_robots_fetched']} hosts; {r['decisions']}"
            )
    if dd_rate:
        d = bulk["datadiligence"]
        print(
            f"  datadiligence     {dd_rate:8.0f} URLs/s ({d['seconds']:.2f}s for {d['urls']} URLs,"
            f" denied {d['denied']}, errors {d['errors']}); rounds {d['rounds_urls_per_second']}"
        )
        for name, ratio in bulk["ratios"].items():
            print(
                f"  consentry[{name}] / datadiligence per round (same load):"
                f" {ratio['per_round']}, median {ratio['median']:.1f}x"
            )
        print(f"  load average at each round's start: {bulk['load_average_per_round']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
