"""The ``direct`` HTTP engine: HTTP/1.1 GETs on asyncio protocols, parsed by ``httptools``.

A bulk check spends most of its CPU in the HTTP client, and a general-purpose client does a
lot per request that a checker does not need (cookie jars, tracing hooks, URL objects,
middleware, decompression). This engine does only what the checker asks for: one GET, no
redirects (the checker follows them itself), the status and header fields, and at most
``read_body(response)`` bytes of the body. Connections are kept alive and reused per origin
(at most ``per_host`` idle ones each, and :data:`MAX_IDLE` in all, least recently used
closed first). ``httptools`` is llhttp, the parser Node.js uses; it comes with
``uvicorn[standard]``, which consentry already requires.

What it leaves out: proxies (``trust_env``: use the aiohttp or httpx engine), content
encodings (it asks for ``identity``), HTTP/2. A body the caller does not want is not read:
the connection is closed instead, unless the whole message had already arrived.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import OrderedDict
from urllib.parse import quote, urlsplit

from .http import FetchError, ReadBody, Response

#: Idle keep-alive connections kept across all origins.
MAX_IDLE = 512

# characters that may appear in a request target as they are (RFC 3986 plus '%')
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"
# the common case, split without urlsplit: a host name, maybe a port, a plain target
_SIMPLE = re.compile(
    r"(https?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?"
    r"((?:/[A-Za-z0-9!$&'()*+,;=:@/._~%-]*)?(?:\?[A-Za-z0-9!$&'()*+,;=:@/?._~%-]*)?)(?:#.*)?"
)


class _Exchange(asyncio.Protocol):
    """One connection: sends a request, parses the answer, tells the waiting GET."""

    __slots__ = (
        "body",
        "body_size",
        "closed",
        "error",
        "headers",
        "headers_done",
        "keep_alive",
        "limit",
        "message_done",
        "parser",
        "read_body",
        "response",
        "timer",
        "transport",
        "url",
        "waiter",
    )

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[bool] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self._reset("", _no_body)

    def _reset(self, url: str, read_body: ReadBody) -> None:
        self.url = url
        self.read_body = read_body
        self.headers: list[tuple[str, str]] = []
        self.headers_done = False
        self.error: BaseException | None = None
        self.keep_alive = False
        self.message_done = False
        self.response: Response | None = None
        self.limit = 0
        self.body: list[bytes] = []
        self.body_size = 0

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # asked now: llhttp forgets it once the message is complete
        self.keep_alive = self.parser.should_keep_alive()
        # how much body to keep is known before the first body byte is parsed
        self.response = Response(self.url, self.parser.get_status_code(), self.headers)
        try:
            self.limit = self.read_body(self.response)
        except Exception as exc:  # the caller's callback: report it, do not hang
            self.error = exc

    def on_body(self, body: bytes) -> None:
        if self.body_size <= self.limit:
            self.body.append(body)
        self.body_size += len(body)

    def on_message_complete(self) -> None:
        self.message_done = True

    # -- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.closed = True  # bytes nobody asked for: this connection is unusable
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError and friends
            self._fail(FetchError(f"bad HTTP response: {exc}"))
            return
        if self.error is not None:
            self._fail(self.error)
            return
        if self.response is None:
            return
        if self.message_done:
            self._finish(reusable=self.keep_alive)
        elif self.limit <= 0 or self.body_size > self.limit:
            self._finish(reusable=False)  # the rest is not wanted: close, do not drain

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.response is not None:
                self._finish(reusable=False)  # a body delimited by the connection's close
            else:
                self._fail(FetchError("connection closed before an answer"))

    # -- the waiting side ------------------------------------------------------------------

    def _finish(self, *, reusable: bool) -> None:
        response = self.response
        assert response is not None
        if self.limit > 0:
            body = b"".join(self.body)
            response.truncated = len(body) > self.limit
            response.body = body[: self.limit]
        self._settle()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(reusable)

    def _fail(self, exc: BaseException) -> None:
        self._settle()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _settle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self) -> None:
        self.timer = None
        self._fail(FetchError("timeout"))

    async def exchange(
        self, request: bytes, url: str, read_body: ReadBody, timeout: float
    ) -> tuple[Response, bool]:
        """Send ``request`` and wait for the answer: (response, whether to keep the conn)."""
        import httptools

        loop = asyncio.get_running_loop()
        self._reset(url, read_body)
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = loop.create_future()
        self.timer = loop.call_later(timeout, self._timeout)
        assert self.transport is not None
        self.transport.write(request)
        try:
            reusable = await self.waiter
        finally:
            self._settle()
            self.waiter = None
        assert self.response is not None
        return self.response, reusable and not self.closed


def _no_body(response: Response) -> int:
    return 0


class DirectEngine:
    """The engine (see the module docstring); same interface as the others in :mod:`.fetch`."""

    def __init__(self, *, user_agent: str, timeout: float, per_host: int, trust_env: bool) -> None:
        if trust_env:
            from ..errors import InvalidInput

            raise InvalidInput(
                "the direct engine does not use proxies",
                hint="use the aiohttp or httpx engine with trust_env",
            )
        import httptools  # noqa: F401  (fail here, not on the first request)

        self._agent = user_agent.replace("\r", " ").replace("\n", " ")
        self._timeout = timeout
        self._per_host = max(1, per_host)
        self._idle: OrderedDict[str, list[_Exchange]] = OrderedDict()
        self._idle_count = 0
        self._ssl: ssl.SSLContext | None = None
        self._open: set[_Exchange] = set()

    @staticmethod
    def _split(url: str) -> tuple[str, str, int, str, str]:
        """(origin key, host, port, Host header, request target) of an http(s) URL."""
        m = _SIMPLE.fullmatch(url)
        if m is not None:
            scheme, host, port_text, target = m.groups()
            host = host.lower()
            default = 443 if scheme == "https" else 80
            port = int(port_text) if port_text else default
            if port < 65536:
                host_header = host if port == default else f"{host}:{port}"
                if not target or target[0] == "?":
                    target = "/" + target
                return f"{scheme}://{host_header}", host, port, host_header, target
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"not an http(s) URL: {url!r}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise FetchError(f"bad port in {url!r}") from exc
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host_header = shown if default else f"{shown}:{port}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if not target.isascii() or any(c <= " " or c in '"<>\\^`{|}' for c in target):
            target = quote(target, safe=_TARGET_SAFE)
        return f"{scheme}://{host_header}", host, port, host_header, target

    async def _connect(self, scheme_is_tls: bool, host: str, port: int) -> _Exchange:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if scheme_is_tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    _Exchange, host, port, ssl=context, server_hostname=host if context else None
                ),
                self._timeout,
            )
        except TimeoutError as exc:
            raise FetchError("timeout (connect)") from exc
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        return protocol

    def _take_idle(self, key: str) -> _Exchange | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            if not conns:
                del self._idle[key]
            if not conn.closed:
                return conn
            conns = self._idle.get(key)
        return None

    def _put_idle(self, key: str, conn: _Exchange) -> None:
        conns = self._idle.setdefault(key, [])
        self._idle.move_to_end(key)
        if len(conns) >= self._per_host:
            self._close(conn)
            return
        conns.append(conn)
        self._idle_count += 1
        while self._idle_count > MAX_IDLE:
            oldest_key, oldest = next(iter(self._idle.items()))
            self._close(oldest.pop(0))
            self._idle_count -= 1
            if not oldest:
                del self._idle[oldest_key]

    def _close(self, conn: _Exchange) -> None:
        conn.closed = True
        self._open.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def get(self, url: str, *, read_body: ReadBody) -> Response:
        key, host, port, host_header, target = self._split(url)
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {self._agent}\r\n"
            "Accept: */*\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode("latin-1", "replace")
        tls = key.startswith("https:")
        for attempt in (0, 1):
            conn = self._take_idle(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(tls, host, port)
                self._open.add(conn)
            try:
                response, reusable = await conn.exchange(request, url, read_body, self._timeout)
            except FetchError as exc:
                self._close(conn)
                # a kept-alive connection the server had closed: one retry on a fresh one
                if reused and attempt == 0 and "closed before" in str(exc):
                    continue
                raise
            if reusable:
                self._put_idle(key, conn)
            else:
                self._close(conn)
            return response
        raise FetchError("connection closed before an answer")  # pragma: no cover

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._close(conn)
        self._idle.clear()
        self._idle_count = 0
        await asyncio.sleep(0)  # let the transports close
