"""A SQLAlchemy statement compiled once for a dialect and run on the driver's own cursor.

The ledger's append path and lineage's ``impact`` run a handful of small statements each;
SQLAlchemy's per-execution work (building the statement, its cache key, parameter
processing, result wrapping) cost several times what the database did, so those paths skip
it. The SQL is SQLAlchemy's own.
"""

from __future__ import annotations

from typing import Any


class CompiledStatement:
    """``stmt`` compiled for ``dialect``: its SQL and the order of its parameters."""

    __slots__ = ("names", "sql")

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql: str = compiled.string
        # qmark/numeric drivers (sqlite3) take a tuple in this order; pyformat ones a dict.
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )

    def params(self, values: dict[str, Any]) -> Any:
        """The driver's parameters for ``values`` (by name)."""
        return values if self.names is None else tuple(values[n] for n in self.names)

    def run(self, cursor: Any, **values: Any) -> list[Any]:
        """Execute on a DB-API ``cursor``; every row."""
        cursor.execute(self.sql, self.params(values))
        return list(cursor.fetchall())
