"""The data store over pyarrow.fs: a local folder, and an S3 store (moto's S3 server over real HTTP)."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.fs as pafs
import pytest
import sqlalchemy as sa
from alembic import command

from govshare import storage
from govshare.settings import get_settings
from govshare.store import alembic_config


def _s3_store(endpoint: str, tmp_path: Path, *, budget: int = 1 << 30) -> storage.Store:
    environ = {"AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}", "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
               "AWS_REGION": "eu-west-1"}
    bucket = f"govshare-{secrets.token_hex(6)}"
    store = storage.open_store(f"s3://{bucket}/exchange", cache_dir=tmp_path / "cache", cache_budget_bytes=budget,
                               endpoint_url=endpoint, environ=environ)
    pafs.S3FileSystem(access_key=environ["AWS_ACCESS_KEY_ID"], secret_key=environ["AWS_SECRET_ACCESS_KEY"], region="eu-west-1",
                      endpoint_override=endpoint, allow_bucket_creation=True).create_dir(bucket)
    return store


def _write(store: storage.Store, key: str, content: bytes) -> None:
    staged = store.staging_path(key, "test")
    staged.write_bytes(content)
    store.publish(staged, key)


def _objects(store: storage.Store) -> list[str]:
    infos = store.filesystem.get_file_info(pafs.FileSelector(store.root, recursive=True, allow_not_found=True))
    return sorted(info.path.removeprefix(store.root + "/") for info in infos if info.type == pafs.FileType.File)


def test_a_local_store_publishes_by_renaming_and_keys_stay_inside_it(tmp_path):
    store = storage.open_store(str(tmp_path / "data"), cache_dir=tmp_path / "cache", cache_budget_bytes=1 << 20)
    staged = store.staging_path("datasets/X/v000001.parquet", "upload")
    assert staged.parent == tmp_path / "data" / "datasets" / "X"  # beside its target: publishing is a rename
    staged.write_bytes(b"snapshot")
    assert not store.exists("datasets/X/v000001.parquet")
    assert store.publish(staged, "datasets/X/v000001.parquet") == 8
    assert not staged.exists()
    assert store.exists("datasets/X/v000001.parquet") and store.size("datasets/X/v000001.parquet") == 8
    assert store.local_path("datasets/X/v000001.parquet") == tmp_path / "data" / "datasets" / "X" / "v000001.parquet"
    with store.open("datasets/X/v000001.parquet") as source:
        assert source.read() == b"snapshot"
    store.delete("datasets/X/v000001.parquet")
    store.delete("datasets/X/v000001.parquet")  # twice: no error
    assert store.size("datasets/X/v000001.parquet") is None
    for bad in ("/etc/passwd", "../outside", "datasets/../../x", ""):
        with pytest.raises(storage.StoreError):
            store.exists(bad)


def test_on_s3_a_write_appears_whole_under_its_key_and_leaves_no_temporary(s3_endpoint, tmp_path):
    store = _s3_store(s3_endpoint, tmp_path)
    content = os.urandom(12 * 1024 * 1024)  # past one 5 MiB part: a multipart upload
    _write(store, "extracts/e1.parquet", content)
    assert _objects(store) == ["extracts/e1.parquet"]
    assert store.size("extracts/e1.parquet") == len(content)
    with store.open("extracts/e1.parquet") as source:
        assert source.read() == content
    assert b"".join(store.iter_bytes("extracts/e1.parquet", start=10, end=1000)) == content[10:1000]
    assert not list((tmp_path / "cache" / "staging").iterdir())  # the staged file moved into the read cache
    store.delete("extracts/e1.parquet")
    assert _objects(store) == [] and not store.exists("extracts/e1.parquet")


def test_an_interrupted_upload_is_never_visible_and_the_cleanup_job_removes_it(s3_endpoint, tmp_path):
    store = _s3_store(s3_endpoint, tmp_path)
    # What a process killed between the upload and its publication leaves: a tmp/ object, nothing else.
    with store.filesystem.open_output_stream(f"{store.root}/tmp/dead-upload.parquet") as sink:
        sink.write(b"half")
    _write(store, "datasets/X/v000001.parquet", b"whole")
    assert not store.exists("dead-upload.parquet")
    now = datetime.now(UTC)
    assert store.remove_stale_temporaries(now=now) == 0  # still fresh: perhaps being written
    assert store.remove_stale_temporaries(now=now + timedelta(hours=7)) == 1
    assert _objects(store) == ["datasets/X/v000001.parquet"]


def test_duckdb_reads_through_a_bounded_cache_that_evicts_the_least_recently_used(s3_endpoint, tmp_path):
    writer = _s3_store(s3_endpoint, tmp_path / "writer")
    reader = storage.Store(writer.filesystem, writer.root, cache_dir=tmp_path / "reader", cache_budget_bytes=2500, s3=writer.s3)
    for number in (1, 2, 3):
        _write(writer, f"datasets/X/v00000{number}.parquet", bytes([number]) * 1000)
    first = reader.local_path("datasets/X/v000001.parquet")
    assert first.is_relative_to(tmp_path / "reader") and first.read_bytes() == b"\x01" * 1000
    reader.local_path("datasets/X/v000002.parquet")
    os.utime(first, (1, 1))  # v1 used longest ago
    reader.local_path("datasets/X/v000003.parquet")  # 3,000 bytes > 2,500: one goes
    cached = sorted(path.name for path in (tmp_path / "reader" / "objects" / "datasets" / "X").iterdir())
    assert cached == ["v000002.parquet", "v000003.parquet"]
    assert reader.local_path("datasets/X/v000001.parquet").read_bytes() == b"\x01" * 1000  # fetched again on demand


def test_a_snapshots_lookup_store_is_evicted_with_it_never_before_it(s3_endpoint, tmp_path):
    store = _s3_store(s3_endpoint, tmp_path, budget=3000)
    for number in (1, 2):
        _write(store, f"datasets/X/v00000{number}.parquet", bytes([number]) * 1000)
    first = store.local_path("datasets/X/v000001.parquet")
    (first.parent / "v000001.keyed.duckdb").write_bytes(b"k" * 500)  # built from it, never touched since
    os.utime(first.parent / "v000001.keyed.duckdb", (1, 1))
    os.utime(first.parent / "v000002.parquet", (2, 2))
    store.local_path("datasets/X/v000001.parquet")  # used again: v1 and its lookup store are the recent ones
    _write(store, "datasets/X/v000003.parquet", b"\x03" * 1000)  # 3,500 bytes > 3,000: v2 goes, not v1's lookup store
    names = sorted(path.name for path in first.parent.iterdir())
    assert names == ["v000001.keyed.duckdb", "v000001.parquet", "v000003.parquet"]
    os.utime(first, (3, 3))
    os.utime(first.parent / "v000003.parquet", (4, 4))
    _write(store, "datasets/X/v000004.parquet", b"\x04" * 1000)  # v1 least recently used now: it goes with its lookup store
    assert sorted(path.name for path in first.parent.iterdir()) == ["v000003.parquet", "v000004.parquet"]


def test_a_presigned_url_is_what_botocore_signs_and_thes3_endpoint_serves_it(s3_endpoint, tmp_path):
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    store = _s3_store(s3_endpoint, tmp_path)
    _write(store, "sharing/f 1.parquet", b"shared bytes")
    request = AWSRequest(method="GET", url=f"{s3_endpoint}/{store.s3.bucket}/exchange/sharing/f%201.parquet")
    S3SigV4QueryAuth(Credentials(store.s3.access_key, store.s3.secret_key), "s3", "eu-west-1", expires=900).add_auth(request)
    theirs = request.prepare().url
    at = datetime.strptime(httpx.URL(theirs).params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)  # sign at the same moment
    ours = store.presigned_url("sharing/f 1.parquet", expires_seconds=900, now=at)
    assert ours.split("?")[0] == theirs.split("?")[0]
    assert dict(httpx.URL(ours).params) == dict(httpx.URL(theirs).params)
    fresh = store.presigned_url("sharing/f 1.parquet", expires_seconds=60)
    answer = httpx.get(fresh)
    assert answer.status_code == 200 and answer.content == b"shared bytes"


def test_a_local_store_cannot_presign(tmp_path):
    store = storage.open_store(str(tmp_path / "data"), cache_dir=tmp_path / "cache", cache_budget_bytes=1 << 20)
    with pytest.raises(storage.StoreError, match="S3"):
        store.presigned_url("extracts/x.csv", expires_seconds=60)


def test_relative_keys_from_absolute_paths():
    relative_key = _migration("0016_scale_store_keys").relative_key
    assert relative_key("/srv/a/data/datasets/X/v000001.parquet", data_dir="/srv/a/data") == "datasets/X/v000001.parquet"
    assert relative_key("/moved/elsewhere/data/extracts/e.csv", data_dir="/srv/a/data") == "extracts/e.csv"
    assert relative_key("/old/datasets/data/sharing/f.parquet", data_dir="/x") == "sharing/f.parquet"
    assert relative_key("datasets/X/v000001.parquet", data_dir="/srv/a/data") == "datasets/X/v000001.parquet"


def test_the_migration_turns_absolute_record_paths_into_store_keys(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GOVSHARE_HOME", str(home))
    monkeypatch.delenv("GOVSHARE_DATA_URL", raising=False)
    monkeypatch.delenv("GOVSHARE_DATA_DIR", raising=False)
    get_settings.cache_clear()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")  # no foreign keys enforced: version rows alone will do
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0015_ledger_batches")
            connection.execute(sa.text(
                "INSERT INTO dataset_versions (dataset_id, number, rows, source_format, path, size_bytes, sha256, items, quality, actor, created_at) "
                "VALUES (1, 1, 0, 'csv', :absolute, 0, '', '[]', '{}', 't', '2026-01-01'), "
                "(1, 2, 0, 'csv', 'datasets/X/v000002.parquet', 0, '', '[]', '{}', 't', '2026-01-01')"),
                {"absolute": f"{home.resolve()}/data/datasets/X/v000001.parquet"})
            command.upgrade(config, "head")
            paths = connection.execute(sa.text("SELECT path FROM dataset_versions ORDER BY number")).scalars().all()
    finally:
        engine.dispose()
        get_settings.cache_clear()
    assert paths == ["datasets/X/v000001.parquet", "datasets/X/v000002.parquet"]


def _migration(name: str):
    """A migration module, loaded from its file (migrations are not a package)."""
    import importlib.util
    from pathlib import Path

    import govshare

    path = Path(govshare.__file__).parent / "migrations" / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
