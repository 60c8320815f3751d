"""connectors: source bindings and sync runs

Revision ID: 0009_connectors
Revises: 0008_evaluation
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_connectors"
down_revision = "0008_evaluation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "source_bindings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("update_column", sa.String(200), nullable=True),
        sa.Column("key_column", sa.String(200), nullable=True),
        sa.Column("source_schema", sa.JSON(), nullable=True),
        sa.Column("watermark", sa.String(100), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_source_bindings_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_source_bindings"),
        sa.UniqueConstraint("dataset_id", name="uq_source_bindings_dataset_id"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("binding_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rows_read", BIGINT, nullable=True),
        sa.Column("rows_added", BIGINT, nullable=True),
        sa.Column("rows_changed", BIGINT, nullable=True),
        sa.Column("rows_removed", BIGINT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["binding_id"], ["source_bindings.id"], name="fk_sync_runs_binding_id_source_bindings"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
    )
    op.create_index("ix_sync_runs_binding_id_started_at", "sync_runs", ["binding_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_binding_id_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("source_bindings")
