"""The maintained list of AI crawlers' product tokens (``crawlers.json``).

The list says, for each crawler, who runs it, what it fetches for (``training``, ``search`` or
``user-fetch``) and where its operator documents it. The file records its source and the date
it was checked; update both when you edit it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..errors import InvalidInput

#: What a crawler fetches for.
CRAWLER_PURPOSES: tuple[str, ...] = ("training", "search", "user-fetch")

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Crawler:
    """One crawler: its robots.txt product token, operator, purpose and documentation."""

    token: str
    owner: str
    purpose: str
    docs: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class CrawlerList:
    """The crawlers of ``crawlers.json`` with the list's source and date."""

    crawlers: tuple[Crawler, ...]
    source: str
    date: str

    def tokens(self, *purposes: str) -> tuple[str, ...]:
        """Product tokens of the crawlers with one of ``purposes`` (all when none given)."""
        wanted = set(purposes) or set(CRAWLER_PURPOSES)
        return tuple(c.token for c in self.crawlers if c.purpose in wanted)

    def get(self, token: str) -> Crawler | None:
        """The crawler whose product token is ``token`` (case-insensitive)."""
        low = token.lower()
        return next((c for c in self.crawlers if c.token.lower() == low), None)


def parse_crawler_list(text: str) -> CrawlerList:
    """Parse and validate a crawler list in the ``crawlers.json`` format."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"crawler list is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("crawlers"), list):
        raise InvalidInput("crawler list must be an object with a 'crawlers' array")
    for key in ("source", "date"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidInput(
                f"crawler list has no {key!r}", hint="record where the list came from and when"
            )
    out: list[Crawler] = []
    seen: set[str] = set()
    for entry in data["crawlers"]:
        if not isinstance(entry, dict):
            raise InvalidInput("each crawler must be an object")
        token = entry.get("token", "")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise InvalidInput(
                f"invalid product token {token!r}",
                hint="product tokens use letters, digits, '_' and '-' (RFC 9309 §2.2.1)",
            )
        if token.lower() in seen:
            raise InvalidInput(f"crawler {token!r} is listed twice")
        seen.add(token.lower())
        purpose = entry.get("purpose")
        if purpose not in CRAWLER_PURPOSES:
            raise InvalidInput(
                f"crawler {token!r} has purpose {purpose!r}",
                hint=f"use one of {', '.join(CRAWLER_PURPOSES)}",
            )
        owner, docs = entry.get("owner"), entry.get("docs")
        if not isinstance(owner, str) or not isinstance(docs, str) or not docs.startswith("http"):
            raise InvalidInput(f"crawler {token!r} needs an 'owner' and a 'docs' URL")
        out.append(Crawler(token, owner, purpose, docs, str(entry.get("note", ""))))
    return CrawlerList(tuple(out), data["source"], data["date"])


@cache
def load_crawlers() -> CrawlerList:
    """The crawler list shipped with consentry."""
    text = resources.files(__package__).joinpath("crawlers.json").read_text("utf-8")
    return parse_crawler_list(text)
