"""The command reference in docs/cli.md, generated from the ``consentry`` Typer app.

``python -m consentry.clidocs`` rewrites the part of docs/cli.md between the two markers
below from every command's ``--help`` text; ``tests/test_docs.py`` fails when that part is
stale or a command is missing from it, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

BEGIN = "<!-- BEGIN GENERATED REFERENCE: `python -m consentry.clidocs` writes it; do not edit -->"
END = "<!-- END GENERATED REFERENCE -->"
#: Width of the help text in the reference (fixed: the output must not depend on a terminal).
WIDTH = 88
DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def commands(root: Any | None = None) -> Iterator[tuple[list[str], Any, Any]]:
    """Every command and group under ``consentry``, depth first in listing order, as
    (path, click command, its context); lazily loaded commands are loaded."""
    from .cli import app

    command = root if root is not None else typer.main.get_command(app)
    yield from _walk(command, ["consentry"], None)


def _walk(command: Any, path: list[str], parent: Any) -> Iterator[tuple[list[str], Any, Any]]:
    ctx = type_context(command, path, parent)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def type_context(command: Any, path: list[str], parent: Any) -> Any:
    """A click context for ``command`` that formats help at :data:`WIDTH` columns."""
    return command.context_class(
        command,
        info_name=path[-1],
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
    )


def reference() -> str:
    """The generated part of docs/cli.md: one section per command with its help text."""
    parts = [
        BEGIN,
        "",
        "## Command reference",
        "",
        "Every command's `--help`, generated from the code (`python -m consentry.clidocs`).",
        "",
    ]
    for path, command, ctx in commands():
        level = "###" if len(path) <= 2 else "####"
        parts += [f"{level} `{' '.join(path)}`", "", "```text", _help(command, ctx), "```", ""]
    parts.append(END)
    return "\n".join(parts) + "\n"


def _help(command: Any, ctx: Any) -> str:
    text = command.get_help(ctx)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def updated(document: str) -> str:
    """``document`` with its generated part replaced by the current reference (appended
    when it has none)."""
    if BEGIN in document and END in document:
        head, rest = document.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return head + reference().rstrip("\n") + tail
    return document.rstrip("\n") + "\n\n" + reference()


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/cli.md (or check it with ``--check``: exit 1 when stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="Only say whether it is stale.")
    args = parser.parse_args(argv)
    current = args.file.read_text(encoding="utf-8")
    wanted = updated(current)
    if args.check:
        stale = wanted != current
        print(f"{args.file}: {'stale' if stale else 'up to date'}")
        return 1 if stale else 0
    args.file.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
