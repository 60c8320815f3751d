"""delta sharing: bearer tokens of extract grants' shares, and the grant-scoped files served

Revision ID: 0010_delta_sharing
Revises: 0009_connectors
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_delta_sharing"
down_revision = "0009_connectors"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sharing_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_sharing_tokens_grant_id_grants"),
        sa.PrimaryKeyConstraint("id", name="pk_sharing_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_sharing_tokens_token_hash"),
    )
    op.create_index("ix_sharing_tokens_grant_id", "sharing_tokens", ["grant_id"])
    op.create_table(
        "sharing_files",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("rows", BIGINT, nullable=False),
        sa.Column("size_bytes", BIGINT, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_sharing_files_grant_id_grants"),
        sa.PrimaryKeyConstraint("id", name="pk_sharing_files"),
        sa.UniqueConstraint("grant_id", "version_number", name="uq_sharing_files_grant_id"),
    )


def downgrade() -> None:
    op.drop_table("sharing_files")
    op.drop_index("ix_sharing_tokens_grant_id", table_name="sharing_tokens")
    op.drop_table("sharing_tokens")
