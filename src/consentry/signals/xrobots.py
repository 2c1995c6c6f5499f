"""``X-Robots-Tag`` and robots ``<meta>`` directives, including the ``noai`` family.

Directives are case-insensitive (``NoAI`` is ``noai``). A value may start with a user-agent
prefix — ``X-Robots-Tag: googlebot: noindex, noai`` — and then every directive after it binds
only to that crawler (up to the next prefix), not to everybody. Several header lines are
separate statements: a prefix in one does not reach into another.

For AI use, ``noai`` and ``noimageai`` (the DeviantArt/Spawning directives) disallow training
and AI use; for search, ``noindex`` and ``none`` disallow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Directives that take a value after a colon, which must not be read as a user-agent prefix.
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})
_PREFIX = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*:\s*(.*)$", re.DOTALL)

_NOAI = frozenset({"noai", "noimageai"})

#: Directives that disallow each of consentry's uses (vocab.USES).
DENYING: dict[str, frozenset[str]] = {
    "train-genai": _NOAI,
    "train-other": _NOAI,
    "ai-input": _NOAI,
    "search": frozenset({"noindex", "none"}),
}


@dataclass(frozen=True, slots=True)
class Directive:
    """One directive and the crawler it is scoped to (None: every crawler)."""

    name: str  # lower-cased
    agent: str | None  # lower-cased product token
    source: str  # the header line or meta tag it came from


_CACHE: dict[str, tuple[Directive, ...]] = {}


def parse_value(value: str, *, default_agent: str | None = None) -> tuple[Directive, ...]:
    """The directives of one ``X-Robots-Tag`` value (or one robots meta ``content``)."""
    key = value if default_agent is None else f"{default_agent}\0{value}"
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    agent = default_agent
    out: list[Directive] = []
    for piece in value.split(","):
        text = piece.strip()
        if not text:
            continue
        match = _PREFIX.match(text)
        if match and match.group(1).lower() not in _VALUED:
            agent = match.group(1).lower()
            text = match.group(2).strip()
            if not text:
                continue
        name = text.split(":", 1)[0].strip().lower()
        if name:
            out.append(Directive(name, agent, value.strip()))
    result = tuple(out)
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[key] = result
    return result


def applicable(directives: Iterable[Directive], token: str) -> list[Directive]:
    """The directives that bind the crawler with product token ``token``."""
    low = token.lower()
    return [d for d in directives if d.agent is None or d.agent == low]


def denying_for(uses: Iterable[str]) -> frozenset[str]:
    """The directives that disallow any of ``uses``."""
    return frozenset().union(*(DENYING.get(u, frozenset()) for u in uses))


def first_denying(
    directives: Iterable[Directive], token: str, denying: frozenset[str]
) -> Directive | None:
    """The first directive binding ``token`` that is one of ``denying``, or None."""
    low = token.lower()
    for d in directives:
        if d.name in denying and (d.agent is None or d.agent == low):
            return d
    return None
