"""masks on applications and grants

Revision ID: 0006_masks
Revises: 0005_extracts
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_masks"
down_revision = "0005_extracts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("applications", "grants"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("masks", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    for table in ("grants", "applications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("masks")
