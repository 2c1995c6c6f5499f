"""A webhook receiver on 127.0.0.1 (an ephemeral port) for the delivery tests: it records
every request and answers as the test tells it (a status, a delay, or closing the socket)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """``status``: what to answer (an int, or a callable of the request count); ``down``: close
    the connection without answering; ``delay_s``: wait before answering."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status: int | Callable[[int], int] = 204
        self.down = False
        self.delay_s = 0.0
        #: While cleared, every request waits for it (at most 30 s): an endpoint that hangs.
        self.gate = threading.Event()
        self.gate.set()
        self.attempts = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                with receiver._lock:
                    receiver.attempts += 1
                    n = receiver.attempts
                    down, delay = receiver.down, receiver.delay_s
                    status = receiver.status
                receiver.gate.wait(30)
                if delay:
                    time.sleep(delay)
                if down:
                    self.close_connection = True
                    self.connection.close()
                    return
                code = status(n) if callable(status) else status
                if 200 <= code < 300:
                    with receiver._cond:
                        receiver.received.append(
                            Received(
                                {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                            )
                        )
                        receiver._cond.notify_all()
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests were accepted (fails after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"the receiver got {len(self.received)} of {count} messages in {timeout_s}s"
                    )
                self._cond.wait(remaining)
            return list(self.received)

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
