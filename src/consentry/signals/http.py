"""What every HTTP engine of the signals checker shares (:mod:`.fetch` picks one): a
response, the error for a request that got no answer, and the engine protocol. Apart from
:mod:`.fetch` so that the engines (:mod:`.direct`) need not import the checker that loads
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class FetchError(Exception):
    """A request that got no HTTP answer (timeout, refused connection, bad URL …)."""


@dataclass(slots=True)
class Response:
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    truncated: bool = False

    def header(self, name: str) -> str | None:
        low = name.lower()
        for key, value in self.headers:
            if key == low:
                return value
        return None


ReadBody = Callable[[Response], int]
"""Given a response's status and headers, how many body bytes to read (0: none)."""


class Engine(Protocol):
    async def get(self, url: str, *, read_body: ReadBody) -> Response: ...

    async def aclose(self) -> None: ...
