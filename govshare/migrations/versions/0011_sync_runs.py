"""sync runs: the process doing the sync and its heartbeat; extracts: the process building them

Revision ID: 0011_sync_runs
Revises: 0010_delta_sharing
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_sync_runs"
down_revision = "0010_delta_sharing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("extracts") as batch:
        batch.add_column(sa.Column("worker_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extracts") as batch:
        batch.drop_column("worker_pid")
        batch.drop_column("worker_host")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("pid")
        batch.drop_column("host")
