"""An ended grant's files are erased: its extracts and its Delta Sharing files, with the record kept."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from exchange import jobs, retention
from exchange.models import Extract, SharingFile
from govshare import storage
from govshare import audit
from govshare.keys import KeyStore
from govshare.models import AuditEntry
from tests.exchange.test_delta_sharing import Sharing, app, port, server  # noqa: F401 (fixtures)
from tests.exchange.test_extracts import Extracts


@pytest.fixture
def sharing(client, factory, tmp_path, database, app, server):  # noqa: F811
    return Sharing(client, factory, tmp_path, database, app)


def _erase(world, today: date | None = None) -> int:
    return retention.erase_ended_grant_files(world.database, store=storage.for_settings(world.settings), today=today or date.today())


def _extract_row(database, extract_id: str) -> Extract:
    with database.transaction(write=False) as session:
        return session.get(Extract, extract_id)


def _erasures(database) -> list[tuple[str, str, dict]]:
    with database.transaction(write=False) as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.actor == retention.ACTOR).order_by(AuditEntry.seq)).scalars()
        return [(entry.action, entry.subject, json.loads(entry.details)) for entry in entries]


def _chain_ok(database) -> bool:
    with database.transaction(write=False) as session:
        return audit.verify(session).ok


def test_a_revoked_grants_extract_file_is_erased_and_its_record_kept(client, factory, tmp_path, database, settings):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="parquet")
    file = settings.resolved_data_dir / _extract_row(database, extract["id"]).path
    assert file.exists()

    assert _erase(world) == 0  # the grant is active: its file stays
    assert file.exists()

    assert client.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "service closed"},
                       headers=world.manager).status_code == 200
    assert _erase(world) == 1
    assert not file.exists()
    row = _extract_row(database, extract["id"])
    assert row.path is None and row.status == "done" and row.manifest == extract["manifest"]  # the record stays
    assert _erasures(database) == [("extract.erased", f"extract:{extract['id']}", {"grant": world.grant_id, "reason": "grant revoked"})]
    assert _chain_ok(database)
    assert _erase(world) == 0  # nothing twice
    # Its record says so, and offers no link; the old link stays refused, as from the revocation on.
    shown = client.get(f"/api/v1/extracts/{extract['id']}", headers=world.demander).json()
    assert (shown["status"], shown["erased"], shown["download_url"]) == ("done", True, None)
    assert client.get(extract["download_url"], headers=world.demander).status_code == 403


def test_an_extract_is_erased_the_day_after_its_grants_period_ends(client, factory, tmp_path, database, settings):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="csv")
    file = settings.resolved_data_dir / _extract_row(database, extract["id"]).path
    last_day = date.today() + timedelta(days=60)
    assert _erase(world, today=last_day) == 0
    assert file.exists()
    assert _erase(world, today=last_day + timedelta(days=1)) == 1
    assert not file.exists()
    assert _erasures(database)[0][2]["reason"] == "grant period ended"


def test_a_file_already_gone_is_recorded_as_erased_without_error(client, factory, tmp_path, database, settings):
    # As after a crash between removing the file and recording it: the next run completes the record.
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="parquet")
    (settings.resolved_data_dir / _extract_row(database, extract["id"]).path).unlink()
    client.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "service closed"}, headers=world.manager)
    assert _erase(world) == 1
    assert _extract_row(database, extract["id"]).path is None


def test_the_servers_job_erases_ended_grants_files(client, factory, tmp_path, database, settings):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="parquet")
    client.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "service closed"}, headers=world.manager)
    job = next(job for job in jobs.jobs(settings, KeyStore(settings.resolved_keys_dir)) if job.name == "ended-grant-files")
    assert job.run(database) == 1
    assert _extract_row(database, extract["id"]).path is None


def test_a_revoked_grants_sharing_files_are_erased_and_another_grants_kept(sharing, database):
    world = sharing
    other = world.granted(world.demander)
    assert world.query(world.profile(), {}).status_code == 200  # builds the grant's file
    assert world.query(world.profile(other), {}, grant_id=other).status_code == 200
    data_dir = world.app.state.settings.resolved_data_dir
    with database.transaction(write=False) as session:
        files = {row.grant_id: data_dir / row.path for row in session.execute(select(SharingFile)).scalars()}
    assert set(files) == {world.grant_id, other} and all(path.exists() for path in files.values())

    world.revoke()
    erased = retention.erase_ended_grant_files(database, store=storage.for_settings(world.app.state.settings), today=date.today())
    assert erased == 1
    assert not files[world.grant_id].exists() and files[other].exists()
    with database.transaction(write=False) as session:
        assert [row.grant_id for row in session.execute(select(SharingFile)).scalars()] == [other]
    (action, subject, details), = _erasures(database)
    assert (action, subject, details["reason"]) == ("sharing.file_erased", f"grant:{world.grant_id}", "grant revoked")
    assert _chain_ok(database)
    # The other grant still reads its table.
    assert world.query(world.profile(other), {}, grant_id=other).status_code == 200
