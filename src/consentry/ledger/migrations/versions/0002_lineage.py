"""lineage: datasets built by the gate, the subjects in them, models trained on them

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("as_of", sa.String(length=32), nullable=False),
        sa.Column("as_of_us", sa.BigInteger(), nullable=False),
        sa.Column("policy_version", sa.Text(), nullable=True),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
        sa.Column("ledger_hash", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("input_items", sa.BigInteger(), nullable=False),
        sa.Column("output_items", sa.BigInteger(), nullable=False),
        sa.Column("subjects", sa.BigInteger(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("output_sha256", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"], unique=False)
    op.create_table(
        "dataset_subjects",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("subject", "dataset_id"),
    )
    op.create_index("ix_dataset_subjects_dataset", "dataset_subjects", ["dataset_id"], unique=False)
    op.create_table(
        "models",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_models_name", "models", ["name"], unique=False)
    op.create_table(
        "model_datasets",
        sa.Column("model_id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "dataset_id"),
    )
    op.create_index("ix_model_datasets_dataset", "model_datasets", ["dataset_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_model_datasets_dataset", table_name="model_datasets")
    op.drop_table("model_datasets")
    op.drop_index("ix_models_name", table_name="models")
    op.drop_table("models")
    op.drop_index("ix_dataset_subjects_dataset", table_name="dataset_subjects")
    op.drop_table("dataset_subjects")
    op.drop_index("ix_datasets_name", table_name="datasets")
    op.drop_table("datasets")
