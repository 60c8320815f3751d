"""extracts: whether a CSV extract's formula-like text cells are neutralised (the default) or left verbatim

Revision ID: 0019_csv_formula_guard
Revises: 0018_login_throttles
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_csv_formula_guard"
down_revision = "0018_login_throttles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("extracts") as batch:
        batch.add_column(sa.Column("csv_formula_guard", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("extracts") as batch:
        batch.drop_column("csv_formula_guard")
