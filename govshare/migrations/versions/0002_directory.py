"""directory: datasets, dataset revisions, dataset versions, search terms

Revision ID: 0002_directory
Revises: 0001_foundation
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_directory"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TERM = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("share_type", sa.String(20), nullable=False),
        sa.Column("open_type", sa.String(20), nullable=False),
        sa.Column("update_frequency", sa.String(20), nullable=False),
        sa.Column("offers_extract", sa.Boolean(), nullable=False),
        sa.Column("offers_interface", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_datasets_department_code_departments"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("code", name="uq_datasets_code"),
    )
    # Covering indexes: search counts, facets and pages read no table rows.
    op.create_index(
        "ix_datasets_status_department_code", "datasets",
        ["status", "department_code", "code", "domain", "share_type", "offers_extract", "offers_interface"],
    )
    op.create_index(
        "ix_datasets_status_domain", "datasets",
        ["status", "domain", "share_type", "department_code", "offers_extract", "offers_interface", "code"],
    )
    op.create_index(
        "ix_datasets_status_share_type", "datasets",
        ["status", "share_type", "domain", "department_code", "offers_extract", "offers_interface", "code"],
    )
    op.create_index(
        "ix_datasets_id_filters", "datasets",
        ["id", "status", "department_code", "domain", "share_type", "offers_extract", "offers_interface", "code"],
    )
    op.create_table(
        "dataset_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_revisions_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_revisions"),
        sa.UniqueConstraint("dataset_id", "revision", name="uq_dataset_revisions_dataset_id_revision"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("rows", BIGINT, nullable=False),
        sa.Column("source_format", sa.String(20), nullable=False),
        sa.Column("source_name", sa.String(300), nullable=True),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("size_bytes", BIGINT, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_versions_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
        sa.UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_dataset_id_number"),
    )
    op.create_table(
        "dataset_terms",
        sa.Column("term", TERM, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_dataset_terms_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("term", "dataset_id", name="pk_dataset_terms"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_dataset_terms_dataset_id", "dataset_terms", ["dataset_id"])


def downgrade() -> None:
    for table in ("dataset_terms", "dataset_versions", "dataset_revisions", "datasets"):
        op.drop_table(table)
