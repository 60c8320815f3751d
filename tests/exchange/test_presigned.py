"""GOVSHARE_DOWNLOADS=presigned on an S3 data store (moto's S3 server): extracts and Delta Sharing files are fetched
straight from the store through short-lived pre-signed URLs, and each delivery is still on the ledger."""

from __future__ import annotations

import hashlib
import json
import secrets

import delta_sharing
import httpx
import pyarrow.fs as pafs
import pytest
from sqlalchemy import select

from exchange.models import AccessLogEntry
from govshare.settings import Settings, get_settings
from tests.exchange.test_delta_sharing import Sharing, _expected, _records, app, port, server  # noqa: F401 (fixtures)
from tests.exchange.test_extracts import Extracts


@pytest.fixture
def settings(settings, s3_endpoint, monkeypatch) -> Settings:
    """The test's store, with its data on a fresh bucket of the S3 server and downloads pre-signed."""
    access_key, secret_key, bucket = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30), f"gs-{secrets.token_hex(6)}"
    pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, region="us-east-1", endpoint_override=s3_endpoint,
                      allow_bucket_creation=True).create_dir(bucket)
    for name, value in {"GOVSHARE_DATA_URL": f"s3://{bucket}/data", "GOVSHARE_S3_ENDPOINT_URL": s3_endpoint,
                        "GOVSHARE_DOWNLOADS": "presigned", "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return Settings()


def _ledger(app, **where) -> list[AccessLogEntry]:
    app.state.ledger.flush()
    with app.state.database.transaction(write=False) as session:
        return list(session.execute(select(AccessLogEntry).filter_by(**where)).scalars())


def test_an_extract_download_redirects_to_a_presigned_url_of_the_store_and_is_on_the_ledger(client, factory, tmp_path, database,
                                                                                              settings, app):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="csv")
    answer = client.get(extract["download_url"], headers=world.demander, follow_redirects=False)
    assert answer.status_code == 307
    location = answer.headers["location"]
    assert location.startswith(settings.s3_endpoint_url) and "X-Amz-Signature=" in location
    fetched = httpx.get(location)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == extract["manifest"]["sha256"]
    assert [line.kind for line in _ledger(app, extract_id=extract["id"])] == ["extract"]
    assert not list(settings.resolved_data_dir.rglob("*.csv"))  # the file lives in the store, not on this disk
    # The link's checks still come first: another department gets no redirect.
    assert client.get(extract["download_url"], headers=world.stranger, follow_redirects=False).status_code in (403, 404)


def test_the_delta_sharing_client_reads_files_from_presigned_urls_of_the_store(client, factory, tmp_path, database, app, server,
                                                                                settings):
    world = Sharing(client, factory, tmp_path, database, app)
    profile = world.profile()
    lines = [json.loads(line) for line in world.query(profile, {}).text.splitlines()]
    url = next(line["file"]["url"] for line in lines if "file" in line)
    assert url.startswith(settings.s3_endpoint_url) and "X-Amz-Expires=900" in url
    frame = delta_sharing.load_as_pandas(world.table_url(world.profile_file(profile)))
    assert _records(frame) == _expected(world.source)
    assert len(_ledger(app, kind="extract")) == 2  # the query above and the client's: each handed a file out


def test_an_ended_grants_file_leaves_no_copy_in_any_replicas_cache(client, factory, tmp_path, database, settings, app):
    from datetime import date

    from exchange import retention
    from govshare import storage

    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="csv")
    key = f"extracts/{extract['id']}.csv"
    this_replica = storage.for_settings(settings)
    cached = settings.resolved_cache_dir / "objects" / key
    assert cached.exists()  # the builder kept a copy to serve
    revoked = client.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "service ended"}, headers=world.manager)
    assert revoked.status_code == 200, revoked.text
    # The erasure job ran on another replica: the object is gone from the store, this replica's copy is not yet.
    other_replica = storage.open_store(settings.resolved_data_url, cache_dir=tmp_path / "other-cache", cache_budget_bytes=1 << 30,
                                       endpoint_url=settings.s3_endpoint_url)
    assert retention.erase_ended_grant_files(database, store=other_replica, today=date.today()) == 1
    assert not this_replica.exists(key) and cached.exists()
    assert retention.drop_erased_copies(database, store=this_replica) == 1
    assert not cached.exists()
    assert retention.drop_erased_copies(database, store=this_replica) == 0


def test_a_paused_grant_gets_no_presigned_redirect_and_resumed_it_does(client, factory, tmp_path, database, settings, app):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="csv")
    paused = client.post(f"/api/v1/grants/{world.grant_id}/pause", json={"reason": "under correction"}, headers=world.manager)
    assert paused.status_code == 200, paused.text
    refused = client.get(extract["download_url"], headers=world.demander, follow_redirects=False)
    assert refused.status_code == 403 and refused.json()["type"] == "urn:govshare:problem:grant-paused"
    assert "location" not in refused.headers and _ledger(app, extract_id=extract["id"]) == []
    assert client.post(f"/api/v1/grants/{world.grant_id}/resume", headers=world.manager).status_code == 200
    answer = client.get(extract["download_url"], headers=world.demander, follow_redirects=False)
    assert answer.status_code == 307 and "X-Amz-Signature=" in answer.headers["location"]
