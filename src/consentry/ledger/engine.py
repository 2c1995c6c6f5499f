"""Database engines: SQLite (WAL, serialised writers) by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from ..errors import InvalidInput

DEFAULT_URL = "sqlite:///consentry.db"
WRITE = {"consentry_write": True}
#: SQLite's ``synchronous`` setting: FULL (the default) makes every commit durable before it
#: returns. NORMAL or OFF give that up on power loss (never on a process crash: a commit stays
#: atomic), for throwaway stores; the test suite sets OFF, as its stores outlive no test.
SQLITE_SYNCHRONOUS_ENV = "CONSENTRY_SQLITE_SYNCHRONOUS"
_SYNCHRONOUS = ("FULL", "NORMAL", "OFF")


def normalise_url(url: str) -> str:
    """Accept the URLs people type: ``postgresql://`` means psycopg 3, a bare path means SQLite."""
    if "://" not in url:
        return f"sqlite:///{url}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names (None for another database or an in-memory one)."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        return None  # make_engine says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if str(parsed.database).startswith("file:"):
        return None  # a SQLite URI (mode=memory, …): left to SQLite
    return str(parsed.database)


def make_engine(url: str = DEFAULT_URL) -> Engine:
    """An engine for ``url`` with the settings the ledger relies on."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise InvalidInput(
            f"{url!r} is not a database URL",
            hint="use sqlite:///path.db or postgresql://user@host/db",
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": 60, "check_same_thread": False},
        }
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise InvalidInput(
        f"unsupported database {backend!r}",
        hint="consentry runs on SQLite (sqlite:///file.db) and PostgreSQL (postgresql://...)",
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself, so writers can ask for IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is on disk before append() returns (durable writes).
    cursor.execute(f"PRAGMA synchronous={_synchronous()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _synchronous() -> str:
    value = (os.environ.get(SQLITE_SYNCHRONOUS_ENV) or "FULL").upper()
    if value not in _SYNCHRONOUS:
        raise InvalidInput(
            f"{SQLITE_SYNCHRONOUS_ENV}={value!r} is not one of {', '.join(_SYNCHRONOUS)}",
            hint="leave it unset: FULL, every commit durable",
            field=SQLITE_SYNCHRONOUS_ENV,
        )
    return value


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front: two appenders can never read the same chain head.
    if conn.get_execution_options().get("consentry_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
