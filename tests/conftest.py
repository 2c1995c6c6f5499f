"""Shared fixtures: stores on SQLite and (when the server answers) PostgreSQL, a movable clock."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from consentry import Store
from support import PG_SKIP, PG_URL, TEST_POLICY, FakeClock, pg_schema_url, sqlite_store_url

# Every SQLite store of the tests lives for one test: its commits need not wait for the disk
# (docs/deploying.md; they stay atomic). Subprocesses the tests start inherit it.
os.environ.setdefault("CONSENTRY_SQLITE_SYNCHRONOUS", "OFF")

# No test depends on wall-clock speed: Hypothesis's default 200 ms deadline per example failed
# property tests on a loaded machine (an example that took 448 ms once, 0.15 ms when re-run).
settings.register_profile("consentry", deadline=None)
settings.load_profile("consentry")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store with the schema of every migration applied: each test's store
    starts as a copy of it, and Store.init finds nothing to migrate (running Alembic for each
    of hundreds of stores cost more than most tests' own work). The migrations themselves are
    tested on fresh databases (tests/test_ledger.py, the PostgreSQL stores)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    with Store(f"sqlite:///{path}") as store:
        store.ledger.migrate()
    with sqlite3.connect(path) as conn:  # everything in the main file, nothing in the WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def make_store(
    tmp_path: Path, clock: FakeClock, migrated_sqlite: Path
) -> Iterator[Callable[..., Store]]:
    """Make SQLite stores in tmp_path initialised with the given policies."""
    stores: list[Store] = []

    def make(*policies: Path, url: str | None = None, **options: Any) -> Store:
        url = url or sqlite_store_url(migrated_sqlite, tmp_path / f"s{len(stores)}.db")
        store = Store(url, clock=clock, **options)
        store.init(policies=list(policies))
        stores.append(store)
        return store

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A SQLite store with the test policy (v1 effective 2024-01-01, v2 2024-06-01)."""
    return make_store(TEST_POLICY)


@pytest.fixture
def any_store(backend_url: str, clock: FakeClock) -> Iterator[Store]:
    """The test-policy store on every backend."""
    s = Store(backend_url, clock=clock)
    s.init(policies=[TEST_POLICY])
    yield s
    s.close()
