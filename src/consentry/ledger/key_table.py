"""The ``api_keys`` table: the API keys' rows in and out, and nothing else.

The rules (who may hold a key, how a secret is made and checked) are
:class:`consentry.api.keys.ApiKeys`'; this repository only reads and writes rows through the
database engine it is given, so that the HTTP layer never touches the ledger's engine.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..errors import NotInitialised
from . import schema


class ApiKeyTable:
    """Rows of ``api_keys`` (``schema.api_keys``) through ``engine``."""

    def __init__(self, engine: Engine, *, url: str = "") -> None:
        self.engine = engine
        self.url = url

    def _missing(self) -> NotInitialised:
        return NotInitialised(
            f"{self.url or 'the store'} has no API key table yet",
            hint="run `consentry init` to bring the store's schema up to date",
        )

    def insert(self, **row: Any) -> None:
        """Add one key's row (its id, name, role, account, secret hash, creation)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(schema.api_keys).values(**row))
        except (OperationalError, ProgrammingError):
            raise self._missing() from None

    def rows(self, *, include_revoked: bool = True) -> list[Any]:
        """Every key's row, oldest first."""
        t = schema.api_keys
        query = select(t).order_by(t.c.created_at, t.c.id)
        if not include_revoked:
            query = query.where(t.c.revoked_at.is_(None))
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query))
        except (OperationalError, ProgrammingError):
            raise self._missing() from None

    def row(self, key_id: str, *, missing_table_ok: bool = False) -> Any | None:
        """The row of ``key_id``, or None. ``missing_table_ok``: a store without the table
        has no keys (None) instead of an error (authentication asks so)."""
        t = schema.api_keys
        try:
            with self.engine.connect() as conn:
                return conn.execute(select(t).where(t.c.id == key_id)).first()
        except (OperationalError, ProgrammingError):
            if missing_table_ok:
                return None
            raise self._missing() from None

    def revoke(self, key_id: str, at: str) -> None:
        """Mark ``key_id`` revoked at ``at`` unless it already is."""
        t = schema.api_keys
        with self.engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.id == key_id, t.c.revoked_at.is_(None)).values(revoked_at=at)
            )
