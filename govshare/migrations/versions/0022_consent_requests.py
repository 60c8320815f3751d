"""citizen control: consents, explicit requests with their preview; the consent each ledger key and each delivered file's
citizen was delivered under, and the consents a Delta Sharing file was built under

Revision ID: 0022_consent_requests
Revises: 0021_lifecycle
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_consent_requests"
down_revision = "0021_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("citizen_id", sa.String(64), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("given_by", sa.String(200), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_consents_department_code_departments"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_consents_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
    )
    op.create_index("ix_consents_citizen_id_dataset_id_department_code", "consents", ["citizen_id", "dataset_id", "department_code"])
    op.create_index("ix_consents_dataset_id_department_code_status", "consents", ["dataset_id", "department_code", "status"])
    op.create_table(
        "citizen_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("citizen_id", sa.String(64), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("dataset_code", sa.String(64), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("preview", sa.JSON(), nullable=True),
        sa.Column("consent_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_citizen_requests_department_code_departments"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_citizen_requests_dataset_id_datasets"),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_citizen_requests_grant_id_grants"),
        sa.PrimaryKeyConstraint("id", name="pk_citizen_requests"),
    )
    op.create_index("ix_citizen_requests_citizen_id", "citizen_requests", ["citizen_id"])
    op.create_index("ix_citizen_requests_department_code", "citizen_requests", ["department_code"])
    with op.batch_alter_table("access_log_keys") as batch:
        batch.add_column(sa.Column("consent_id", sa.Integer(), nullable=True))
    op.create_table(
        "delivered_consents",
        sa.Column("file_id", sa.String(36), nullable=False),
        sa.Column("citizen_id", sa.String(64), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "citizen_id", name="pk_delivered_consents"),
    )
    with op.batch_alter_table("sharing_files") as batch:
        batch.add_column(sa.Column("consent_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sharing_files") as batch:
        batch.drop_column("consent_digest")
    op.drop_table("delivered_consents")
    with op.batch_alter_table("access_log_keys") as batch:
        batch.drop_column("consent_id")
    op.drop_index("ix_citizen_requests_department_code", table_name="citizen_requests")
    op.drop_index("ix_citizen_requests_citizen_id", table_name="citizen_requests")
    op.drop_table("citizen_requests")
    op.drop_index("ix_consents_dataset_id_department_code_status", table_name="consents")
    op.drop_index("ix_consents_citizen_id_dataset_id_department_code", table_name="consents")
    op.drop_table("consents")
