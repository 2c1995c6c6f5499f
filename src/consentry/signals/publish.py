"""Publishing "do not train" signals for a platform's content.

:class:`SignalsConfig` says what the platform's policy allows; the functions here turn it into
``robots.txt``, ``/.well-known/tdmrep.json``, ``/ai.txt`` and per-response headers.

Each vocabulary is written from the one table in :mod:`consentry.signals.vocab`: aipref
``Content-Usage`` with only the labels of the current draft (named in a robots.txt comment),
``Content-Signal`` (``search``, ``ai-input``, ``ai-train``), and for a use that no standard
term covers — training models that do not generate content, under the current aipref draft —
consentry's own terms, in a robots.txt comment and in the TDMRep policy
(:func:`tdm_policy_json`).

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
from . import vocab
from .aipref import serialize
from .contentsignal import serialize_content_signal
from .crawlers import CRAWLER_PURPOSES, load_crawlers

#: Where consentry serves its TDMRep policy (consentry's own terms for every use).
TDM_POLICY_PATH = "/.well-known/consentry-tdm-policy.json"

WELL_KNOWN_FILES: dict[str, str] = {
    "/robots.txt": "text/plain; charset=utf-8",
    "/.well-known/tdmrep.json": "application/json",
    "/ai.txt": "text/plain; charset=utf-8",
    TDM_POLICY_PATH: "application/ld+json",
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
    #: Whether third parties may give the content to AI models as input (RAG, grounding):
    #: Content-Signal ``ai-input`` and consentry's own term (None: unstated). No current
    #: aipref label covers it (``ai-use`` was removed in August 2025).
    ai_input_allowed: bool | None = None
    #: ``search`` preference to state, in aipref and Content-Signal (None: unstated).
    search_allowed: bool | None = None
    #: Whether robots.txt carries ``Content-Signal`` lines (contentsignals.org).
    content_signal: bool = True
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
        data = dict(data)
        if "ai_use_allowed" in data and "ai_input_allowed" not in data:
            # the setting's name before aipref removed ai-use (August 2025)
            data["ai_input_allowed"] = data.pop("ai_use_allowed")
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

    @classmethod
    def from_policy(
        cls,
        policy: Any,
        *,
        category: str = "content",
        purposes: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> SignalsConfig:
        """Settings whose site-wide answers come from a consentry policy.

        ``purposes`` says which of the platform's purposes each Content-Signal key
        corresponds to (default: ``ai-train`` → ``ai.training.third_party``; ``ai-input``
        and ``search`` unstated unless given). For ``ai-train`` the policy decides whether
        third-party training is possible at all (any basis but ``prohibited``: owners may
        then consent item by item). For ``ai-input`` and ``search`` a site-wide yes needs a
        basis that holds for every item (``contract`` or ``legitimate_interest``); a
        ``consent`` basis or a prohibition publishes no, since one owner's refusal must not
        be overridden by a site-wide yes; a purpose without a rule publishes no.
        """
        chosen = {"ai-train": "ai.training.third_party", **(purposes or {})}
        unknown = set(chosen) - set(vocab.CONTENT_SIGNAL_KEYS)
        if unknown:
            raise InvalidInput(
                f"unknown Content-Signal key {sorted(unknown)[0]!r}",
                hint="use search, ai-input or ai-train",
                field="purposes",
            )

        def basis(purpose: str) -> str | None:
            rule = policy.rule_for(purpose, category)
            return None if rule is None else str(rule.basis)

        values: dict[str, Any] = {}
        train = basis(chosen["ai-train"])
        values["third_party_training_allowed"] = train is not None and train != "prohibited"
        for key, field_name in (("ai-input", "ai_input_allowed"), ("search", "search_allowed")):
            if key in chosen:
                values[field_name] = basis(chosen[key]) in ("contract", "legitimate_interest")
        values.update(settings)
        return cls.from_mapping(values)

    def uses(self, *, training_permitted: bool = False) -> dict[str, bool]:
        """What the platform says about each of consentry's uses (unstated uses left out)."""
        train = bool(training_permitted and self.third_party_training_allowed)
        out = {vocab.TRAIN_GENAI: train, vocab.TRAIN_OTHER: train}
        if self.ai_input_allowed is not None:
            out[vocab.AI_INPUT] = self.ai_input_allowed
        if self.search_allowed is not None:
            out[vocab.SEARCH] = self.search_allowed
        return out

    def preferences(self, *, training_permitted: bool = False) -> dict[str, bool]:
        """The aipref preferences to state: only labels of the current draft."""
        prefs: dict[str, bool] = {}
        for use, allowed in self.uses(training_permitted=training_permitted).items():
            label = vocab.aipref_label_for(use)
            if label is not None:
                prefs[label] = allowed
        return prefs

    def content_signals(self, *, training_permitted: bool = False) -> dict[str, bool]:
        """The Content-Signal values to state (a key covering several uses: all must agree)."""
        said = self.uses(training_permitted=training_permitted)
        out: dict[str, bool] = {}
        for key, covered in vocab.CONTENT_SIGNAL_KEYS.items():
            answers = [said[u] for u in covered if u in said]
            if answers and len(answers) == len(covered):
                out[key] = all(answers)
        return out

    def own_terms(self, *, training_permitted: bool = False) -> dict[str, bool]:
        """Uses no current aipref label covers, in consentry's own terms (``consentry:…``)."""
        return {
            vocab.OWN_TERMS[use]: allowed
            for use, allowed in self.uses(training_permitted=training_permitted).items()
            if vocab.aipref_label_for(use) is None
        }


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


def _own_terms_comment(config: SignalsConfig) -> list[str]:
    """The robots.txt comment stating, in consentry's terms, what no standard label covers."""
    lines = [f"# Content-Usage labels follow {vocab.AIPREF_CURRENT}."]
    if config.content_signal:
        lines.append(f"# Content-Signal follows {vocab.CONTENT_SIGNAL_SOURCE}.")
    terms = config.own_terms()
    if terms:
        lines.append(f"# Not covered by {vocab.AIPREF_CURRENT}, in consentry's own terms:")
        for term, allowed in terms.items():
            use = term.split(":", 1)[1]
            lines.append(f"#   {term}={'y' if allowed else 'n'}  ({vocab.USE_MEANING[use]})")
    return lines


def robots_txt(config: SignalsConfig) -> str:
    """robots.txt: a group for the AI crawlers and ``Content-Usage`` rules (aipref attach)."""
    crawlers = load_crawlers()
    lines = _header_comment(config, "robots.txt")
    lines.append(f"# AI crawler list: {crawlers.source} (checked {crawlers.date})")
    lines.extend(_own_terms_comment(config))
    usage = [f"Content-Usage: / {serialize(config.preferences())}"]
    open_prefs = serialize(config.preferences(training_permitted=True))
    usage.extend(f"Content-Usage: {path} {open_prefs}" for path in config.open_paths)
    signals = serialize_content_signal(config.content_signals())
    if config.content_signal and signals:
        # the published form has no path; the open paths' lines carry one (the attach
        # draft's syntax): a reader that ignores them keeps the site-wide no (fails closed)
        usage.append(f"Content-Signal: {signals}")
        open_signals = serialize_content_signal(config.content_signals(training_permitted=True))
        usage.extend(f"Content-Signal: {path} {open_signals}" for path in config.open_paths)
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
    policy = config.tdm_policy or (
        config.base_url.rstrip("/") + TDM_POLICY_PATH if config.base_url else None
    )
    if policy:
        reserved["tdm-policy"] = policy
    rules.append(reserved)
    return json.dumps(rules, indent=2) + "\n"


def tdm_policy_json(config: SignalsConfig) -> str:
    """consentry's TDMRep policy (ODRL, the TDMRep policy profile), in consentry's own terms.

    TDMRep reserves text-and-data-mining rights as a whole; its policy says on what terms
    mining may happen. This one lists each of consentry's uses as a ``tdm:purpose``-style
    constraint with a ``consentry:<use>`` value: prohibited unless the platform's policy
    allows it (training only for items whose owners consented, which is why the site-wide
    policy prohibits it and per-item headers carry the yes).
    """
    base = config.base_url.rstrip("/")
    uses = config.uses()
    permission: list[dict[str, Any]] = []
    prohibition: list[dict[str, Any]] = []
    for use in vocab.USES:
        if use not in uses:
            continue
        rule = {
            "target": (base or "") + "/",
            "action": "tdm:mine",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": vocab.OWN_TERMS[use]}
            ],
            "comment": vocab.USE_MEANING[use],
        }
        (permission if uses[use] else prohibition).append(rule)
    doc: dict[str, Any] = {
        "@context": ["http://www.w3.org/ns/odrl.jsonld", {"tdm": "http://www.w3.org/ns/tdmrep#"}],
        "@type": "Offer",
        "profile": "http://www.w3.org/ns/tdmrep",
        "uid": (base or "") + TDM_POLICY_PATH,
        "vocabulary": {
            "aipref": vocab.AIPREF_CURRENT,
            "content-signal": vocab.CONTENT_SIGNAL_SOURCE,
            "consentry": "consentry:<use> terms: the vocabulary table of consentry docs/signals.md",
        },
        "permission": permission,
        "prohibition": prohibition,
    }
    if config.contact:
        doc["assigner"] = {"contact": config.contact}
    return json.dumps(doc, indent=2) + "\n"


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
    if path == TDM_POLICY_PATH:
        return content_type, tdm_policy_json(config)
    return content_type, tdmrep_json(config)
