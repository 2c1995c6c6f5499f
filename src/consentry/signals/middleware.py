"""ASGI middleware that says "do not train" on every response, per item and per owner.

The platform supplies two callables (plain or ``async``):

- ``resolve(path) -> ItemOwners | None``: which item a request path shows and who owns it;
- ``permits_training(item_id, owners) -> bool``: True only when every owner consented to
  third-party training (and the platform's policy permits it).

A response for an item whose owners all consented, under a policy that permits third-party
training, says ``Content-Usage: train-ai=y`` and ``tdm-reservation: 0``. Everything else —
pages that are not items, items without consent, and any error while resolving — says no.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .publish import SignalsConfig, response_headers, well_known_file

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_OURS = (b"content-usage", b"tdm-reservation", b"tdm-policy")


@dataclass(frozen=True, slots=True)
class ItemOwners:
    """The item a path shows and the subject ids of its owners."""

    item_id: str
    owners: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "owners", tuple(self.owners))


Resolve = Callable[[str], "ItemOwners | Awaitable[ItemOwners | None] | None"]
PermitsTraining = Callable[[str, Sequence[str]], "bool | Awaitable[bool]"]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class DoNotTrainMiddleware:
    """Adds the do-not-train headers to every HTTP response of ``app``.

    With ``serve_files=True`` it also answers ``GET /robots.txt``,
    ``/.well-known/tdmrep.json`` and ``/ai.txt`` from ``config``. ``paths`` limits the headers
    to requests under those prefixes (default: every response).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: SignalsConfig | None = None,
        resolve: Resolve | None = None,
        permits_training: PermitsTraining | None = None,
        serve_files: bool = False,
        paths: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.config = config or SignalsConfig()
        self.resolve = resolve
        self.permits_training = permits_training
        self.serve_files = serve_files
        self.paths = tuple(paths) if paths else None
        self._deny = _encode(response_headers(self.config, training_permitted=False))
        self._allow = _encode(response_headers(self.config, training_permitted=True))

    async def training_permitted(self, path: str) -> bool:
        """Whether the response for ``path`` may say ``train-ai=y`` (errors say no)."""
        if not self.config.third_party_training_allowed:
            return False
        if self.resolve is None or self.permits_training is None:
            return False
        try:
            item = await _maybe_await(self.resolve(path))
            if item is None:
                return False
            owners = tuple(item.owners)
            if not owners:
                return False
            return await _maybe_await(self.permits_training(item.item_id, owners)) is True
        except Exception:  # fail closed: a broken lookup must not open content to training
            log.exception("do-not-train: could not decide for %s; saying no", path)
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "/")
        if self.serve_files and scope.get("method", "GET") in ("GET", "HEAD"):
            found = well_known_file(self.config, path)
            if found is not None:
                await _send_file(send, found, head=scope.get("method") == "HEAD")
                return
        if self.paths is not None and not path.startswith(self.paths):
            await self.app(scope, receive, send)
            return
        extra = self._allow if await self.training_permitted(path) else self._deny

        async def send_with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers.extend(extra)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _send_file(send: Send, found: tuple[str, str], *, head: bool) -> None:
    content_type, text = found
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"cache-control", b"public, max-age=3600"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def signals_app(config: SignalsConfig | None = None) -> ASGIApp:
    """A small ASGI app serving robots.txt, /.well-known/tdmrep.json and /ai.txt."""
    cfg = config or SignalsConfig()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return
        found = well_known_file(cfg, scope.get("path", "/"))
        if found is None or scope.get("method", "GET") not in ("GET", "HEAD"):
            body = b"not found\n"
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await _send_file(send, found, head=scope.get("method") == "HEAD")

    return app
