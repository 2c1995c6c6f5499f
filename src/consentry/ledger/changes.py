"""Learning that the ledger has new events without asking the database on every read.

A :class:`~consentry.store.Store` keeps its state in memory and used to run an "events after
``seq``" query before every check, to catch up with writes made elsewhere: about 150 µs of a
1.5 µs decision. :class:`ChangeWatch` answers "may the ledger hold events past ``seq``?"
instead, from three sources, cheapest first:

* Writes made by any :class:`~consentry.ledger.store.Ledger` of this process (this store's
  own, or another ``Store`` on the same database) are announced here when they commit
  (:func:`committed`): a dictionary read tells the reader, so such writes are seen by the
  very next check, exactly as before.
* Writes made by other processes are looked for at most once every ``max_staleness``
  seconds. SQLite: ``PRAGMA data_version`` on a connection kept for this (it changes when
  any other connection commits; a few microseconds, no table read). PostgreSQL and SQLite
  URIs: a read of the chain head's ``seq`` (one indexed row).
* Only when one of these says so does the store run the catch-up query.

So a check may miss another process's write for at most ``max_staleness`` seconds (plus the
time the catch-up takes); ``max_staleness=0`` looks on every call, as before.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine, select

from . import schema
from .engine import sqlite_path

#: The default bound on how stale a check may be about other processes' writes (seconds).
DEFAULT_MAX_STALENESS = 0.005
#: Environment variable overriding it, in milliseconds (``0``: look on every check).
MAX_STALENESS_ENV = "CONSENTRY_MAX_STALENESS_MS"

# Per database: the highest seq committed by a ledger of this process (see ``committed``).
_heads: dict[str, int] = {}
_heads_lock = threading.Lock()


def database_key(engine: Engine) -> str:
    """A name for the database ``engine`` reaches, the same for every engine of this process
    that reaches it (an in-memory SQLite database is private to its engine)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url.render_as_string(hide_password=False))
        if path is None:
            return f"engine:{id(engine)}:{url.database}"
        return "sqlite:" + os.path.realpath(path)
    return url.set(password=None).render_as_string(hide_password=True)


def committed(key: str, seq: int) -> None:
    """Announce that a ledger of this process committed events up to ``seq`` in ``key``."""
    with _heads_lock:
        if seq > _heads.get(key, 0):
            _heads[key] = seq


def max_staleness_from_env(value: float | None) -> float:
    """``value`` (seconds) if given, else ``CONSENTRY_MAX_STALENESS_MS``, else the default."""
    if value is not None:
        if value < 0:
            raise ValueError("max_staleness must be >= 0 seconds")
        return float(value)
    text = os.environ.get(MAX_STALENESS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_STALENESS
    try:
        ms = float(text)
    except ValueError:
        raise ValueError(f"{MAX_STALENESS_ENV}={text!r} is not a number of milliseconds") from None
    if ms < 0:
        raise ValueError(f"{MAX_STALENESS_ENV} must be >= 0 milliseconds")
    return ms / 1000.0


class ChangeWatch:
    """Tells a reader at ``seq`` cheaply whether the ledger may hold newer events."""

    def __init__(self, engine: Engine, max_staleness: float) -> None:
        self.engine = engine
        self.key = database_key(engine)
        #: Seconds between looks for other processes' writes.
        self.max_staleness = max_staleness
        url = engine.url
        self._path = (
            sqlite_path(url.render_as_string(hide_password=False))
            if url.get_backend_name() == "sqlite"
            else None
        )
        self._next_look = 0.0  # time.monotonic() of the next look at the database
        self._version: int | None = None  # the last PRAGMA data_version seen
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def behind(self, seq: int) -> bool:
        """True when the ledger may hold events after ``seq`` (the caller then catches up);
        False when none committed in this process and, as of at most ``max_staleness``
        seconds ago, none in another."""
        if _heads.get(self.key, 0) > seq:
            return True
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + self.max_staleness
        return self._look(seq)

    def _look(self, seq: int) -> bool:
        if self._path is None:
            return self._head_seq() > seq
        with self._lock:
            version = self._data_version()
            changed = version != self._version
            self._version = version
        return changed

    def _data_version(self) -> int:
        if self._conn is None or self._pid != os.getpid():
            # Never one inherited across fork: a SQLite connection is not to be shared so.
            self._conn = sqlite3.connect(self._path or "", check_same_thread=False)
            self._pid = os.getpid()
        row: Any = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _head_seq(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(schema.ledger_head.c.seq)).scalar_one_or_none()
        return int(value or 0)

    def close(self) -> None:
        """Close the connection kept for ``PRAGMA data_version``."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
