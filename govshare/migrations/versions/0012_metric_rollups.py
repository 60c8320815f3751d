"""metric rollups: the access ledger summed per day, latency buckets, each grant's first line; covering indexes

Revision ID: 0012_metric_rollups
Revises: 0011_sync_runs
Create Date: 2026-12-03
"""

import bisect
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012_metric_rollups"
down_revision = "0011_sync_runs"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The rollups' meaning as of this revision, frozen here: a migration does the same thing
# forever, whatever exchange.rollups (the writer's code) becomes later.
INTERFACE_KINDS = "('lookup', 'query', 'stream')"
DIMENSIONS = {"dataset": "dataset_code", "department": "department_code", "service_item": "service_item"}
LATENCY_BOUNDS = [0.0, *(0.01 * 1.02**step for step in range(1050))]
READ_CHUNK = 50_000


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
    _back_fill(op.get_bind())


def _back_fill(connection: sa.Connection) -> None:
    """The three rollup tables from every ledger line: counts and first lines summed by the database,
    latency buckets placed here (2% wide, the first open below, the last open above)."""
    # PostgreSQL keeps a timestamp with its zone; SQLite keeps UTC as text, whose first ten characters are the day.
    day = """CAST(timezone('UTC', "at") AS date)""" if connection.dialect.name == "postgresql" else 'date("at")'
    for dimension, column in DIMENSIONS.items():
        connection.execute(sa.text(f"""
            INSERT INTO ledger_day_counts ("day", "dimension", "key", "calls", "rows", "interface_calls", "interface_server_errors", "errors")
            SELECT {day}, :dimension, COALESCE("{column}", ''), count(*), COALESCE(sum("rows"), 0),
                   sum(CASE WHEN "kind" IN {INTERFACE_KINDS} THEN 1 ELSE 0 END),
                   sum(CASE WHEN "kind" IN {INTERFACE_KINDS} AND "status" >= 500 THEN 1 ELSE 0 END),
                   sum(CASE WHEN "status" >= 500 OR ("status" >= 400 AND "status" <> 404) THEN 1 ELSE 0 END)
            FROM access_log GROUP BY {day}, COALESCE("{column}", '')"""), {"dimension": dimension})
    connection.execute(sa.text("""
        INSERT INTO grant_first_lines ("grant_id", "first_at")
        SELECT "grant_id", min("at") FROM access_log WHERE "grant_id" IS NOT NULL GROUP BY "grant_id" """))
    lines = sa.table("access_log", sa.column("id", sa.Integer()), sa.column("at", TS), sa.column("kind", sa.String()),
                     sa.column("latency_ms", sa.Float()))
    measured = (sa.select(lines.c.id, lines.c.at, lines.c.latency_ms)
                .where(lines.c.kind.in_(("lookup", "query", "stream")), lines.c.latency_ms.is_not(None)).order_by(lines.c.id))
    latencies: dict[tuple[date, int], int] = {}
    after = None
    while True:  # in pages by id, so memory holds the counts, not the ledger
        page = connection.execute((measured if after is None else measured.where(lines.c.id > after)).limit(READ_CHUNK)).all()
        for _, at, latency in page:
            at = datetime.fromisoformat(at) if isinstance(at, str) else at
            day_of = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()
            bucket = (day_of, max(0, bisect.bisect_right(LATENCY_BOUNDS, latency) - 1))
            latencies[bucket] = latencies.get(bucket, 0) + 1
        if len(page) < READ_CHUNK:
            break
        after = page[-1].id
    rows = [{"day": day_of, "bucket": bucket, "calls": calls} for (day_of, bucket), calls in sorted(latencies.items())]
    buckets = sa.table("ledger_day_latencies", sa.column("day", sa.Date()), sa.column("bucket", sa.Integer()),
                       sa.column("calls", sa.BigInteger()))
    for start in range(0, len(rows), READ_CHUNK):
        connection.execute(sa.insert(buckets), rows[start:start + READ_CHUNK])


def downgrade() -> None:
    op.drop_index("ix_applications_decided_at_status", table_name="applications")
    op.drop_index("ix_applications_filed_at_dataset_code", table_name="applications")
    op.drop_index("ix_access_log_latency_ms_at_kind", table_name="access_log")
    op.drop_table("grant_first_lines")
    op.drop_table("ledger_day_latencies")
    op.drop_table("ledger_day_counts")
