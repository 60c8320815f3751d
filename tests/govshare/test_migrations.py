"""The Alembic migrations build exactly the tables the models describe."""

from __future__ import annotations

import importlib
import importlib.util

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from govshare.db import Base
from govshare.store import head_revision, schema_revision

DOMAINS = ("directory", "approvals", "exchange", "evaluation", "connectors")


def _load_every_model() -> None:
    for domain in DOMAINS:
        if importlib.util.find_spec(domain) is not None and importlib.util.find_spec(f"{domain}.models") is not None:
            importlib.import_module(f"{domain}.models")


def test_the_store_is_at_the_newest_migration(database):
    assert schema_revision(database.engine) == head_revision()


def test_models_and_migrations_agree(database):
    _load_every_model()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
