"""A record store held by another writer past its timeout: a 503 store-busy with Retry-After, never a 500.

The embedded SQLite store is what has the single write lock, so this test runs its own
SQLite store whichever backend the rest of the suite uses.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from starlette.testclient import TestClient

from govshare.app import create_app
from govshare.db import Database
from govshare.keys import KeyStore
from govshare.settings import Settings, get_settings
from govshare.store import initialise
from tests.conftest import ISSUER
from tests.factories import Factory, dataset_document


@pytest.fixture
def sqlite_settings(tmp_path, monkeypatch) -> Settings:
    values = {"HOME": str(tmp_path / "home"), "DATABASE_URL": f"sqlite:///{tmp_path / 'busy.db'}", "ISSUER": ISSUER,
              "JOBS_ENABLED": "false", "SQLITE_BUSY_TIMEOUT_SECONDS": "0.5"}
    for key, value in values.items():
        monkeypatch.setenv(f"GOVSHARE_{key}", value)
    get_settings.cache_clear()
    settings = Settings()
    initialise(settings)  # migrates the store and generates its keys
    yield settings
    get_settings.cache_clear()


def test_a_write_that_waits_past_the_busy_timeout_is_a_503_store_busy_and_writes_nothing(sqlite_settings, tmp_path):
    app = create_app(sqlite_settings)
    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False) as client:
        database = Database(sqlite_settings.resolved_database_url, keystore=KeyStore(sqlite_settings.resolved_keys_dir))
        provider = Factory(database, client).caller("PSB", "provider")
        other_writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            started = time.monotonic()
            refused = client.post("/api/v1/datasets", json=dataset_document(), headers=provider)
            waited = time.monotonic() - started
        finally:
            other_writer.execute("ROLLBACK")
            other_writer.close()
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:govshare:problem:store-busy"
        assert "busy" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert 0.4 < waited < 10  # it waited for the lock (GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS), then gave up
        assert client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=provider).status_code == 404  # nothing half-written

        # Once the other writer is done, the same request goes through.
        assert client.post("/api/v1/datasets", json=dataset_document(), headers=provider).status_code == 201
        database.dispose()
