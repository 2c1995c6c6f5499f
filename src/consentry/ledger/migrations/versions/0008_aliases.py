"""subject aliases: another id under which the platform knows a person (issue 16 §3)

Revision ID: 0008
Revises: 0007

``subject_aliases`` is current state derived from ``subject.linked`` and ``subject.unlinked``
events (none exist before this revision, so there is nothing to backfill).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_aliases",
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("alias"),
    )
    op.create_index("ix_subject_aliases_subject", "subject_aliases", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_subject_aliases_subject", table_name="subject_aliases")
    op.drop_table("subject_aliases")
