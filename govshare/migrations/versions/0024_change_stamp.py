"""lookup: the change stamp, one row changed with any change to the state an interface call checks

Revision ID: 0024_change_stamp
Revises: 0023_citizen_sessions
Create Date: 2026-12-07
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0024_change_stamp"
down_revision = "0023_citizen_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "change_stamp",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_stamp"),
    )
    op.bulk_insert(table, [{"id": 1, "stamp": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("change_stamp")
