"""A served store that lives for a whole test module, for suites that make thousands of calls into one world."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from govshare.app import create_app
from govshare.db import Database
from govshare.keys import KeyStore
from govshare.settings import Settings, get_settings
from tests.conftest import ISSUER


@contextmanager
def served_store(store, folder: Path) -> Iterator[tuple[TestClient, Database, Settings]]:
    """A fresh, initialised store in ``folder`` (from the session's SQLite template or PostgreSQL schema),
    an app over it and an HTTP client. Only for module-scoped fixtures: tests that take the function-scoped
    ``settings`` empty the same PostgreSQL schema."""
    settings = Settings(home=folder / "home", database_url=store.fresh(folder), issuer=ISSUER, jobs_enabled=False)
    KeyStore(settings.resolved_keys_dir).ensure()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    get_settings.cache_clear()
    database = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    try:
        with TestClient(create_app(settings), base_url=ISSUER, raise_server_exceptions=False) as http:
            yield http, database, settings
    finally:
        database.dispose()
