"""the events table refuses UPDATE, DELETE and TRUNCATE

Revision ID: 0006
Revises: 0005

Triggers, so that neither the application nor anyone on a plain connection can change or
remove an event: only the owner of the table (or of the database file), by dropping or
disabling the triggers first, can -- and ``ledger verify`` then catches what they did.
On PostgreSQL the service should also run as a role without UPDATE, DELETE and TRUNCATE on
``events`` (docs/deploying.md); the triggers hold even for a role that has them.

A later sanctioned erasure of personal data will need its own path past these (a function
the owner defines, or a separate table of erasable fields); none exists yet.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MESSAGE = "the ledger is append-only: events cannot be"

SQLITE_UP = [
    f"""CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, '{MESSAGE} updated'); END""",
    f"""CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, '{MESSAGE} deleted'); END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS events_append_only_update",
    "DROP TRIGGER IF EXISTS events_append_only_delete",
]

POSTGRES_UP = [
    f"""CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE} %', CASE TG_OP
        WHEN 'UPDATE' THEN 'updated'
        WHEN 'DELETE' THEN 'deleted'
        ELSE 'truncated' END
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'consentry records every change as a new event';
END $$""",
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only()""",
    """CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS events_append_only_truncate ON events",
    "DROP TRIGGER IF EXISTS events_append_only ON events",
    "DROP FUNCTION IF EXISTS events_append_only()",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_DOWN if postgres else SQLITE_DOWN:
        op.execute(statement)
