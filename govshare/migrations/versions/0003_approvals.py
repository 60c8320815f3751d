"""approvals: applications, application events, grants, webhooks

Revision ID: 0003_approvals
Revises: 0002_directory
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_approvals"
down_revision = "0002_directory"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("provider_department", sa.String(32), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("applicant", sa.String(200), nullable=False),
        sa.Column("service_item", sa.String(200), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=True),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("justifications", sa.JSON(), nullable=False),
        sa.Column("row_filter", sa.JSON(), nullable=True),
        sa.Column("delivery", sa.String(20), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("inspection", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("filed_at", TS, nullable=True),
        sa.Column("inspection_due", TS, nullable=True),
        sa.Column("decision_due", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("reason_code", sa.String(40), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_applications_dataset_id_datasets"),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_applications_department_code_departments"),
        sa.PrimaryKeyConstraint("id", name="pk_applications"),
    )
    op.create_index("ix_applications_status_filed_at", "applications", ["status", "filed_at"])
    op.create_index("ix_applications_department_code", "applications", ["department_code"])
    op.create_index("ix_applications_dataset_id", "applications", ["dataset_id"])
    op.create_table(
        "application_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("applicant_department", sa.String(32), nullable=False),
        sa.Column("provider_department", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=True),
        sa.Column("reason_code", sa.String(40), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], name="fk_application_events_application_id_applications"),
        sa.PrimaryKeyConstraint("id", name="pk_application_events"),
    )
    op.create_index("ix_application_events_application_id", "application_events", ["application_id"])
    op.create_index("ix_application_events_kind_at", "application_events", ["kind", "at"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("row_filter", sa.JSON(), nullable=True),
        sa.Column("delivery", sa.String(20), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], name="fk_grants_application_id_applications"),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_grants_department_code_departments"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_grants_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.UniqueConstraint("application_id", name="uq_grants_application_id"),
    )
    op.create_index("ix_grants_department_code", "grants", ["department_code"])
    op.create_index("ix_grants_dataset_id", "grants", ["dataset_id"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_event_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_webhooks_department_code_departments"),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_department_code", "webhooks", ["department_code"])


def downgrade() -> None:
    for table in ("webhooks", "grants", "application_events", "applications"):
        op.drop_table(table)
