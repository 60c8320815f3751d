"""directory state: a stamp that changes with every change to the datasets (search's in-memory columns follow it)

Revision ID: 0014_directory_state
Revises: 0013_sharing_token_revocation
Create Date: 2026-12-04
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0014_directory_state"
down_revision = "0013_sharing_token_revocation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "directory_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_state"),
    )
    op.bulk_insert(table, [{"id": 1, "stamp": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("directory_state")
