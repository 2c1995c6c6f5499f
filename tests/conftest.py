"""Shared fixtures: stores on SQLite and (when the server answers) PostgreSQL, a movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consentry import Store
from support import PG_SKIP, PG_URL, TEST_POLICY, FakeClock, pg_schema_url

# Every SQLite store of the tests lives for one test: its commits need not wait for the disk
# (docs/deploying.md; they stay atomic). Subprocesses the tests start inherit it.
os.environ.setdefault("CONSENTRY_SQLITE_SYNCHRONOUS", "OFF")


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


@pytest.fixture
def make_store(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Store]]:
    """Make SQLite stores in tmp_path initialised with the given policies."""
    stores: list[Store] = []

    def make(*policies: Path, url: str | None = None, **options: Any) -> Store:
        store = Store(url or f"sqlite:///{tmp_path}/s{len(stores)}.db", clock=clock, **options)
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
