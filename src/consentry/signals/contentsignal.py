"""Content-Signal: the robots.txt ``Content-Signal: search=yes, ai-train=no, ai-input=no`` line.

Defined by contentsignals.org and draft-romm-aipref-contentsignals-00 (October 2025), written
by a large CDN into its customers' robots.txt by default. Three keys, each ``yes`` or ``no``:

- ``search``: building a search index and showing results (links and short excerpts), not
  AI-generated summaries;
- ``ai-input``: giving the content to an AI model as input (retrieval-augmented generation,
  grounding, real-time answers);
- ``ai-train``: training or fine-tuning AI models.

A key that is absent neither grants nor restricts. The line is a comma-separated list of
``key=value`` pairs; keys are matched case-insensitively, values ``yes``/``no`` likewise
(the definition is prose, not a Structured Field); unknown keys (such as ``use=``) and other
values are ignored.

Which of consentry's uses each key covers is in :data:`consentry.signals.vocab.CONTENT_SIGNAL_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .vocab import CONTENT_SIGNAL_KEYS

#: The order keys are written in (the order of contentsignals.org's example).
KEY_ORDER: tuple[str, ...] = ("search", "ai-input", "ai-train")

_CACHE: dict[str, dict[str, bool]] = {}


def parse_content_signal(value: str) -> dict[str, bool]:
    """The explicit signals of one Content-Signal value: key → allowed.

    >>> parse_content_signal("search=yes, ai-train=no, use=reference")
    {'search': True, 'ai-train': False}
    >>> parse_content_signal("ai-input=maybe")
    {}
    """
    hit = _CACHE.get(value)
    if hit is not None:
        return dict(hit)
    out: dict[str, bool] = {}
    for member in value.split(","):
        key, sep, raw = member.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        answer = raw.strip().lower()
        if key in CONTENT_SIGNAL_KEYS and answer in ("yes", "no"):
            out[key] = answer == "yes"  # a repeated key: the last one counts
    if len(_CACHE) > 1024:
        _CACHE.clear()
    _CACHE[value] = out
    return dict(out)


def serialize_content_signal(signals: Mapping[str, bool]) -> str:
    """A Content-Signal value for ``signals`` (key → allowed), in the usual key order.

    >>> serialize_content_signal({"ai-train": False, "search": True})
    'search=yes, ai-train=no'
    """
    unknown = set(signals) - set(KEY_ORDER)
    if unknown:
        raise ValueError(f"unknown Content-Signal keys: {', '.join(sorted(unknown))}")
    return ", ".join(
        f"{key}={'yes' if signals[key] else 'no'}" for key in KEY_ORDER if key in signals
    )
