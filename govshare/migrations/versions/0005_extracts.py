"""extracts and departments' public keys

Revision ID: 0005_extracts
Revises: 0004_exchange
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_extracts"
down_revision = "0004_exchange"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "extracts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("encrypt", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(500), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_extracts_grant_id_grants"),
        sa.PrimaryKeyConstraint("id", name="pk_extracts"),
    )
    op.create_index("ix_extracts_status", "extracts", ["status"])
    op.create_index("ix_extracts_grant_id", "extracts", ["grant_id"])
    op.create_table(
        "department_keys",
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_department_keys_department_code_departments"),
        sa.PrimaryKeyConstraint("department_code", name="pk_department_keys"),
    )


def downgrade() -> None:
    op.drop_table("department_keys")
    op.drop_table("extracts")
