"""live services: a live dataset's encrypted provider credentials; each access ledger line's message digests and times

Revision ID: 0020_live_services
Revises: 0019_csv_formula_guard
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_live_services"
down_revision = "0019_csv_formula_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_credentials",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("auth_type", sa.String(40), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_live_credentials_dataset_id_datasets"),
        sa.PrimaryKeyConstraint("dataset_id", name="pk_live_credentials"),
    )
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answer_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        for column in ("answered_at", "requested_at", "answer_sha256", "request_sha256"):
            batch.drop_column(column)
    op.drop_table("live_credentials")
