"""Bring a store's schema to the current version with Alembic."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revisions() -> frozenset[str]:
    """The revisions a store at the current version is at (read once per process)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def is_current(engine: Engine) -> bool:
    """Whether the store's schema is already at every head: then there is nothing to apply,
    and Alembic (which loads its environment and every migration script to find that out) is
    not run at all. ``Store.init`` runs on every ``consentry serve`` and on many commands."""
    try:
        with engine.connect() as conn:
            found = {
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except (OperationalError, ProgrammingError):  # no version table: a new store
        return False
    return found == head_revisions()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` in one transaction."""
    if revision == "head" and is_current(engine):
        return
    config = alembic_config()
    with engine.connect().execution_options(consentry_write=True) as connection, connection.begin():
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
