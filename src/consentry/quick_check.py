"""``consentry check`` without the database layer: a decision read straight from a SQLite
store's current-state tables with the standard library's ``sqlite3``.

A script runs ``consentry check`` once per item, often in a loop, and each run is a new
process: importing SQLAlchemy (and the migrations, the receipts, the verifier the
:class:`~consentry.Store` brings) cost several times the decision. This reads, in one
read transaction, the rows the question needs — the published policies, the subjects'
consents, objections and memberships, their accounts' settings and features — into a
:class:`~consentry.state.State` and decides with the same :class:`~consentry.decide.Decider`
``Store.check`` uses (tests/test_quick_check.py holds the two equal).

It answers only what it can answer the same way: a SQLite file that exists and holds a
store. Anything else (another database, a missing or uninitialised store, an id or a name
it would refuse, a table it cannot read) returns ``None`` and the caller asks the
:class:`~consentry.Store`, which says what is wrong.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from .decide import Decider, Decision
from .errors import ConsentryError
from .state import State
from .times import to_us, utcnow

#: The store the CLI opens by default (consentry.ledger.engine.DEFAULT_URL, not imported:
#: it imports SQLAlchemy; tests/test_quick_check.py checks they agree).
DEFAULT_URL = "sqlite:///consentry.db"
DATABASE_URL_ENV = "CONSENTRY_DATABASE_URL"
#: SQLite waits this long for a writer's lock, as the store's engine does (busy_timeout).
BUSY_TIMEOUT_S = 60.0
#: More subjects than this go to the Store (SQLite limits the parameters of one statement).
MAX_SUBJECTS = 500


def sqlite_file(url: str | None) -> str | None:
    """The existing SQLite file a store URL names, or None when the fast path does not apply
    (another database, a URI with options, a file that is not there)."""
    url = url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_URL
    if "://" not in url:
        path = url  # a bare path is a SQLite file (consentry.ledger.engine.normalise_url)
    elif url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    else:
        return None
    if not path or "?" in path or "%" in path or path == ":memory:" or path.startswith("file:"):
        return None
    return path if os.path.isfile(path) else None


def _plain_id(value: str) -> bool:
    # Anything the Store might refuse or normalise goes to the Store, which says why.
    return bool(value.strip()) and len(value) <= 512 and value.isprintable()


def check(
    url: str | None,
    subjects: Sequence[str],
    purpose: str,
    category: str,
    labels: Sequence[str] = (),
    clock: Callable[[], datetime] = utcnow,
) -> Decision | None:
    """The decision ``Store(url).check(subjects, purpose, category, labels)`` gives now, or
    None when this path cannot answer it exactly (the caller then asks the Store)."""
    path = sqlite_file(url)
    if path is None or not 0 < len(subjects) <= MAX_SUBJECTS:
        return None
    if not all(_plain_id(s) for s in subjects):
        return None
    try:
        state = read_state(path, subjects)
        if state is None:
            return None
        return Decider(state, clock).check(
            list(subjects), purpose, category, labels, to_us(clock())
        )
    except (sqlite3.Error, ConsentryError, ValueError, KeyError):
        return None  # the Store gives the typed error (or the answer) for these


def read_state(path: str, subjects: Sequence[str]) -> State | None:
    """The state the decisions about ``subjects`` need, read in one transaction (a
    consistent position, as ``consentry.store.load_state`` reads the whole state), or None
    for a file that holds no initialised store."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot of the WAL for every read below
        head = conn.execute("SELECT seq, at_us FROM ledger_head").fetchone()
        if head is None:
            return None
        if _has_aliases(conn, list(dict.fromkeys(subjects))):
            return None  # a person known under several ids: the Store merges their records
        state = State()
        for seq, document, at_us, digest in conn.execute(
            "SELECT seq, document, at_us, digest FROM policies ORDER BY seq"
        ):
            state.add_policy(json.loads(document), seq, at_us, digest)
        _read_subjects(conn, state, list(dict.fromkeys(subjects)))
        state.seq, state.at_us = head
        conn.execute("COMMIT")
        return state
    finally:
        conn.close()


def _has_aliases(conn: sqlite3.Connection, subjects: list[str]) -> bool:
    """True when one of ``subjects`` is linked to another id (as the alias or the person)."""
    marks = ", ".join("?" * len(subjects))
    row = conn.execute(
        f"SELECT 1 FROM subject_aliases WHERE alias IN ({marks}) OR subject IN ({marks}) LIMIT 1",
        [*subjects, *subjects],
    ).fetchone()
    return row is not None


def _read_subjects(conn: sqlite3.Connection, state: State, subjects: list[str]) -> None:
    marks = ", ".join("?" * len(subjects))
    columns = "subject, purpose, category, status, at_us, seq"
    for row in conn.execute(f"SELECT {columns} FROM consents WHERE subject IN ({marks})", subjects):
        state.set_consent(*row)
    for row in conn.execute(
        f"SELECT {columns} FROM objections WHERE subject IN ({marks})", subjects
    ):
        state.set_objection(*row)
    accounts: set[str] = set()
    for subject, account in conn.execute(
        f"SELECT subject, account FROM memberships WHERE subject IN ({marks}) ORDER BY seq",
        subjects,
    ):
        state.set_membership(subject, account, True)
        accounts.add(account)
    if not accounts:
        return
    names = sorted(accounts)
    marks = ", ".join("?" * len(names))
    for table, target in (
        ("account_settings", state.settings),
        ("account_features", state.features),
    ):
        for account, purpose, status, seq, at_us in conn.execute(
            f"SELECT account, purpose, status, seq, at_us FROM {table} "
            f"WHERE account IN ({marks}) ORDER BY seq",
            names,
        ):
            state.set_account(target, account, purpose, status, seq, at_us)
