"""The direct HTTP engine: keep-alive, bodies, closes, timeouts, bad answers (loopback only)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from consentry.errors import InvalidInput
from consentry.signals.fetch import FetchError, Response

pytest.importorskip("httptools", reason="httptools not installed")

from consentry.signals.direct import DirectEngine

Script = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Given a request head, answer on the writer; return False to close the connection."""

DEADLINE = 10.0  # seconds any test step may take


def ok(body: bytes = b"content", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n{extra}\r\n"
    ).encode() + body


def run(script: Script, test: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
    """Serve ``script`` on a loopback port and run ``test(base_url, stats)`` against it."""

    async def main() -> None:
        stats: dict[str, Any] = {"connections": 0, "targets": []}

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stats["connections"] += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    stats["targets"].append(head.split(b" ", 2)[1].decode())
                    if not await script(head, writer):
                        break
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(test(f"http://127.0.0.1:{port}", stats), DEADLINE)
        finally:
            server.close()

    asyncio.run(main())


def engine(timeout: float = 2.0) -> DirectEngine:
    return DirectEngine(user_agent="ExampleBot/1.0", timeout=timeout, per_host=2, trust_env=False)


def read_all(response: Response) -> int:
    return 1 << 20


def read_none(response: Response) -> int:
    return 0


def test_keep_alive_and_headers() -> None:
    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        assert b"User-Agent: ExampleBot/1.0\r\n" in head and b"Host: 127.0.0.1:" in head
        w.write(ok(extra="X-Robots-Tag: noai\r\nX-Robots-Tag: noindex\r\n"))
        return True

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine()
        first = await e.get(base + "/a", read_body=read_all)
        second = await e.get(base + "/b", read_body=read_none)
        assert (first.status, first.body, second.body) == (200, b"content", b"")
        assert [v for k, v in first.headers if k == "x-robots-tag"] == ["noai", "noindex"]
        assert stats["connections"] == 1  # the second request reused the connection
        await e.aclose()

    run(script, test)


def test_chunked_body_limit_and_truncation() -> None:
    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        w.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return True

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine()
        whole = await e.get(base + "/c", read_body=read_all)
        assert (whole.body, whole.truncated) == (b"hello world", False)
        cut = await e.get(base + "/c", read_body=lambda r: 4)
        assert (cut.body, cut.truncated) == (b"hell", True)
        await e.aclose()

    run(script, test)


def test_unwanted_large_body_closes_instead_of_draining() -> None:
    big = b"x" * (4 << 20)

    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(ok(big))
        return True

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine()
        r = await e.get(base + "/big.mp4", read_body=read_none)
        assert (r.status, r.body) == (200, b"")
        r = await e.get(base + "/big.mp4", read_body=read_none)
        assert stats["connections"] == 2  # the first connection was not reused
        await e.aclose()

    run(script, test)


def test_server_closing_a_kept_connection_is_retried_once() -> None:
    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(ok())
        return False  # answers, then closes without saying so

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine()
        await e.get(base + "/1", read_body=read_none)
        await asyncio.sleep(0.05)  # the close reaches the client
        r = await e.get(base + "/2", read_body=read_all)
        assert r.body == b"content"
        assert stats["connections"] == 2
        await e.aclose()

    run(script, test)


def test_connection_close_and_body_until_close() -> None:
    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        return False

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine()
        r = await e.get(base + "/x", read_body=read_all)
        assert r.body == b"until the end"
        await e.get(base + "/y", read_body=read_all)
        assert stats["connections"] == 2
        await e.aclose()

    run(script, test)


def test_timeout_bad_answer_and_encoded_target() -> None:
    async def script(head: bytes, w: asyncio.StreamWriter) -> bool:
        target = head.split(b" ", 2)[1]
        if target == b"/hang":
            await asyncio.sleep(1.0)
            return False
        if target == b"/junk":
            w.write(b"SPDY/9 banana\r\n\r\n")
            return False
        w.write(ok())
        return True

    async def test(base: str, stats: dict[str, Any]) -> None:
        e = engine(timeout=0.2)
        with pytest.raises(FetchError, match="timeout"):
            await e.get(base + "/hang", read_body=read_none)
        with pytest.raises(FetchError, match="bad HTTP response"):
            await e.get(base + "/junk", read_body=read_none)
        await e.get(base + "/a b/ü?q=1#frag", read_body=read_none)
        assert stats["targets"][-1] == "/a%20b/%C3%BC?q=1"
        with pytest.raises(FetchError, match="not an http"):
            await e.get("ftp://127.0.0.1/x", read_body=read_none)
        await e.aclose()

    run(script, test)


def test_refused_connection_and_proxies() -> None:
    async def main() -> None:
        e = engine(timeout=0.5)
        with pytest.raises(FetchError):
            await asyncio.wait_for(e.get("http://127.0.0.1:9/x", read_body=read_none), DEADLINE)
        await e.aclose()

    asyncio.run(main())
    with pytest.raises(InvalidInput, match="does not use proxies"):
        DirectEngine(user_agent="B", timeout=1, per_host=1, trust_env=True)
