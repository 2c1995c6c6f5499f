"""Transparency log: subject commitments, event MACs, Merkle tree nodes and checkpoints

Events recorded before this revision are re-hashed with a commitment to their personal fields
(see consentry.ledger.events.personal_commitment): no checkpoint could have been issued before
it, so nothing outside the database remembers the old hashes. Their MAC stays empty: the events
the log key authenticates start at the store's first ``keys.registered`` event.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json
import os

import sqlalchemy as sa
from alembic import op

from consentry.ledger.events import GENESIS_HASH, chain_hash, event_body, personal_commitment

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PERSONAL = ("subject", "actor", "idempotency_key")
_FIELDS = (
    "kind", "actor", "subject", "account", "purpose", "status", "policy_version",
    "notice_version", "language", "method",
)  # fmt: skip


def upgrade() -> None:
    op.add_column("events", sa.Column("nonce", sa.String(length=32), nullable=True))
    op.add_column("events", sa.Column("commitment", sa.String(length=64), nullable=True))
    op.add_column("events", sa.Column("mac", sa.String(length=64), nullable=True))
    op.create_table(
        "tlog_nodes",
        sa.Column("level", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    _rehash_existing()


def _rehash_existing() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT * FROM events ORDER BY seq")).mappings().all()
    prev = GENESIS_HASH
    for row in rows:
        nonce = os.urandom(16).hex()
        personal = {k: row[k] for k in _PERSONAL}
        commitment = personal_commitment(nonce, personal)
        content = {
            **{k: row[k] for k in _FIELDS},
            "categories": json.loads(row["categories"] or "[]"),
            "payload": json.loads(row["payload"]),
        }
        body = event_body(content, commitment, row["seq"], row["id"], row["at"])
        new_hash = chain_hash(prev, body)
        conn.execute(
            sa.text(
                "UPDATE events SET nonce = :nonce, commitment = :commitment, "
                "prev_hash = :prev, hash = :hash WHERE seq = :seq"
            ),
            {"nonce": nonce, "commitment": commitment, "prev": prev, "hash": new_hash,
             "seq": row["seq"]},
        )  # fmt: skip
        prev = new_hash
    if rows:
        conn.execute(sa.text("UPDATE ledger_head SET hash = :hash WHERE id = 1"), {"hash": prev})


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("tlog_nodes")
    op.drop_column("events", "mac")
    op.drop_column("events", "commitment")
    op.drop_column("events", "nonce")
