"""invitations and server-side web sessions

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("invited_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("subject", "account"),
    )
    op.create_index("ix_invitations_account", "invitations", ["account"], unique=False)
    op.create_table(
        "web_sessions",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("sid"),
    )
    op.create_index("ix_web_sessions_subject", "web_sessions", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_web_sessions_subject", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_invitations_account", table_name="invitations")
    op.drop_table("invitations")
