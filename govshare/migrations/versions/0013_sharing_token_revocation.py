"""sharing tokens: revoked one by one (when, and by whom), without revoking their grant

Revision ID: 0013_sharing_token_revocation
Revises: 0012_metric_rollups
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_sharing_token_revocation"
down_revision = "0012_metric_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sharing_tokens") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_by", sa.String(200), nullable=True))


def downgrade() -> None:
    # The older schema cannot say a token is revoked: its revoked tokens would work again, so they go.
    op.execute(sa.text("DELETE FROM sharing_tokens WHERE revoked_at IS NOT NULL"))
    with op.batch_alter_table("sharing_tokens") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
