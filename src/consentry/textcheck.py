"""Text the store can keep: no NUL characters, nothing that is not Unicode.

PostgreSQL cannot store U+0000 in a text column (psycopg refuses the parameter, and the
service answered 500), and SQLite would keep it but most tools cut the string there. A lone
surrogate (``\\udcff``: what Python makes of a non-UTF-8 byte in a command-line argument, or a
JSON ``"\\ud800"``) cannot be encoded as UTF-8 at all. So either, anywhere in a caller's
string, is refused at the edge, naming the field, on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput

NUL = "\x00"
NUL_REASON = "must not contain a NUL character (U+0000)"
SURROGATE_REASON = (
    "must be valid Unicode text (this has a lone surrogate, e.g. from a non-UTF-8 argument)"
)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if NUL in value:
        return NUL_REASON
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_REASON
    return None


def refuse_bad_fields(fields: Mapping[str, Any], skip: str = "asked") -> None:
    """:func:`refuse_bad_text` for each field of a record (a draft's ``vars``), quickly: the
    append path calls it for every event. ``skip`` is a field that repeats the others."""
    for name, value in fields.items():
        if isinstance(value, str):
            if NUL in value or not value.isascii():
                refuse_bad_text(value, name)
        elif isinstance(value, (tuple, list)):
            for item in value:
                if not isinstance(item, str) or NUL in item or not item.isascii():
                    refuse_bad_text(value, name)
                    break
        elif value and name != skip and isinstance(value, Mapping):
            refuse_bad_text(value, name)


def find_bad_text(value: Any, where: str = "") -> tuple[str, str] | None:
    """``(path, reason)`` of the first string in ``value`` (a string, or lists and mappings of
    them, keys included) that cannot be stored, e.g. ``("categories[1]", NUL_REASON)``; None
    if every one can. ``where`` names ``value`` itself."""
    if isinstance(value, str):
        reason = text_problem(value)
        return None if reason is None else (where, reason)
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                reason = text_problem(key)
                if reason is not None:
                    # (a NUL, or a surrogate, is no part of a field name to show)
                    return (name.encode("unicode_escape").decode("ascii"), reason)
            found = find_bad_text(item, name)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = find_bad_text(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def refuse_bad_text(value: Any, field: str) -> None:
    """Raise :class:`InvalidInput` naming the field if a string in ``value`` cannot be
    stored (see :func:`find_bad_text`)."""
    found = find_bad_text(value, field)
    if found is not None:
        path, reason = found
        raise InvalidInput(
            f"{path}: {reason}", hint="send the value as valid UTF-8 text", field=path
        )


def checked_id(value: object, field: str) -> str:
    """``value`` if it is an id the library accepts (a non-empty string of at most 512
    characters with no forbidden text, see :func:`refuse_bad_text`); else InvalidInput naming
    ``field``."""
    if not isinstance(value, str) or not value.strip() or len(value) > 512:
        raise InvalidInput(
            f"{field}: expected a non-empty id of at most 512 characters, got {value!r}",
            field=field,
        )
    refuse_bad_text(value, field)
    return value
