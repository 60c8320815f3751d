"""the access ledger names the extract a download delivered

Revision ID: 0007_ledger_extract
Revises: 0006_masks
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_ledger_extract"
down_revision = "0006_masks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("extract_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("extract_id")
