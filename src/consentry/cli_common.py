"""What every ``consentry`` command shares: printing a typed error, printing text or JSON,
and opening the store a command names (refusing one that does not exist).

The main command imports this module at start-up, so it imports nothing heavy: the store
(SQLAlchemy) is imported when a command opens it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import typer

from .errors import ConsentryError, InvalidInput, StoreUnavailable

if TYPE_CHECKING:
    from rich.console import Console

    from .store import Store


class _LazyConsole:
    """A Rich console made at its first use: importing Rich costs about as much CPU as the
    rest of ``consentry check``, which prints one plain line."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, soft_wrap=True)
        return getattr(self._console, name)


T = TypeVar("T")

out = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))

#: Exit codes (docs/cli.md "Output and exit codes"): 1 is "the answer is no".
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def fail(error: ConsentryError, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error`` and its hint on stderr and exit ``code`` (2: a usage or input error)."""
    err.print(f"[bold red]Error:[/] {error.message}", highlight=False)
    if error.hint:
        err.print(f"[yellow]Hint:[/] {error.hint}", highlight=False)
    raise typer.Exit(code)


def emit(data: Any, as_json: bool, text: Callable[[], None]) -> None:
    """Print ``data`` as JSON for a program (``--json``), else call ``text`` for a person."""
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        text()


def root_db(ctx: typer.Context) -> str | None:
    """The ``--db`` given before the command (``CONSENTRY_DATABASE_URL`` fills it in)."""
    root = ctx.find_root()
    value = root.params.get("db") if root.params else None
    return value if isinstance(value, str) else None


def database_problem(exc: BaseException) -> StoreUnavailable | None:
    """The typed error for a database driver's error (``database is locked``, a server that
    does not answer, a file that is not a database), or None for any other exception."""
    sa_exc = sys.modules.get("sqlalchemy.exc")  # loaded if the store is: no import here
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        cause: BaseException = exc.orig or exc
    elif isinstance(exc, sqlite3.Error):
        cause = exc
    else:
        return None
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if "locked" in text or "busy" in text:
        hint = "another process is writing to the store: try again in a moment"
    elif "not a database" in text or "no such table" in text:
        hint = "--db (or CONSENTRY_DATABASE_URL) names a file that is not a consentry store"
    else:
        hint = (
            "check --db (or CONSENTRY_DATABASE_URL), that the database server is running and "
            "that this user may read and write it"
        )
    return StoreUnavailable(f"the store could not be read or written: {text}", hint=hint)


def run_or_fail(call: Callable[[], T]) -> T:
    """``call()``, its typed error printed by :func:`fail` (exit 2) and a database's error
    as :func:`database_problem` tells it (exit 3): for a command that opens no store itself
    through :func:`store_at`."""
    try:
        return call()
    except ConsentryError as exc:
        fail(exc)
    except Exception as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        fail(problem, EXIT_UNAVAILABLE)


@contextmanager
def store_at(
    url: str | None,
    *,
    create: bool = False,
    answers_no: tuple[type[ConsentryError], ...] = (),
    **options: Any,
) -> Iterator[Store]:
    """The store at ``url`` (else ``CONSENTRY_DATABASE_URL``, else the default) for one
    command; only ``init`` passes ``create``. Typed errors and undecodable arguments end in
    :func:`fail` (exit 2, or 1 for the ``answers_no`` kinds: "the answer is no"), database
    errors in exit 3, never a traceback. ``options`` go to :class:`~consentry.Store`."""
    try:
        from .store import Store

        with Store(url, create=create, **options) as store:
            yield store
    except ConsentryError as exc:
        fail(exc, 1 if isinstance(exc, answers_no) else EXIT_USAGE)
    except UnicodeError as exc:  # e.g. an argument that was not UTF-8 (a lone surrogate)
        fail(
            InvalidInput(
                f"text that is not valid UTF-8: {getattr(exc, 'reason', exc)}",
                hint="pass arguments and files as UTF-8 text",
            )
        )
    except Exception as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        fail(problem, EXIT_UNAVAILABLE)


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[Store]:
    """The store of ``--db`` (or ``CONSENTRY_DATABASE_URL``) for one command; never creates
    one (only ``init`` does)."""
    with store_at(root_db(ctx)) as store:
        yield store
