"""Fetching what a decision needs: :func:`check_url`, :class:`SignalChecker`.

Per host, robots.txt is fetched once (and kept up to 24 hours, less if its ``Cache-Control``
says so), then ``/.well-known/tdmrep.json`` and ``/ai.txt`` when robots.txt lets the crawler
fetch them and the purpose needs them. A URL that robots.txt forbids is never fetched.

robots.txt follows RFC 9309 §2.3: up to 5 redirects; a 4xx answer means "no robots.txt",
so everything may be crawled; a 5xx answer, a timeout or a network error means complete
disallow; more than 5 redirects counts as "no robots.txt". Only the first 500 KiB are read.
``429 Too Many Requests`` is treated like a 5xx (the server is overloaded, not saying "none").

Three HTTP engines give the same answers: ``direct`` (:mod:`.direct`: asyncio protocols and
the ``httptools`` parser, the fastest, used by ``engine="auto"`` unless proxies are wanted),
``aiohttp`` (when installed) and ``httpx`` (always available). All speak HTTP/1.1 with
keep-alive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urljoin, urlsplit

from ..errors import InvalidInput
from . import model
from .evaluate import Evaluator
from .http import Engine, FetchError, ReadBody, Response
from .model import DENY, Finding, UrlDecision
from .robots import MAX_ROBOTS_BYTES, RobotsTxt
from .tdmrep import TdmRepFile

MAX_REDIRECTS = 5
MAX_FILE_BYTES = MAX_ROBOTS_BYTES
MAX_HTML_BYTES = 512 * 1024
DAY = 24 * 3600.0
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


class HttpxEngine:
    """Requests through ``httpx`` (no redirects followed: the checker does).

    One small client per origin: httpcore's pool scans all its connections for every request,
    so a single pool of hundreds of connections gets slow; per-origin pools stay small. They
    share one TLS context, and the least recently used are closed past ``max_clients``.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float,
        per_host: int,
        trust_env: bool,
        max_clients: int = 256,
    ) -> None:
        import httpx

        self._httpx = httpx
        self._options: dict[str, Any] = {
            "headers": {"User-Agent": user_agent},
            "timeout": httpx.Timeout(timeout),
            "follow_redirects": False,
            "trust_env": trust_env,
            "limits": httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host),
        }
        self._ssl: Any = None
        self._clients: dict[str, Any] = {}
        self._max_clients = max_clients
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, url: str) -> Any:
        key = origin_of(url)
        client = self._clients.pop(key, None)
        if client is None:
            if self._ssl is None and url.startswith("https:"):
                self._ssl = self._httpx.create_ssl_context()
            client = self._httpx.AsyncClient(verify=self._ssl or True, **self._options)
            if len(self._clients) >= self._max_clients:
                oldest = next(iter(self._clients))
                task = asyncio.ensure_future(self._clients.pop(oldest).aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._clients[key] = client  # most recently used last
        return client

    async def get(self, url: str, *, read_body: ReadBody) -> Response:
        httpx = self._httpx
        try:
            async with self._client(url).stream("GET", url) as resp:
                out = Response(
                    str(resp.url),
                    resp.status_code,
                    [(k.lower(), v) for k, v in resp.headers.multi_items()],
                )
                limit = read_body(out)
                if limit > 0:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > limit:
                            out.truncated = True
                            break
                    out.body = b"".join(chunks)[:limit]
                return out
        except httpx.TimeoutException as exc:
            raise FetchError(f"timeout ({type(exc).__name__})") from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class AiohttpEngine:
    """Requests through ``aiohttp`` (its C HTTP parser makes bulk checks several times faster)."""

    def __init__(self, *, user_agent: str, timeout: float, per_host: int, trust_env: bool) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": user_agent},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=per_host, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(),  # a checker keeps no cookies
            trust_env=trust_env,
        )

    async def get(self, url: str, *, read_body: ReadBody) -> Response:
        aiohttp = self._aiohttp
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                out = Response(
                    str(resp.url),
                    resp.status,
                    [(k.lower(), v) for k, v in resp.headers.items()],
                )
                limit = read_body(out)
                if limit > 0:
                    body = await resp.content.read(limit + 1)
                    while len(body) <= limit and not resp.content.at_eof():
                        more = await resp.content.read(limit + 1 - len(body))
                        if not more:
                            break
                        body += more
                    out.truncated = len(body) > limit
                    out.body = body[:limit]
                return out
        except TimeoutError as exc:
            raise FetchError("timeout") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def aclose(self) -> None:
        await self._session.close()


def make_engine(
    engine: str, *, user_agent: str, timeout: float, per_host: int, trust_env: bool = False
) -> Engine:
    """An engine by name: ``direct``, ``aiohttp``, ``httpx`` or ``auto``.

    ``auto`` is ``direct`` when ``httptools`` is installed and no proxy settings are to be
    honoured (``trust_env``), else ``aiohttp`` when installed, else ``httpx``.
    """
    if engine == "auto":
        engine = "httpx"
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            pass
        else:
            engine = "aiohttp"
        if not trust_env:
            try:
                import httptools  # noqa: F401
            except ImportError:
                pass
            else:
                engine = "direct"
    options: dict[str, Any] = {
        "user_agent": user_agent,
        "timeout": timeout,
        "per_host": per_host,
        "trust_env": trust_env,
    }
    if engine == "httpx":
        return HttpxEngine(**options)
    if engine == "direct":
        try:
            from .direct import DirectEngine

            return DirectEngine(**options)
        except ImportError as exc:
            raise InvalidInput(
                "the direct engine needs the httptools package", hint="pip install httptools"
            ) from exc
    if engine == "aiohttp":
        try:
            return AiohttpEngine(**options)
        except ImportError as exc:
            raise InvalidInput(
                "the aiohttp engine needs the aiohttp package", hint="pip install aiohttp"
            ) from exc
    raise InvalidInput(f"unknown engine {engine!r}", hint="use auto, direct, aiohttp or httpx")


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+)(:[0-9]{1,5})?(?:[/?#]|$)")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased; raises InvalidInput otherwise."""
    m = _ORIGIN.match(url)
    if m is not None:
        scheme, host, port = m.groups()
        if port is None or port == (":80" if scheme == "http" else ":443"):
            return f"{scheme}://{host}"
        if port != ":" and int(port[1:]) < 65536:
            return f"{scheme}://{host}{port}"
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"not an http(s) URL: {url!r}", field="url", value=url)
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"bad port in URL {url!r}", field="url", value=url) from exc
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


@dataclass(slots=True)
class RobotsState:
    """What fetching robots.txt gave: ``ok`` (parsed), ``unavailable`` or ``unreachable``."""

    status: str
    robots: RobotsTxt | None
    evidence: str
    expires_at: float


@dataclass(slots=True)
class HostSignals:
    """The site-wide files of one origin."""

    origin: str
    robots: RobotsState
    tdmrep: TdmRepFile | None = None
    aitxt: RobotsTxt | None = None
    notes: list[str] = field(default_factory=list)


class SignalChecker:
    """Fetches and evaluates signals for many URLs, with one robots.txt fetch per host.

    A URL whose site-wide signals already deny — a robots.txt ``Content-Usage`` or an ai.txt
    rule; nothing the response could say would turn that into an allow — is not fetched,
    unless ``complete=True`` asks for every finding. (A tdmrep.json reservation is not such a
    signal: the response's TDMRep header supersedes it.)

    Use it as an async context manager::

        async with SignalChecker(user_agent="ExampleBot/1.0", purpose="train-ai") as checker:
            decisions = await checker.check_many(urls)
    """

    def __init__(
        self,
        *,
        user_agent: str,
        purpose: str,
        per_host: int = 4,
        concurrency: int = 256,
        timeout: float = 10.0,
        engine: str = "auto",
        fetch_html: bool = True,
        complete: bool = False,
        cache_ttl: float = DAY,
        failure_ttl: float = 600.0,
        trust_env: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_host < 1 or concurrency < 1:
            raise InvalidInput("per_host and concurrency must be at least 1")
        self.evaluator = Evaluator(user_agent=user_agent, purpose=purpose)
        self.user_agent = user_agent
        self.per_host = per_host
        self.concurrency = concurrency
        self.fetch_html = fetch_html
        self.complete = complete
        self.cache_ttl = min(cache_ttl, DAY)
        self.failure_ttl = min(failure_ttl, self.cache_ttl)
        self._engine_name = engine
        self._timeout = timeout
        self._trust_env = trust_env
        self._engine: Engine | None = None
        self._clock = clock
        self._hosts: dict[str, tuple[float, asyncio.Task[HostSignals]]] = {}
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._global: asyncio.Semaphore | None = None
        #: Requests made, by kind ("robots.txt", "tdmrep.json", "ai.txt", "resource").
        self.requests: dict[str, int] = {}

    async def __aenter__(self) -> SignalChecker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for _, task in self._hosts.values():
            if not task.done():
                task.cancel()
        if self._engine is not None:
            await self._engine.aclose()
            self._engine = None

    # -- plumbing ---------------------------------------------------------------------------

    def _get_engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(
                self._engine_name,
                user_agent=self.user_agent,
                timeout=self._timeout,
                per_host=self.per_host,
                trust_env=self._trust_env,
            )
        return self._engine

    async def _get(
        self, url: str, kind: str, read_body: ReadBody, origin: str | None = None
    ) -> Response:
        if origin is None:
            origin = origin_of(url)
        sem = self._host_sems.get(origin)
        if sem is None:
            sem = self._host_sems[origin] = asyncio.Semaphore(self.per_host)
        if self._global is None:
            self._global = asyncio.Semaphore(self.concurrency)
        self.requests[kind] = self.requests.get(kind, 0) + 1
        async with sem, self._global:
            return await self._get_engine().get(url, read_body=read_body)

    async def _get_following(
        self, url: str, kind: str, read_body: ReadBody, *, same_origin: bool = False
    ) -> tuple[Response | None, int]:
        """GET following up to 5 redirects; (None, hops) when there were more.

        With ``same_origin``, a redirect to another origin counts as "no file".
        """
        current = url
        for hops in range(MAX_REDIRECTS + 1):
            resp = await self._get(current, kind, read_body)
            location = resp.header("location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                target = urljoin(current, location)
                try:
                    target_origin = origin_of(target)
                except InvalidInput as exc:
                    raise FetchError(f"bad redirect to {target!r}") from exc
                if same_origin and target_origin != origin_of(current):
                    return None, hops + 1
                current = target
                continue
            return resp, hops
        return None, MAX_REDIRECTS + 1

    # -- site-wide files --------------------------------------------------------------------

    async def host_signals(self, origin: str) -> HostSignals:
        """The site-wide signals of ``origin``, fetched once and cached."""
        now = self._clock()
        cached = self._hosts.get(origin)
        if cached is not None and cached[0] > now:
            return await cached[1]
        task = asyncio.ensure_future(self._fetch_host(origin))
        self._hosts[origin] = (now + self.cache_ttl, task)
        result = await task
        self._hosts[origin] = (result.robots.expires_at, task)
        return result

    async def _fetch_host(self, origin: str) -> HostSignals:
        robots = await self._fetch_robots(origin)
        signals = HostSignals(origin, robots)
        if robots.status == "unreachable" or not self.evaluator.tdm:
            return signals
        token = self.evaluator.token
        jobs: list[Awaitable[None]] = []
        tdm_url = origin + "/.well-known/tdmrep.json"
        ai_url = origin + "/ai.txt"
        allows = robots.robots.can_fetch if robots.robots is not None else None
        if allows is None or allows(tdm_url, token):
            jobs.append(self._fetch_tdmrep(tdm_url, signals))
        if self.evaluator.training and (allows is None or allows(ai_url, token)):
            jobs.append(self._fetch_aitxt(ai_url, signals))
        await asyncio.gather(*jobs)
        return signals

    async def _fetch_robots(self, origin: str) -> RobotsState:
        url = origin + "/robots.txt"
        now = self._clock()
        try:
            resp, _hops = await self._get_following(url, "robots.txt", _read_ok(MAX_ROBOTS_BYTES))
        except FetchError as exc:
            return RobotsState(
                "unreachable",
                None,
                f"robots.txt unreachable ({exc}): complete disallow (RFC 9309 §2.3.1.4)",
                now + self.failure_ttl,
            )
        if resp is None:
            return RobotsState(
                "unavailable",
                None,
                f"robots.txt: more than {MAX_REDIRECTS} redirects, treated as unavailable",
                now + self.cache_ttl,
            )
        status = resp.status
        if 200 <= status < 300:
            ttl = self.cache_ttl
            match = _MAX_AGE.search(resp.header("cache-control") or "")
            if match:
                ttl = min(ttl, float(match.group(1)))
            robots = RobotsTxt.parse(resp.body)
            note = " (cut at 500 KiB)" if resp.truncated or robots.truncated else ""
            return RobotsState("ok", robots, f"robots.txt HTTP {status}{note}", now + ttl)
        if status == 429 or status >= 500:
            return RobotsState(
                "unreachable",
                None,
                f"robots.txt HTTP {status}: complete disallow (RFC 9309 §2.3.1.4)",
                now + self.failure_ttl,
            )
        if 400 <= status < 500:
            return RobotsState(
                "unavailable",
                None,
                f"robots.txt HTTP {status}: unavailable, crawling allowed (RFC 9309 §2.3.1.3)",
                now + self.cache_ttl,
            )
        return RobotsState(
            "unavailable", None, f"robots.txt HTTP {status}: unavailable", now + self.cache_ttl
        )

    async def _fetch_tdmrep(self, url: str, signals: HostSignals) -> None:
        try:
            resp, _ = await self._get_following(
                url, "tdmrep.json", _read_ok(MAX_FILE_BYTES), same_origin=True
            )
        except FetchError as exc:
            signals.notes.append(f"tdmrep.json not fetched: {exc}")
            return
        if resp is None or not 200 <= resp.status < 300:
            return
        try:
            signals.tdmrep = TdmRepFile.parse(resp.body)
        except InvalidInput as exc:
            signals.notes.append(f"tdmrep.json ignored: {exc.message}")

    async def _fetch_aitxt(self, url: str, signals: HostSignals) -> None:
        try:
            resp, _ = await self._get_following(
                url, "ai.txt", _read_ok(MAX_FILE_BYTES), same_origin=True
            )
        except FetchError as exc:
            signals.notes.append(f"ai.txt not fetched: {exc}")
            return
        if resp is None or not 200 <= resp.status < 300:
            return
        if "html" in (resp.header("content-type") or ""):
            return  # a page served for any path, not an ai.txt
        signals.aitxt = RobotsTxt.parse(resp.body)

    # -- one URL ----------------------------------------------------------------------------

    def _robots_finding(self, url: str, signals: HostSignals) -> Finding | None:
        state = signals.robots
        if state.status == "unreachable":
            return Finding(model.ROBOTS, DENY, state.evidence)
        if state.robots is not None:
            answer = state.robots.check(url, self.evaluator.token)
            if not answer.allowed:
                return Finding(model.ROBOTS, DENY, "robots.txt " + answer.evidence)
        return None

    async def check(self, url: str, *, origin: str | None = None) -> UrlDecision:
        """Fetch what is needed and decide for ``url``."""
        ev = self.evaluator
        if origin is None:
            try:
                origin = origin_of(url)
            except InvalidInput as exc:
                return UrlDecision(
                    url, ev.token, ev.label, model.UNSET, "", exc.message, (), "bad url"
                )
        signals = await self.host_signals(origin)
        blocked = self._robots_finding(url, signals)
        if blocked is not None:
            return UrlDecision(
                url, ev.token, ev.label, DENY, blocked.signal, blocked.evidence, (blocked,)
            )
        site_findings: tuple[Finding, ...] = ()
        if signals.aitxt is not None or signals.robots.robots is not None:
            site = ev.evaluate(url, robots=signals.robots.robots, aitxt=signals.aitxt)
            if site.decision == DENY and not self.complete:
                return site
            site_findings = site.findings
        first_origin = origin
        landing = await self._follow(url, origin, signals)
        if landing.blocked is not None:
            found = landing.blocked
            return UrlDecision(
                url, ev.token, ev.label, DENY, found.signal, found.evidence, (found,)
            )
        current, origin, signals = landing.url, landing.origin, landing.signals
        headers, html, error = _page_of(landing.response, landing.error)
        if origin == first_origin and current == url:
            # robots.txt and ai.txt were read above: reuse their findings
            decision = ev.evaluate(
                current,
                headers=headers,
                tdmrep=signals.tdmrep,
                html=html,
                error=error,
                extra=site_findings,
            )
        else:
            decision = ev.evaluate(
                current,
                headers=headers,
                robots=signals.robots.robots,
                tdmrep=signals.tdmrep,
                html=html,
                aitxt=signals.aitxt,
                error=error,
            )
        if current != url:
            decision = decision._replace(url=url)
        return decision

    async def _follow(self, url: str, origin: str, signals: HostSignals) -> _Landing:
        """Fetch ``url``, following redirects while each target's robots.txt lets us."""
        read = _read_html(MAX_HTML_BYTES) if self.fetch_html else _read_none
        current = url
        resp: Response | None = None
        error = ""
        try:
            for _ in range(MAX_REDIRECTS + 1):
                resp = await self._get(current, "resource", read, origin)
                location = resp.header("location")
                if resp.status not in (301, 302, 303, 307, 308) or not location:
                    break
                target = urljoin(current, location)
                try:
                    target_origin = origin_of(target)
                except InvalidInput as exc:
                    raise FetchError(f"bad redirect to {target!r}") from exc
                if target_origin != origin:
                    signals = await self.host_signals(target_origin)
                    origin = target_origin
                blocked = self._robots_finding(target, signals)
                if blocked is not None:
                    evidence = f"redirected to {target}; {blocked.evidence}"
                    finding = Finding(blocked.signal, DENY, evidence)
                    return _Landing(target, origin, signals, None, "", finding)
                current = target
                resp = None
            else:
                error = f"more than {MAX_REDIRECTS} redirects"
        except FetchError as exc:
            error = f"unreachable: {exc}"
            resp = None
        return _Landing(current, origin, signals, resp, error, None)

    async def check_many(
        self,
        urls: Iterable[str],
        *,
        on_result: Callable[[int, UrlDecision], None] | None = None,
    ) -> list[UrlDecision]:
        """Check ``urls``; each host is worked by at most ``per_host`` requests at a time.

        Results come back in the order of ``urls``.
        """
        items = list(urls)
        results: list[UrlDecision | None] = [None] * len(items)
        by_host: dict[str, deque[int]] = {}
        for index, url in enumerate(items):
            try:
                key = origin_of(url)
            except InvalidInput:
                key = ""
            by_host.setdefault(key, deque()).append(index)

        async def work(origin: str, queue: deque[int]) -> None:
            while queue:
                index = queue.popleft()
                decision = await self.check(items[index], origin=origin or None)
                results[index] = decision
                if on_result is not None:
                    on_result(index, decision)

        active = asyncio.Semaphore(max(1, self.concurrency // self.per_host))

        async def run_host(origin: str, queue: deque[int]) -> None:
            async with active:
                workers = min(self.per_host, len(queue))
                await asyncio.gather(*(work(origin, queue) for _ in range(workers)))

        await asyncio.gather(*(run_host(o, q) for o, q in by_host.items()))
        return [r for r in results if r is not None]


def _read_ok(limit: int) -> ReadBody:
    def read(resp: Response) -> int:
        return limit if 200 <= resp.status < 300 else 0

    return read


def _read_html(limit: int) -> ReadBody:
    def read(resp: Response) -> int:
        if 200 <= resp.status < 300 and "html" in (resp.header("content-type") or ""):
            return limit
        return 0

    return read


def _read_none(resp: Response) -> int:
    return 0


async def acheck_url(url: str, *, user_agent: str, purpose: str, **options: Any) -> UrlDecision:
    """Fetch what ``url`` needs (robots.txt, tdmrep.json, ai.txt, the resource) and decide."""
    async with SignalChecker(user_agent=user_agent, purpose=purpose, **options) as checker:
        return await checker.check(url)


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop: uvloop's when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Landing(NamedTuple):
    """Where fetching a URL ended: the last URL and its origin's signals, its response (None
    when unreachable), what went wrong, or the robots.txt finding that stopped a redirect."""

    url: str
    origin: str
    signals: HostSignals
    response: Response | None
    error: str
    blocked: Finding | None


def _page_of(
    resp: Response | None, error: str
) -> tuple[list[tuple[str, str]] | None, bytes | None, str]:
    """(headers, body, error) to evaluate: a 2xx page's; for another status, the error."""
    if resp is None or error:
        return None, None, error
    if 200 <= resp.status < 300:
        return resp.headers, resp.body or None, error
    if resp.status >= 300:
        return None, None, f"HTTP {resp.status}"
    return None, None, error


def check_url(url: str, *, user_agent: str, purpose: str, **options: Any) -> UrlDecision:
    """Synchronous :func:`acheck_url` (do not call it inside a running event loop)."""
    return run(acheck_url(url, user_agent=user_agent, purpose=purpose, **options))


async def acheck_urls(
    urls: Iterable[str], *, user_agent: str, purpose: str, **options: Any
) -> list[UrlDecision]:
    """Check many URLs with one robots.txt/tdmrep.json/ai.txt fetch per host."""
    async with SignalChecker(user_agent=user_agent, purpose=purpose, **options) as checker:
        return await checker.check_many(urls)


def check_urls(
    urls: Sequence[str], *, user_agent: str, purpose: str, **options: Any
) -> list[UrlDecision]:
    """Synchronous :func:`acheck_urls`."""
    return run(acheck_urls(urls, user_agent=user_agent, purpose=purpose, **options))
