"""Bring a store's schema to the current version with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` in one transaction."""
    config = alembic_config()
    with engine.connect().execution_options(consentry_write=True) as connection, connection.begin():
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
