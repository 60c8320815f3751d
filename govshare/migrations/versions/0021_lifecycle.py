"""grant lifecycle: a grant's pause (when, by whom, why); an application's delayed disclosure; each ledger line's purpose

Revision ID: 0021_lifecycle
Revises: 0020_live_services
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_lifecycle"
down_revision = "0020_live_services"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("pause_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("disclosure_delay_until", sa.Date(), nullable=True))
        batch.add_column(sa.Column("disclosure_basis", sa.Text(), nullable=True))
    op.create_index("ix_applications_disclosure_delay_until", "applications", ["disclosure_delay_until", "grant_id"])
    # Lines written before this revision keep no purpose: they show null.
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("purpose", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_applications_disclosure_delay_until", table_name="applications")
    # Plain ALTER TABLE ... DROP COLUMN (PostgreSQL, SQLite 3.35+): a batch copy of applications or grants would drop
    # a table that others' foreign keys name, which SQLite refuses.
    for table, columns in (("access_log", ("purpose",)), ("applications", ("disclosure_basis", "disclosure_delay_until")),
                           ("grants", ("pause_reason", "paused_by", "paused_at"))):
        for column in columns:
            op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
