"""The ``consentry`` command's entry point: ``consentry check`` in its plain form answered
before Typer is imported, everything else handed to :data:`consentry.cli.app`.

Scripts run ``consentry check PURPOSE CATEGORY -s SUBJECT`` once per item, in loops; each run
is a new process. Typer (and the pydantic it now validates every parameter with) costs more
CPU than reading the answer (:mod:`consentry.quick_check`), so this module recognises that
one form — ``[--db URL] check PURPOSE CATEGORY (-s|--subject S)... [(-l|--label L)...]`` —
and answers it; any other argument (``--as-of``, ``--explain``, ``--json``, ``--help``, an
option it does not know) and anything the quick path cannot answer exactly goes to the Typer
command, which says what is wrong. tests/test_cli_startup.py holds the two to the same output
and exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

_SUBJECT = ("-s", "--subject")
_LABEL = ("-l", "--label")


class PlainCheck(NamedTuple):
    db: str | None
    purpose: str
    category: str
    subjects: list[str]
    labels: list[str]


def _db_option(args: list[str]) -> tuple[str | None, list[str]] | None:
    """``--db URL`` / ``--db=URL`` before the command, and the rest (None: malformed)."""
    if args[:1] == ["--db"]:
        return (args[1], args[2:]) if len(args) > 1 else None
    if args and args[0].startswith("--db="):
        return args[0][len("--db=") :], args[1:]
    return None, args


def parse_plain_check(argv: Sequence[str]) -> PlainCheck | None:
    """The plain ``check`` these arguments ask for, or None for any other command line."""
    found = _db_option(list(argv))
    if found is None:
        return None
    db, args = found
    if not args or args[0] != "check":
        return None
    positional: list[str] = []
    taken: dict[str, list[str]] = {"s": [], "l": []}
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in _SUBJECT or arg in _LABEL:
            if i + 1 == len(args):
                return None
            taken["s" if arg in _SUBJECT else "l"].append(args[i + 1])
            i += 2
            continue
        name, eq, value = arg.partition("=")
        if eq and name in ("--subject", "--label"):
            taken[name[2]].append(value)
        elif arg.startswith("-"):
            return None  # --as-of, --explain, --json, --help, -sX...: Typer's
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2 or not taken["s"]:
        return None
    return PlainCheck(db, positional[0], positional[1], taken["s"], taken["l"])


def _paint(word: str, colour: int) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\x1b[1;{colour}m{word}\x1b[0m"
    return word


def answer_plain_check(argv: Sequence[str]) -> int | None:
    """Answer a plain ``check`` (print it, return its exit code), or None to leave it to
    Typer."""
    plain = parse_plain_check(argv)
    if plain is None:
        return None
    from .quick_check import check

    decision = check(plain.db, plain.subjects, plain.purpose, plain.category, plain.labels)
    if decision is None:
        return None
    verdict = _paint("allow", 32) if decision.allowed else _paint("deny", 31)
    sys.stdout.write(f"{verdict} ({decision.reason})\n")
    return 0 if decision.allowed else 1


def main() -> None:
    """``consentry``."""
    code = answer_plain_check(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from .cli import app

    app()
