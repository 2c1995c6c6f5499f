"""What the lazily loaded command groups share (gate, webhooks, subject/import): printing a
typed error and opening the store a command names, refusing one that does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

from .errors import ConsentryError, InvalidInput
from .store import Store, database_url

err = Console(stderr=True, soft_wrap=True)


def fail(error: ConsentryError) -> NoReturn:
    """Print ``error`` and its hint on stderr and exit 2 (usage or input error)."""
    err.print(f"[bold red]Error:[/] {error.message}", highlight=False)
    if error.hint:
        err.print(f"[yellow]Hint:[/] {error.hint}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[Store]:
    """The store of ``--db`` (or ``CONSENTRY_DATABASE_URL``) for one command; never creates
    one (only ``init`` does). Typed errors and undecodable arguments end in :func:`fail`."""
    root = ctx.find_root()
    url = database_url(root.params.get("db") if root.params else None)
    try:
        with Store(url, create=False) as store:
            yield store
    except ConsentryError as exc:
        fail(exc)
    except UnicodeError as exc:  # e.g. an argument that was not UTF-8 (a lone surrogate)
        fail(
            InvalidInput(
                f"text that is not valid UTF-8: {getattr(exc, 'reason', exc)}",
                hint="pass arguments and files as UTF-8 text",
            )
        )
