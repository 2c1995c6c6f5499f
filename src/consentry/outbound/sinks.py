"""How a batch of messages leaves: the sink interface and its two implementations.

A sink is one small class::

    class Sink(Protocol):
        def send(self, messages: Sequence[Message]) -> list[Outcome | None]: ...
        def close(self) -> None: ...

``send`` gets messages in ledger order (all of one ordering key in one call, in ``seq``
order) and returns an outcome per message: delivered or not (``Outcome``), or None for a
message it did not try. It must not report a message of a key delivered after an earlier
message of the same key failed (it skips the rest of that key: they wait for the retry), and
should stop early when the destination does not answer (the rest wait too). A Kafka sink is
one more such class: ``producer.send(topic, key=message.order_key, value=message.body,
headers=[("ce_id", message.id)])`` per message, then ``flush()``, with an idempotent
producer; each message's outcome from its future.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from . import http1, signing
from .messages import CONTENT_TYPE
from .targets import TargetPolicy, TargetRefused

#: Bytes of an endpoint's answer read (and kept, shortened, as the last error).
MAX_ANSWER = 4096


@dataclass(frozen=True)
class Message:
    """One rendered message for one destination."""

    seq: int
    id: str
    kind: str
    account: str | None
    order_key: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None  # the endpoint's HTTP status, if it answered
    error: str | None = None
    #: The destination did not answer at all (refused, timed out): the worker holds the rest
    #: of the subscription's messages back for as long as this one's retry waits.
    unreachable: bool = False


class Sink(Protocol):
    def send(self, messages: Sequence[Message]) -> list[Outcome | None]: ...

    def close(self) -> None: ...


class WebhookSink:
    """POSTs each message to one URL, signed per Standard Webhooks; one keep-alive connection
    per sending thread (:mod:`consentry.outbound.http1`), opened only to addresses the
    :class:`~consentry.outbound.targets.TargetPolicy` allows. ``timeout_s`` bounds every
    connect, write and read."""

    def __init__(
        self, url: str, secret: str, timeout_s: float, policy: TargetPolicy | None = None
    ) -> None:
        self.url = url
        self.key = signing.secret_bytes(secret)
        self.timeout_s = timeout_s
        self.policy = policy or TargetPolicy.from_env()
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = parts.port is None or parts.port == (443 if self._https else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = host if default_port else f"{host}:{self._port}"
        # Everything but the signature, the id and the length is the same for every request.
        self._head_start = (
            f"POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: {CONTENT_TYPE}\r\n"
            "user-agent: consentry-webhooks/1\r\n"
        ).encode("latin-1")
        self._local = threading.local()
        self._all: list[http1.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http1.Connection:
        conn: http1.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http1.Connection(
                self._host, self._port, tls=self._https, timeout_s=self.timeout_s,
                policy=self.policy,
            )  # fmt: skip
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _head(self, message: Message) -> bytes:
        h = signing.headers(self.key, message.id, message.body)
        return self._head_start + (
            f"webhook-id: {h['webhook-id']}\r\nwebhook-timestamp: {h['webhook-timestamp']}\r\n"
            f"webhook-signature: {h['webhook-signature']}\r\n"
            f"content-length: {len(message.body)}\r\n\r\n"
        ).encode("latin-1")

    def post(self, message: Message) -> Outcome:
        """One attempt: 2xx is success; anything else, or no answer, is a failure."""
        head = self._head(message)
        for attempt in (1, 2):
            fresh = getattr(self._local, "conn", None) is None
            try:
                answer = self._connection().post(head, message.body, MAX_ANSWER)
            except TargetRefused as exc:
                return Outcome(False, None, f"refused: {exc}", unreachable=True)
            except (ConnectionResetError, BrokenPipeError) as exc:
                self._drop()
                if attempt == 1 and not fresh:  # a kept-alive connection the server closed
                    continue
                return Outcome(False, None, f"{type(exc).__name__}: {exc}", unreachable=True)
            except (OSError, ssl.SSLError) as exc:
                self._drop()
                return Outcome(False, None, f"{type(exc).__name__}: {exc}", unreachable=True)
            if answer.will_close:
                self._drop()
            if 200 <= answer.status < 300:
                return Outcome(True, answer.status)
            text = answer.body.decode("utf-8", "replace")
            return Outcome(False, answer.status, f"HTTP {answer.status}: {text[:500]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def send(self, messages: Sequence[Message]) -> list[Outcome | None]:
        outcomes: list[Outcome | None] = []
        blocked: set[str] = set()
        for i, message in enumerate(messages):
            if message.order_key in blocked:
                outcomes.append(None)
                continue
            outcome = self.post(message)
            outcomes.append(outcome)
            if not outcome.ok:
                blocked.add(message.order_key)
                if outcome.unreachable:
                    outcomes.extend([None] * (len(messages) - i - 1))
                    break
        return outcomes

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def nats_subject(kind: str, account: str | None) -> str:
    """``consentry.<kind>.<account or _>``; an account's characters that NATS gives meaning
    (``.``, ``*``, ``>``, whitespace) become ``_``."""
    safe = "_"
    if account:
        safe = "".join("_" if c in ".*> \t\r\n" else c for c in account) or "_"
    return f"consentry.{kind}.{safe}"


class NatsSink:
    """Publishes to a NATS JetStream stream (made if missing, over ``consentry.>``), with
    ``Nats-Msg-Id`` = the event id, so that JetStream drops a retried publish it already has
    (within the stream's duplicate window). Runs its own event loop in a thread of its own."""

    def __init__(self, url: str, stream: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="consentry-nats", daemon=True
        )
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._lock = threading.Lock()

    def _run(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout_s * 3)

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        if self._nc is not None and self._nc.is_connected:
            return
        self._nc = await nats.connect(
            self.url, connect_timeout=self.timeout_s, max_reconnect_attempts=2, allow_reconnect=True
        )
        self._js = self._nc.jetstream(timeout=self.timeout_s)
        try:
            await self._js.stream_info(self.stream)
        except Exception:
            await self._js.add_stream(StreamConfig(name=self.stream, subjects=["consentry.>"]))

    async def _publish(self, messages: Sequence[Message]) -> list[Outcome | None]:
        try:
            await self._connect()
        except Exception as exc:
            return [Outcome(False, None, f"{type(exc).__name__}: {exc}", unreachable=True)] + [
                None
            ] * (len(messages) - 1)
        outcomes: list[Outcome | None] = []
        for i, message in enumerate(messages):
            try:
                ack = await self._js.publish(
                    nats_subject(message.kind, message.account),
                    message.body,
                    timeout=self.timeout_s,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": message.id, "content-type": CONTENT_TYPE},
                )
            except Exception as exc:
                outcomes.append(Outcome(False, None, f"{type(exc).__name__}: {exc}", True))
                outcomes.extend([None] * (len(messages) - i - 1))
                break
            outcomes.append(Outcome(True, None, "duplicate" if ack.duplicate else None))
        return outcomes

    def send(self, messages: Sequence[Message]) -> list[Outcome | None]:
        if not messages:
            return []
        with self._lock:  # one publisher at a time keeps each key's order on the stream
            result: list[Outcome | None] = self._run(self._publish(messages))
            return result

    def close(self) -> None:
        async def _close() -> None:
            if self._nc is not None:
                await self._nc.close()

        with contextlib.suppress(Exception):  # best effort: we are shutting down
            self._run(_close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
