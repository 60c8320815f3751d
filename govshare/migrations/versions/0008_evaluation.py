"""evaluation: ratings and correction requests

Revision ID: 0008_evaluation
Revises: 0007_ledger_extract
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_evaluation"
down_revision = "0007_ledger_extract"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(10), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("applicant_department", sa.String(32), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("service_item", sa.String(200), nullable=False),
        sa.Column("review_speed", sa.Integer(), nullable=True),
        sa.Column("data_quality", sa.Integer(), nullable=True),
        sa.Column("stability", sa.Integer(), nullable=True),
        sa.Column("application_quality", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], name="fk_ratings_application_id_applications"),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
        sa.UniqueConstraint("application_id", "party", name="uq_ratings_application_id_party"),
    )
    op.create_index("ix_ratings_dataset_code", "ratings", ["dataset_code"])
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("provider_department", sa.String(32), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("filed_by", sa.String(200), nullable=False),
        sa.Column("filed_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("answered_by", sa.String(200), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_corrections_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_corrections"),
    )
    op.create_index("ix_corrections_dataset_code_status", "corrections", ["dataset_code", "status"])
    op.create_index("ix_corrections_department_code", "corrections", ["department_code"])


def downgrade() -> None:
    op.drop_index("ix_corrections_department_code", table_name="corrections")
    op.drop_index("ix_corrections_dataset_code_status", table_name="corrections")
    op.drop_table("corrections")
    op.drop_index("ix_ratings_dataset_code", table_name="ratings")
    op.drop_table("ratings")
