"""exchange: access ledger, ledger keys, intake records

Revision ID: 0004_exchange
Revises: 0003_approvals
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_exchange"
down_revision = "0003_approvals"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("service_item", sa.String(200), nullable=True),
        sa.Column("basis", sa.Text(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])
    op.create_index("ix_access_log_dataset_code_at", "access_log", ["dataset_code", "at"])
    op.create_index("ix_access_log_grant_id", "access_log", ["grant_id"])
    op.create_table(
        "access_log_keys",
        sa.Column("entry_id", BIGINT, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["access_log.id"], name="fk_access_log_keys_entry_id_access_log"),
        sa.PrimaryKeyConstraint("entry_id", "key", name="pk_access_log_keys"),
    )
    op.create_index("ix_access_log_keys_key", "access_log_keys", ["key"])
    op.create_table(
        "intake_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("consent_ref", sa.String(200), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("deposited_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_intake_records_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_intake_records"),
        sa.UniqueConstraint("dataset_id", "key", name="uq_intake_records_dataset_id_key"),
    )


def downgrade() -> None:
    for table in ("intake_records", "access_log_keys", "access_log"):
        op.drop_table(table)
