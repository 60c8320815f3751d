"""Creating and upgrading a store: folders, signing keys, and the schema via Alembic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from govshare import storage
from govshare.db import Database
from govshare.keys import KeyStore
from govshare.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(engine: Engine) -> None:
    """Apply every migration not yet applied to the record store."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass(frozen=True)
class InitResult:
    home: Path
    database_url: str
    revision: str | None
    keys_created: bool


def initialise(settings: Settings) -> InitResult:
    """Create or migrate the store that ``settings`` names; safe to run again."""
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    storage.for_settings(settings)  # a local data folder is made now
    keystore = KeyStore(settings.resolved_keys_dir)
    keys_created = keystore.ensure()
    database = Database(settings.resolved_database_url, keystore=keystore)
    try:
        upgrade_schema(database.engine)
        revision = schema_revision(database.engine)
    finally:
        database.dispose()
    return InitResult(home, _redact(settings.resolved_database_url), revision, keys_created)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
