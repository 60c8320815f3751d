"""Alembic environment: runs on the connection handed over by ``govshare.store``."""

from alembic import context

import approvals.models  # noqa: F401  (applications, grants)
import directory.models  # noqa: F401  (the directory's tables)
import exchange.models  # noqa: F401  (ledger, intake)
import evaluation.models  # noqa: F401  (ratings, corrections)
import connectors.models  # noqa: F401  (source bindings, sync runs)
from govshare.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("govshare migrations run online only: use 'govshare init'")
run_migrations_online()
