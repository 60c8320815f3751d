"""Fixtures of the connectors' tests: real source tables on this machine's PostgreSQL and MariaDB."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from govshare.settings import get_settings
from tests.factories import DirectoryFactory

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass
class SourceDatabase:
    """A source database a department keeps its data in: an admin engine and the URL (with a password) to bind."""

    name: str
    engine: Engine
    url: str  # carries the password the binding must store encrypted
    password: str

    def table_name(self) -> str:
        return f"src_{uuid.uuid4().hex[:10]}"

    def execute(self, *statements: str, **params) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement), params)


@pytest.fixture(autouse=True)
def outbound_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP and S3 test servers listen on 127.0.0.1, which outbound calls reach only when the allowlist names it."""
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def _postgresql_source() -> Iterator[SourceDatabase]:
    # The server trusts local connections, so any password is accepted: enough to prove it is kept secret.
    password = f"pg-{secrets.token_hex(8)}"
    engine = create_engine(POSTGRES_URL)
    url = make_url(POSTGRES_URL).set(password=password).render_as_string(hide_password=False)
    yield SourceDatabase("postgresql", engine, url, password)
    engine.dispose()


@pytest.fixture(scope="session")
def _mariadb_source() -> Iterator[SourceDatabase]:
    user, password = f"gs_{secrets.token_hex(4)}", f"my-{secrets.token_hex(8)}"
    engine = create_engine(MARIADB_URL)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"))
        connection.execute(text(f"GRANT ALL ON test.* TO '{user}'@'127.0.0.1'"))
    url = make_url(MARIADB_URL).set(username=user, password=password).render_as_string(hide_password=False)
    yield SourceDatabase("mariadb", engine, url, password)
    with engine.begin() as connection:
        connection.execute(text(f"DROP USER '{user}'@'127.0.0.1'"))
    engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def source_db(request) -> SourceDatabase:
    return request.getfixturevalue(f"_{request.param}_source")


@pytest.fixture
def source_table(source_db: SourceDatabase) -> Iterator[str]:
    """A fresh household table in the source database, dropped after the test."""
    name = source_db.table_name()
    stamp = "TIMESTAMP(6) NULL" if source_db.name == "mariadb" else "TIMESTAMP"
    source_db.execute(
        f"CREATE TABLE {name} (citizen_id VARCHAR(18) PRIMARY KEY, name VARCHAR(100), district VARCHAR(10), "
        f"birth_date DATE, updated_at {stamp}, internal_note VARCHAR(100))"
    )
    yield name
    source_db.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def directory(factory) -> DirectoryFactory:
    return DirectoryFactory(factory)
