"""What the service's database role needs on PostgreSQL, and nothing more.

Migrations run as the owner of the schema; the service runs as a role that may only append
to ``events`` and read it (no UPDATE, DELETE or TRUNCATE, no DDL), move the chain's head, and
keep the derived tables (current state, keys, lineage) current. docs/deploying.md shows the
whole set-up; ``grants(role)`` is the SQL for the schema as this version defines it.
"""

from __future__ import annotations

from . import schema

#: What the service role may do to each table; every other table of the schema (current
#: state, API keys, lineage, and those later versions add) gets SELECT, INSERT, UPDATE, DELETE.
PRIVILEGES = {
    "events": "SELECT, INSERT",  # append-only: no UPDATE, DELETE, TRUNCATE
    "ledger_head": "SELECT, UPDATE",  # the head row moves with each append
    "meta": "SELECT, INSERT",  # keys and settings are set once, never changed
    "alembic_version": "SELECT",  # the migrations' record: the owner's
    # The transparency log's tree and checkpoints only grow: a node or a checkpoint, once
    # written, is never changed (a rewrite is what they exist to expose).
    "tlog_nodes": "SELECT, INSERT",
    "checkpoints": "SELECT, INSERT",
    # The outbox: a row per event, inserted with it; the delivery workers fill in a narrowing
    # event's impact (UPDATE), and pruning or an erasure may remove rows (DELETE). Its rows
    # carry no personal data (see schema.outbox), so none of this touches the ledger's proof.
    "outbox": "SELECT, INSERT, UPDATE, DELETE",
}
DERIVED = "SELECT, INSERT, UPDATE, DELETE"


def grants(role: str, schema_name: str | None = None) -> list[str]:
    """The GRANT statements for the service role ``role`` (an SQL identifier: quoted here),
    to run as the owner after the migrations, in ``schema_name`` (default: the search path).
    """
    who = _quote(role)
    prefix = f"{_quote(schema_name)}." if schema_name else ""
    statements = []
    if schema_name:
        statements.append(f"GRANT USAGE ON SCHEMA {_quote(schema_name)} TO {who}")
    for table, privileges in PRIVILEGES.items():
        statements.append(f"GRANT {privileges} ON {prefix}{table} TO {who}")
    derived = sorted(t for t in schema.metadata.tables if t not in PRIVILEGES)
    names = ", ".join(f"{prefix}{t}" for t in derived)
    statements.append(f"GRANT {DERIVED} ON {names} TO {who}")
    return statements


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
