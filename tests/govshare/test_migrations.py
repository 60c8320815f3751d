"""The Alembic migrations build exactly the tables the models describe."""

from __future__ import annotations

import importlib
import importlib.util

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from exchange.sharing.service import token_hash
from govshare.db import Base
from govshare.store import alembic_config, head_revision, schema_revision, upgrade_schema

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


def test_sharing_token_revocation_downgrades_without_reviving_revoked_tokens(client, factory, tmp_path, database, app):
    """0013 down and up again: the revoked token is deleted (the older schema would let it work), the live one stays."""
    from tests.exchange.test_delta_sharing import Sharing

    world = Sharing(client, factory, tmp_path, database, app)
    kept, revoked = world.profile(), world.profile()
    with database.transaction(write=False) as session:
        ids = dict(session.execute(text("SELECT token_hash, id FROM sharing_tokens")).all())
    kept_id, revoked_id = ids[token_hash(kept["bearerToken"])], ids[token_hash(revoked["bearerToken"])]
    assert client.post(f"/api/v1/grants/{world.grant_id}/sharing-tokens/{revoked_id}/revoke", headers=world.demander).status_code == 200
    config = alembic_config()
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0012_metric_rollups")
        columns = {column["name"] for column in inspect(database.engine).get_columns("sharing_tokens")}
        assert "revoked_at" not in columns and "revoked_by" not in columns
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT id FROM sharing_tokens")).scalars().all() == [kept_id]
    finally:
        upgrade_schema(database.engine)
    assert schema_revision(database.engine) == head_revision()
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT id, revoked_at FROM sharing_tokens")).all() == [(kept_id, None)]
    test_models_and_migrations_agree(database)  # the round trip lost no constraint or index
    for token, status in ((kept, 200), (revoked, 401)):
        assert client.get("/delta-sharing/shares", headers={"Authorization": f"Bearer {token['bearerToken']}"}).status_code == status


def test_the_metric_rollups_migration_back_fills_what_the_ledger_writer_adds_up(database):
    """0012 down and up again over a ledger: its own SQL fills the rollups as the writer (exchange.rollups) did line by line."""
    from datetime import UTC, datetime

    from exchange.models import AccessLogEntry

    moments = [datetime(2026, 11, day, hour, tzinfo=UTC) for day in (1, 2) for hour in (0, 23)]
    lines = [
        AccessLogEntry(at=at, kind=kind, client_id="c", department_code=department, dataset_code=dataset, grant_id=grant,
                       service_item=item, rows=rows, status=status, latency_ms=latency)
        for at in moments
        for kind, department, dataset, grant, item, rows, status, latency in (
            ("lookup", "CAB", "PSB-HOUSEHOLD", 1, "birth", 1, 200, 3.5),
            ("lookup", "CAB", "PSB-HOUSEHOLD", 1, "birth", 0, 404, 0.004),
            ("query", "EDU", "PSB-HOUSEHOLD", 2, None, 20, 503, 812.0),
            ("extract", "EDU", "HRSS-INSURANCE", 3, "school", 5000, 200, None),
            ("stream", "CAB", "HRSS-INSURANCE", None, None, 0, 403, 12.25),
        )
    ]
    with database.transaction() as session:
        session.add_all(lines)  # rolled up line by line (exchange.rollups' after_flush hook)
    tables = ("ledger_day_counts", "ledger_day_latencies", "grant_first_lines")

    def rollups() -> dict[str, list[tuple]]:
        with database.engine.connect() as connection:
            return {table: sorted(tuple(str(value) for value in row) for row in connection.execute(text(f"SELECT * FROM {table}")))
                    for table in tables}

    written = rollups()
    assert len(written["grant_first_lines"]) == 3 and written["ledger_day_latencies"]
    config = alembic_config()
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0011_sync_runs")
        assert not set(tables) & set(inspect(database.engine).get_table_names())
    finally:
        upgrade_schema(database.engine)
    assert rollups() == written


def test_the_lifecycle_migration_leaves_older_ledger_lines_without_a_purpose_and_grants_unpaused(database):
    """Down to 0020 and up again: a line written under 0020 shows a null purpose; a grant then is not paused."""
    config = alembic_config()
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0020_live_services")
        assert "purpose" not in {column["name"] for column in inspect(database.engine).get_columns("access_log")}
        assert "paused_at" not in {column["name"] for column in inspect(database.engine).get_columns("grants")}
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO access_log (at, kind, client_id, department_code, dataset_code, rows, status) "
                                    "VALUES (CURRENT_TIMESTAMP, 'lookup', 'c1', 'CAB', 'PSB-HOUSEHOLD', 1, 200)"))
    finally:
        upgrade_schema(database.engine)
    assert schema_revision(database.engine) == head_revision()
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT purpose FROM access_log")).scalars().all() == [None]


def test_citizen_sessions_downgrade_ends_them_and_keeps_the_staff_s(database):
    """0023_citizen_sessions down and up again: citizens' sessions end (the older table has no place for them),
    a staff member's stays."""
    from datetime import timedelta

    from govshare.db import utcnow

    now = utcnow()
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO departments (code, name, created_at) VALUES ('DATA', 'Data office', :now)"), {"now": now})
        connection.execute(text("INSERT INTO users (name, password_hash, roles, department_code, created_at) "
                                "VALUES ('maria', 'x', '[\"manager\"]', 'DATA', :now)"), {"now": now})
        user_id = connection.execute(text("SELECT id FROM users")).scalar_one()
        for id_hash, user, citizen in (("a" * 64, user_id, None), ("b" * 64, None, "110101199003078515")):
            connection.execute(text("INSERT INTO web_sessions (id_hash, user_id, citizen_id, created_at, expires_at) "
                                    "VALUES (:id_hash, :user, :citizen, :now, :later)"),
                               {"id_hash": id_hash, "user": user, "citizen": citizen, "now": now, "later": now + timedelta(hours=8)})
    config = alembic_config()
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            before = ScriptDirectory.from_config(config).get_revision("0023_citizen_sessions").down_revision
            command.downgrade(config, before)  # to the revision before
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT id_hash, user_id FROM web_sessions")).all() == [("a" * 64, user_id)]
            assert "citizen_id" not in {column["name"] for column in inspect(connection).get_columns("web_sessions")}
    finally:
        upgrade_schema(database.engine)
    assert schema_revision(database.engine) == head_revision()
