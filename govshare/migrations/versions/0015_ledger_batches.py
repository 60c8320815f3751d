"""ledger batches: a retried batch of access ledger lines whose commit did land is not written twice

Revision ID: 0015_ledger_batches
Revises: 0014_directory_state
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_ledger_batches"
down_revision = "0014_directory_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_batches",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_batches"),
    )
    op.create_index("ix_ledger_batches_written_at", "ledger_batches", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_batches_written_at", table_name="ledger_batches")
    op.drop_table("ledger_batches")
