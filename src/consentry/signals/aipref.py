"""IETF aipref usage preferences: the ``Content-Usage`` dictionary (draft-ietf-aipref-vocab).

A statement of preference is an RFC 9651 Dictionary whose keys are usage category labels and
whose values are the Tokens ``y`` (allow) or ``n`` (disallow). Labels are read as the draft
that defined them defined them (:mod:`consentry.signals.vocab`: ``train-ai`` and ``search``
of the current draft, and ``train-genai``, ``ai-use``, ``all``, ``bots``… of earlier ones);
only the current draft's labels are written. Anything else — a missing key, a String
``"n"``, a Boolean, a Token other than ``y``/``n``, a label no draft defined — leaves that
category unknown. A field that does not parse as a
Dictionary (for example because a key has upper-case letters) leaves every category unknown.
Parameters are ignored. Several statements combine most-restrictively: any ``n`` wins, then
any ``y``, else unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .vocab import AIPREF_CURRENT, AIPREF_KNOWN, AIPREF_PUBLISHED

# A dictionary whose members are all ``key=token`` with no parameters — what nearly every
# real Content-Usage field looks like. For such input this is exactly RFC 9651's parse (last
# value of a repeated key wins), so the common case skips the general parser.
_KEY = r"[a-z*][a-z0-9_.*-]*"
_TOKEN = r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*"
_SIMPLE = re.compile(rf"{_KEY}={_TOKEN}(?:[ \t]*,[ \t]*{_KEY}={_TOKEN})*")
_SPLIT = re.compile(r"[ \t]*,[ \t]*")

_CACHE: dict[str, dict[str, bool]] = {}
_CACHE_MAX = 4096


def parse_content_usage(value: str | bytes) -> dict[str, bool]:
    """The explicit preferences of one Content-Usage field value: label → allowed.

    Only labels some draft of the vocabulary defined are returned; a category that is absent
    is unknown.

    >>> parse_content_usage("train-ai=n, search=y")
    {'train-ai': False, 'search': True}
    >>> parse_content_usage('train-ai="n"')
    {}
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    hit = _CACHE.get(value)
    if hit is not None:
        return hit
    prefs = _parse(value)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[value] = prefs
    return prefs


def _parse(value: str) -> dict[str, bool]:
    text = value.strip(" \t")
    if not text:
        return {}
    raw: dict[str, str | None] = {}
    if _SIMPLE.fullmatch(text):
        for member in _SPLIT.split(text):
            key, _, token = member.partition("=")
            raw[key] = token
    else:
        parsed = _parse_sfv(text)
        if parsed is None:
            return {}
        raw = parsed
    out: dict[str, bool] = {}
    for label, token in raw.items():
        if label not in AIPREF_KNOWN:
            continue
        if token == "y":
            out[label] = True
        elif token == "n":
            out[label] = False
    return out


def _parse_sfv(text: str) -> dict[str, str | None] | None:
    """Members of an RFC 9651 Dictionary as key → Token value (None for non-Token values)."""
    from http_sfv.dictionary import Dictionary
    from http_sfv.types import Token

    dictionary = Dictionary()
    try:
        dictionary.parse(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    out: dict[str, str | None] = {}
    for key, member in dictionary.items():
        item_value = getattr(member, "value", None)
        out[key] = str(item_value) if isinstance(item_value, Token) else None
    return out


def combine_preferences(statements: Iterable[Mapping[str, bool]]) -> dict[str, bool]:
    """Combine statements of preference: any disallow wins, then any allow (vocab §7.1)."""
    out: dict[str, bool] = {}
    for statement in statements:
        for label, allowed in statement.items():
            out[label] = out.get(label, True) and allowed
    return out


def serialize(preferences: Mapping[str, bool]) -> str:
    """A Content-Usage field value for ``preferences``, in vocabulary order.

    Only labels of the current draft may be written: an earlier draft's label would be read
    by nobody who follows the current one, or read wrongly.

    >>> serialize({"train-ai": False})
    'train-ai=n'
    """
    unknown = set(preferences) - set(AIPREF_PUBLISHED)
    if unknown:
        raise ValueError(
            f"aipref labels not defined by {AIPREF_CURRENT}: {', '.join(sorted(unknown))}"
        )
    return ", ".join(
        f"{label}={'y' if preferences[label] else 'n'}"
        for label in AIPREF_PUBLISHED
        if label in preferences
    )
