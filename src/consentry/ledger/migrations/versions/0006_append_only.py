"""the events table refuses UPDATE, DELETE and TRUNCATE

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder, filled in by the work on issue 9


def downgrade() -> None:
    pass
