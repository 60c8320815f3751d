"""login throttles: failed sign-ins per account and per address, shared by every replica

Revision ID: 0018_login_throttles
Revises: 0017_web_sessions
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_login_throttles"
down_revision = "0017_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttles"),
    )
    op.create_index("ix_login_throttles_first_failure_at", "login_throttles", ["first_failure_at"])


def downgrade() -> None:
    op.drop_index("ix_login_throttles_first_failure_at", table_name="login_throttles")
    op.drop_table("login_throttles")
