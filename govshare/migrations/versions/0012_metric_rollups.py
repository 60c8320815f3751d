"""metric rollups: the access ledger summed per day, latency buckets, each grant's first line; covering indexes

Revision ID: 0012_metric_rollups
Revises: 0011_sync_runs
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0012_metric_rollups"
down_revision = "0011_sync_runs"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("dimension", sa.String(12), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        *[sa.Column(name, BIGINT, nullable=False)
          for name in ("calls", "rows", "interface_calls", "interface_server_errors", "errors")],
        sa.PrimaryKeyConstraint("day", "dimension", "key", name="pk_ledger_day_counts"),
    )
    op.create_table(
        "ledger_day_latencies",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("calls", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("day", "bucket", name="pk_ledger_day_latencies"),
    )
    op.create_table(
        "grant_first_lines",
        sa.Column("grant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("grant_id", name="pk_grant_first_lines"),
    )
    op.create_index("ix_access_log_latency_ms_at_kind", "access_log", ["latency_ms", "at", "kind"])
    op.create_index("ix_applications_filed_at_dataset_code", "applications", ["filed_at", "dataset_code"])
    op.create_index("ix_applications_decided_at_status", "applications",
                    ["decided_at", "status", "reason_code", "dataset_code", "filed_at"])
    # Back-fill from the lines written so far, with the same sums the ledger writer adds to.
    from exchange import rollups

    rollups.rebuild(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_index("ix_applications_decided_at_status", table_name="applications")
    op.drop_index("ix_applications_filed_at_dataset_code", table_name="applications")
    op.drop_index("ix_access_log_latency_ms_at_kind", table_name="access_log")
    op.drop_table("grant_first_lines")
    op.drop_table("ledger_day_latencies")
    op.drop_table("ledger_day_counts")
