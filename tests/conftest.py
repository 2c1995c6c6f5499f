"""Shared fixtures: stores on SQLite and (when the server answers) PostgreSQL, a movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consentry import Store

ROOT = Path(__file__).resolve().parent.parent
TEST_POLICY = Path(__file__).parent / "data" / "decisions.yaml"
MEETINGS = ROOT / "policies" / "meetings.yaml"
MUSIC = ROOT / "policies" / "music.yaml"
PG_URL = os.environ.get("CONSENTRY_TEST_POSTGRES_URL")
PG_SKIP = (
    "PostgreSQL tests need CONSENTRY_TEST_POSTGRES_URL (make test sets it when "
    "127.0.0.1:5432 answers)"
)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = datetime(2024, 3, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


def pg_schema_url(schema: str) -> str:
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


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

    def make(*policies: Path, url: str | None = None) -> Store:
        store = Store(url or f"sqlite:///{tmp_path}/s{len(stores)}.db", clock=clock)
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
