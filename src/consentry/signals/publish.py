"""Publishing "do not train" signals for a platform's content.

:class:`SignalsConfig` says what the platform's policy allows; the functions here turn it into
``robots.txt``, ``/.well-known/tdmrep.json``, ``/ai.txt`` and per-response headers.

By default (``third_party_training_allowed=False``) everything says no: the AI-training
crawlers of the maintained list get ``Disallow: /``, every group carries
``Content-Usage: / train-ai=n``, tdmrep.json reserves TDM rights for ``/``, ai.txt disallows
``/``, and each response carries ``Content-Usage: train-ai=n``, ``tdm-reservation: 1`` and
``X-Robots-Tag: noai, noimageai``.

When the policy permits third-party training, a response says ``train-ai=y`` only for an item
all of whose owners consented (see :class:`~consentry.signals.DoNotTrainMiddleware`). The
site-wide files keep saying no, except under ``open_paths``: paths under which the platform
serves only items whose owners all consented. aipref combines statements most-restrictively,
so a site-wide ``train-ai=n`` would override a per-item ``y``; that is why the files only open
those paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import InvalidInput
from .aipref import serialize
from .crawlers import CRAWLER_PURPOSES, load_crawlers

WELL_KNOWN_FILES: dict[str, str] = {
    "/robots.txt": "text/plain; charset=utf-8",
    "/.well-known/tdmrep.json": "application/json",
    "/ai.txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class SignalsConfig:
    """What the platform publishes. Every field has a safe default (say no to training)."""

    #: The site's base URL (``https://example.com``); used for Sitemap lines and comments.
    base_url: str = ""
    #: Whether the platform's policy lets third parties train on content at all.
    third_party_training_allowed: bool = False
    #: Paths that serve only items whose owners all consented to third-party training.
    open_paths: tuple[str, ...] = ()
    #: A TDMRep policy URL (``tdm-policy``) where a licence can be asked for.
    tdm_policy: str | None = None
    #: Who to contact about AI use (an email address or URL), shown in comments.
    contact: str | None = None
    #: Which crawler purposes of the maintained list get a ``Disallow: /`` group.
    block_purposes: tuple[str, ...] = ("training",)
    #: Further product tokens to block.
    extra_crawlers: tuple[str, ...] = ()
    #: aipref ``ai-use`` preference to state (None: unstated).
    ai_use_allowed: bool | None = None
    #: aipref ``search`` preference to state (None: unstated).
    search_allowed: bool | None = None
    #: ``X-Robots-Tag`` directives sent with responses that may not be trained on.
    x_robots_tag: tuple[str, ...] = ("noai", "noimageai")
    #: Sitemap URLs for robots.txt.
    sitemaps: tuple[str, ...] = ()
    #: The platform's own robots.txt lines, appended as they are.
    robots_extra: str = ""
    #: Crawler tokens to leave out of the generated groups.
    exclude_crawlers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for path in self.open_paths:
            if not path.startswith("/") or any(c in path for c in " \t\r\n#"):
                raise InvalidInput(
                    f"open path {path!r} must start with '/' and contain no spaces or '#'",
                    field="open_paths",
                )
        unknown = set(self.block_purposes) - set(CRAWLER_PURPOSES)
        if unknown:
            raise InvalidInput(
                f"unknown crawler purpose {sorted(unknown)[0]!r}",
                hint=f"use {', '.join(CRAWLER_PURPOSES)}",
                field="block_purposes",
            )
        if self.open_paths and not self.third_party_training_allowed:
            raise InvalidInput(
                "open_paths needs third_party_training_allowed",
                hint="the policy must permit third-party training before any path is opened",
                field="open_paths",
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SignalsConfig:
        """A config from a mapping (JSON/YAML); lists become tuples, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            from ..errors import unknown as unknown_error

            raise unknown_error("signals setting", sorted(unknown)[0], known)
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidInput(f"bad signals configuration: {exc}") from exc

    def blocked_tokens(self) -> tuple[str, ...]:
        """Product tokens that get a ``Disallow: /`` group."""
        tokens = load_crawlers().tokens(*self.block_purposes) + self.extra_crawlers
        excluded = {t.lower() for t in self.exclude_crawlers}
        return tuple(dict.fromkeys(t for t in tokens if t.lower() not in excluded))

    def preferences(self, *, training_permitted: bool = False) -> dict[str, bool]:
        """The aipref preferences to state (``train-ai`` always, others when configured)."""
        prefs = {"train-ai": bool(training_permitted and self.third_party_training_allowed)}
        if self.ai_use_allowed is not None:
            prefs["ai-use"] = self.ai_use_allowed
        if self.search_allowed is not None:
            prefs["search"] = self.search_allowed
        return prefs


def _header_comment(config: SignalsConfig, what: str) -> list[str]:
    lines = [
        f"# {what} published by consentry" + (f" for {config.base_url}" if config.base_url else "")
    ]
    if config.third_party_training_allowed:
        lines.append("# Content may be used to train AI models only where every owner consented.")
    else:
        lines.append("# Content on this site may not be used to train AI models.")
    if config.contact:
        lines.append(f"# Contact about AI use: {config.contact}")
    return lines


def robots_txt(config: SignalsConfig) -> str:
    """robots.txt: a group for the AI crawlers and ``Content-Usage`` rules (aipref attach)."""
    crawlers = load_crawlers()
    lines = _header_comment(config, "robots.txt")
    lines.append(f"# AI crawler list: {crawlers.source} (checked {crawlers.date})")
    usage = [f"Content-Usage: / {serialize(config.preferences())}"]
    open_prefs = serialize(config.preferences(training_permitted=True))
    usage.extend(f"Content-Usage: {path} {open_prefs}" for path in config.open_paths)
    tokens = config.blocked_tokens()
    if tokens:
        lines.append("")
        lines.extend(f"User-agent: {token}" for token in tokens)
        lines.append("Disallow: /")
        lines.extend(f"Allow: {path}" for path in config.open_paths)
        lines.extend(usage)
    lines.append("")
    lines.append("User-agent: *")
    lines.extend(usage)
    if config.robots_extra.strip():
        lines.append("")
        lines.extend(config.robots_extra.strip().splitlines())
    if config.sitemaps:
        lines.append("")
        lines.extend(f"Sitemap: {url}" for url in config.sitemaps)
    return "\n".join(lines) + "\n"


def tdmrep_json(config: SignalsConfig) -> str:
    """``/.well-known/tdmrep.json`` (W3C TDMRep): rights reserved except under open paths."""
    rules: list[dict[str, Any]] = [
        {"location": path, "tdm-reservation": 0} for path in config.open_paths
    ]
    reserved: dict[str, Any] = {"location": "/", "tdm-reservation": 1}
    if config.tdm_policy:
        reserved["tdm-policy"] = config.tdm_policy
    rules.append(reserved)
    return json.dumps(rules, indent=2) + "\n"


def ai_txt(config: SignalsConfig) -> str:
    """``/ai.txt`` (Spawning's robots.txt-style file for AI training)."""
    lines = _header_comment(config, "ai.txt")
    lines.append("")
    lines.append("User-Agent: *")
    lines.extend(f"Allow: {path}" for path in config.open_paths)
    lines.append("Disallow: /")
    return "\n".join(lines) + "\n"


def response_headers(config: SignalsConfig, *, training_permitted: bool = False) -> dict[str, str]:
    """Headers for one response.

    ``training_permitted`` is whether every owner of the item consented to third-party
    training; it counts only when the policy permits such training at all. Otherwise the
    headers say no in every vocabulary crawlers read.
    """
    permitted = training_permitted and config.third_party_training_allowed
    headers = {"Content-Usage": serialize(config.preferences(training_permitted=permitted))}
    if permitted:
        headers["tdm-reservation"] = "0"
    else:
        headers["tdm-reservation"] = "1"
        if config.tdm_policy:
            headers["tdm-policy"] = config.tdm_policy
        if config.x_robots_tag:
            headers["X-Robots-Tag"] = ", ".join(config.x_robots_tag)
    return headers


def html_meta(config: SignalsConfig, *, training_permitted: bool = False) -> str:
    """``<meta>`` tags saying the same as :func:`response_headers`, for HTML templates."""
    from html import escape

    permitted = training_permitted and config.third_party_training_allowed
    tags = [f'<meta name="tdm-reservation" content="{0 if permitted else 1}">']
    if not permitted:
        if config.tdm_policy:
            tags.append(f'<meta name="tdm-policy" content="{escape(config.tdm_policy)}">')
        if config.x_robots_tag:
            tags.append(f'<meta name="robots" content="{escape(", ".join(config.x_robots_tag))}">')
    return "\n".join(tags)


def well_known_file(config: SignalsConfig, path: str) -> tuple[str, str] | None:
    """``(content type, body)`` of the signals file served at ``path``, or None."""
    content_type = WELL_KNOWN_FILES.get(path)
    if content_type is None:
        return None
    if path == "/robots.txt":
        return content_type, robots_txt(config)
    if path == "/ai.txt":
        return content_type, ai_txt(config)
    return content_type, tdmrep_json(config)
