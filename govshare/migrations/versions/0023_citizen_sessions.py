"""citizen sessions: a web session is a staff member's (user_id) or a citizen's (citizen_id, from the identity provider's ID token)

Revision ID: 0023_citizen_sessions
Revises: 0022_consent_requests
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_citizen_sessions"
down_revision = "0022_consent_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("citizen_id", sa.String(64), nullable=True))
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch.create_check_constraint("ck_web_sessions_staff_or_citizen", "(user_id IS NULL) <> (citizen_id IS NULL)")
    op.create_index("ix_web_sessions_citizen_id", "web_sessions", ["citizen_id"])


def downgrade() -> None:
    # Citizens' sessions have no place in the older table: they end (the citizens sign in again after an upgrade).
    op.execute(sa.text("DELETE FROM web_sessions WHERE user_id IS NULL"))
    op.drop_index("ix_web_sessions_citizen_id", table_name="web_sessions")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_constraint("ck_web_sessions_staff_or_citizen", type_="check")
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("citizen_id")
