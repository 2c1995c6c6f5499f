"""UI strings through Babel catalogs (``translations/<lang>/LC_MESSAGES/messages.po``).

The ``.po`` files are the source; they are compiled in memory when first used, so there is
no build step and no ``.mo`` file to keep in step. Notices come from the policy itself.
"""

from __future__ import annotations

import gettext
import io
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from babel import Locale
from babel.dates import format_datetime
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import Markup, escape

TRANSLATIONS = Path(__file__).parent / "translations"
DOMAIN = "messages"
DEFAULT = "en"

#: How a list is joined: "a, b and c" or "a, b or c".
ListStyle = Literal["standard", "or"]

_lock = threading.Lock()
_cache: dict[str, gettext.NullTranslations] = {}


def N_(message: str) -> str:
    """Mark a string for extraction without translating it here."""
    return message


def catalog_path(language: str) -> Path:
    return TRANSLATIONS / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog for ``language`` (English strings when there is none)."""
    found = _cache.get(language)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(language)
        if found is None:
            path = catalog_path(language)
            if path.is_file():
                with path.open("rb") as fh:
                    catalog = read_po(fh, locale=language, domain=DOMAIN)
                buffer = io.BytesIO()
                write_mo(buffer, catalog)
                buffer.seek(0)
                found = gettext.GNUTranslations(buffer)
            else:
                found = gettext.NullTranslations()
            _cache[language] = found
    return found


def available(languages: Iterable[str]) -> list[str]:
    """The configured languages that have a catalog (English always)."""
    return [lang for lang in languages if lang == DEFAULT or catalog_path(lang).is_file()]


def language_name(language: str, in_language: str | None = None) -> str:
    """The language's name in ``in_language``, by default its own name for itself (English,
    Indonesia, Français)."""
    try:
        name = Locale.parse(language).get_display_name(in_language or language) or language
    except (ValueError, TypeError):
        return language
    return name[:1].upper() + name[1:] if in_language is None else name


def negotiate(
    requested: str | None, cookie: str | None, accept: str | None, languages: list[str]
) -> str:
    """``?lang=`` first, then the language cookie, then ``Accept-Language``, then English."""
    for candidate in (requested, cookie):
        if candidate and candidate in languages:
            return candidate
    if accept:
        weighted = []
        for part in accept.split(","):
            tag, _, params = part.strip().partition(";")
            q = 1.0
            if params.strip().startswith("q="):
                try:
                    q = float(params.strip()[2:])
                except ValueError:
                    q = 0.0
            weighted.append((q, tag.strip().lower()))
        for _, tag in sorted(weighted, key=lambda t: -t[0]):
            base = tag.split("-")[0]
            if base in languages:
                return base
    return DEFAULT if DEFAULT in languages else languages[0]


class Translator:
    """The gettext functions and formatters for one request's language."""

    def __init__(self, language: str) -> None:
        self.language = language
        t = translations(language)
        self.gettext: Callable[[str], str] = t.gettext
        self.ngettext: Callable[[str, str, int], str] = t.ngettext

    def __call__(self, message: str, **params: object) -> Markup:
        """The translation of ``message`` as HTML-safe markup, with ``{name}`` parameters
        filled in (and escaped, unless they are markup already)."""
        text = escape(self.gettext(message))
        return text.format(**params) if params else text

    def datetime(self, value: datetime) -> Markup:
        """A moment in UTC, saying so ("2 Dec 2026, 11:40:53 UTC"): the pages have no script
        to learn the reader's time zone, and a time without one misleads. The markup's
        ``<time datetime>`` carries the same moment in ISO 8601."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        text = format_datetime(value, format="medium", tzinfo=UTC, locale=self.language)
        return self("{time} UTC", time=text)

    def list(self, items: Iterable[object], style: ListStyle = "standard") -> Markup:
        """``items`` joined as the language joins a list ("a, b and c"; ``style="or"``:
        "a, b or c"), each escaped unless it is markup already."""
        parts = [escape(item) for item in items]
        if not parts:
            return Markup("")
        # Joined around placeholders, so that the pattern is escaped and the items are not
        # escaped twice.
        marks = [f"\x00{i}\x00" for i in range(len(parts))]
        joined = str(escape(format_list(marks, style=style, locale=self.language)))
        for mark, part in zip(marks, parts, strict=True):
            joined = joined.replace(mark, str(part))
        return Markup(joined)
