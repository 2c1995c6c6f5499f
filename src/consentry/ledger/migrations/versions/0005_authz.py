"""invitations and server-side web sessions

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # placeholder, filled in by the work on issue 9


def downgrade() -> None:
    pass
