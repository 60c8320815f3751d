"""Fixtures shared by every suite: a fresh store per test, an app over it, factories.

The record store is SQLite by default and PostgreSQL when GOVSHARE_TEST_DATABASE_URL
is set. PostgreSQL runs get a private schema, migrated once and emptied between tests;
when the variable is set and the server does not answer, the run fails (never skips).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, make_url, text
from starlette.testclient import TestClient

from govshare.app import create_app
from govshare.db import Database, create_db_engine
from govshare.keys import KeyStore
from govshare.settings import Settings, get_settings
from govshare.store import upgrade_schema
from tests.factories import Factory

TEST_DATABASE_URL = os.environ.get("GOVSHARE_TEST_DATABASE_URL")
ISSUER = "http://localhost"


class _PostgresStore:
    """A private schema in the test database, migrated once, emptied per test."""

    def __init__(self, url: str) -> None:
        self.schema = f"govshare_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # fails loudly when PostgreSQL is down
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.admin_url = url
        self.url = make_url(url).update_query_dict({"options": f"-csearch_path={self.schema}"}).render_as_string(hide_password=False)
        engine = create_db_engine(self.url)
        upgrade_schema(engine)
        self.tables = [name for name in inspect(engine).get_table_names() if name != "alembic_version"]
        self.engine = engine

    def fresh(self, tmp_path: Path) -> str:
        with self.engine.begin() as connection:
            tables = ", ".join(f'"{name}"' for name in self.tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            connection.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :zero)"), {"zero": "0" * 64})
            connection.execute(text("INSERT INTO directory_state (id, stamp) VALUES (1, :stamp)"), {"stamp": uuid.uuid4().hex})
            connection.execute(text("INSERT INTO change_stamp (id, stamp) VALUES (1, :stamp)"), {"stamp": uuid.uuid4().hex})
        return self.url

    def close(self) -> None:
        self.engine.dispose()
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        admin.dispose()


class _SqliteStore:
    """A migrated template file, copied for each test (much faster than migrating each time)."""

    def __init__(self, folder: Path) -> None:
        self.template = folder / "template.db"
        engine = create_db_engine(f"sqlite:///{self.template}")
        upgrade_schema(engine)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()

    def fresh(self, tmp_path: Path) -> str:
        target = tmp_path / "govshare.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def _store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_PostgresStore | _SqliteStore]:
    store = _PostgresStore(TEST_DATABASE_URL) if TEST_DATABASE_URL else _SqliteStore(tmp_path_factory.mktemp("template"))
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path, _store: _PostgresStore | _SqliteStore, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a fresh, initialised store for this test."""
    home = tmp_path / "home"
    url = _store.fresh(tmp_path)
    # Background jobs are driven by the tests themselves, deterministically.
    values = {"HOME": str(home), "DATABASE_URL": url, "ISSUER": ISSUER, "JOBS_ENABLED": "false"}
    for key, value in values.items():
        monkeypatch.setenv(f"GOVSHARE_{key}", value)
    get_settings.cache_clear()
    configured = Settings()
    KeyStore(configured.resolved_keys_dir).ensure()
    configured.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    yield configured
    get_settings.cache_clear()


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    """The test's record store, for arranging data and checking what was written."""
    db = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    yield db
    db.dispose()


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """An httpx client over the ASGI app (raising nothing: errors come back as responses)."""
    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def factory(database: Database, client: TestClient) -> Factory:
    return Factory(database, client)


def pytest_report_header(config: pytest.Config) -> str:
    backend = make_url(TEST_DATABASE_URL).render_as_string(hide_password=True) if TEST_DATABASE_URL else "SQLite (embedded default)"
    return f"govshare record store under test: {backend}"




CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for browsers; yields its base URL."""
    from tests.servers import in_thread

    with in_thread(app) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; fails (never skips) when it is missing."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshot(request):
    """Save a screenshot of ``page`` under test-artifacts/ named after the test."""
    ARTIFACTS.mkdir(exist_ok=True)

    def _save(page, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _save


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 protocol server (moto's server mode) on a free loopback port, for a module's tests; yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
