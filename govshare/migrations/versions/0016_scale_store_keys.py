"""scale: records hold data-store keys, not local paths; job leases shared by replicas

Paths written before the data store was a pyarrow filesystem (local or S3) could be
absolute paths of one machine's data folder: they become keys relative to the store.
``job_leases`` lets one replica at a time run a periodic job that several run.

Revision ID: 0016_scale_store_keys
Revises: 0015_ledger_batches
Create Date: 2026-12-07
"""

import os
from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import op

revision = "0016_scale_store_keys"
down_revision = "0015_ledger_batches"
branch_labels = None
depends_on = None

TABLES = [("dataset_versions", "id"), ("extracts", "id"), ("sharing_files", "id")]


def _old_data_dir() -> str:
    from govshare.settings import get_settings

    settings = get_settings()
    return str(settings.data_dir or settings.resolved_home / "data") if not os.environ.get("GOVSHARE_DATA_URL", "").startswith("s3://") else ""


def relative_key(path: str, *, data_dir: str) -> str:
    """A record's path as a store key: an absolute path under the old data folder made relative to it.

    Kept here, frozen, so that this migration does the same thing forever.
    """
    if not path.startswith("/"):
        return path
    root = data_dir.rstrip("/") + "/"
    if path.startswith(root):
        return path[len(root):]
    # A data folder since moved: the layout below it is ours (datasets/CODE/FILE, extracts/FILE, sharing/FILE).
    parts = PurePosixPath(path).parts
    depth = {"datasets": 3, "extracts": 2, "sharing": 2}
    for index in range(len(parts) - 1, 0, -1):
        if depth.get(parts[index]) == len(parts) - index:
            return "/".join(parts[index:])
    return path


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    connection = op.get_bind()
    data_dir = _old_data_dir()
    for table, key in TABLES:
        rows = connection.execute(sa.text(f"SELECT {key}, path FROM {table} WHERE path LIKE '/%'")).all()
        for row_id, path in rows:
            connection.execute(sa.text(f"UPDATE {table} SET path = :path WHERE {key} = :id"),
                               {"path": relative_key(path, data_dir=data_dir), "id": row_id})


def downgrade() -> None:
    op.drop_table("job_leases")
