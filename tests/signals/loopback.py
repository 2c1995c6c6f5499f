"""A small HTTP/1.1 server on loopback ports, one port per test "host", run in a thread.

Each host is a handler ``(path) -> Reply``; a reply can redirect, fail, hang (to test
timeouts) or stream a large body. The server counts requests per (host, path).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (longer than the client timeout)


Handler = Callable[[str], Reply]

_REASONS = {200: "OK", 301: "Moved", 302: "Found", 404: "Not Found", 500: "Server Error"}


class LoopbackServer:
    """Starts ``handlers`` (name → handler) on 127.0.0.1, each on its own port."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.ports: dict[str, int] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.base_events.Server] = []
        self._lock = threading.Lock()

    def origin(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def url(self, name: str, path: str) -> str:
        return self.origin(name) + path

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        for name, handler in self.handlers.items():
            server = await asyncio.start_server(
                lambda r, w, n=name, h=handler: self._serve(n, h, r, w), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in asyncio.all_tasks(self._loop):
            if task is not asyncio.current_task():
                task.cancel()

    async def _serve(
        self,
        name: str,
        handler: Handler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = request_line.split(" ")
                path = parts[1] if len(parts) > 1 else "/"
                with self._lock:
                    self.hits[(name, path)] += 1
                reply = handler(path)
                if reply.hang:
                    await asyncio.sleep(reply.hang)
                    return
                lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'X')}"]
                headers = {"Content-Length": str(len(reply.body)), **reply.headers}
                lines.extend(f"{k}: {v}" for k, v in headers.items())
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                for start in range(0, len(reply.body), 65536):
                    writer.write(reply.body[start : start + 65536])
                    await writer.drain()
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
