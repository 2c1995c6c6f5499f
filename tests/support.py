"""What the core tests share: paths, the PostgreSQL URL, a clock tests move by hand.

Kept out of conftest.py so that test modules can import it by a unique name."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def allow_tampering(conn: Any) -> None:
    """Take the append-only triggers off ``events`` on a SQLAlchemy connection, as an attacker
    with the database file (SQLite) or the table owner's rights (PostgreSQL) can; tests that
    show tampering is detected do this first."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER USER")
        return
    names = conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
    ).all()
    for (name,) in names:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')


def sqlite_store_url(template: Path, path: Path) -> str:
    """A SQLite store URL at ``path``, its file a copy of the migrated ``template`` (the
    ``migrated_sqlite`` fixture)."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"
