"""The data store: one layer over pyarrow.fs for every file the data plane writes or reads.

``GOVSHARE_DATA_URL`` is a local folder (the embedded default, ``GOVSHARE_HOME/data``) or
``s3://BUCKET/PREFIX`` on an S3-compatible store (``GOVSHARE_S3_ENDPOINT_URL``, the standard
``AWS_*`` credentials). Records hold keys relative to the store (``datasets/X/v000001.parquet``),
never a machine's path, so any replica reads what any other wrote.

Writes are atomic. A writer fills a local staging file (``staging_path``) and ``publish``es
it: locally an ``os.replace`` into place; on S3 an upload under ``tmp/`` (multipart for big
files, which pyarrow's output stream does by itself), then a server-side copy to the final
key and the removal of the temporary. An upload interrupted midway leaves at most a ``tmp/``
object that no record names; ``remove_stale_temporaries`` (a job) deletes those.

DuckDB reads local files (its httpfs extension cannot be installed offline), so on S3
``local_path`` fetches an object once into a bounded cache under ``GOVSHARE_CACHE_DIR``:
objects are immutable (a snapshot, an extract, a shared file is never rewritten under its
key), so a cached copy never goes stale; least recently used copies are evicted beyond the
disk budget. A replica's disk thus holds caches only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, urlsplit

import pyarrow.fs as pafs

from govshare import processes

log = logging.getLogger("govshare.storage")
CHUNK = 1024 * 1024
TEMP_PREFIX = "tmp"
STALE_TEMPORARY = _dt.timedelta(hours=6)


class StoreError(Exception):
    """A key that cannot name an object of the store (absolute, or climbing out with '..')."""


def check_key(key: str) -> str:
    """``key`` if it is a plain relative key inside the store."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise StoreError(f"not a key inside the data store: {key!r}")
    return str(path)


@dataclass(frozen=True)
class S3Location:
    """Where and how to reach an S3-compatible store (what a pre-signed URL needs)."""

    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None


class Store:
    """Objects under one root of a pyarrow filesystem, with a local cache for readers that need a file."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, *, cache_dir: Path, cache_budget_bytes: int,
                 s3: S3Location | None = None) -> None:
        self.filesystem, self.root = filesystem, root.rstrip("/")
        self.cache_dir, self.cache_budget_bytes, self.s3 = cache_dir, cache_budget_bytes, s3
        self._cache_lock = threading.Lock()
        self._derived: dict[tuple[Path, str], Path] = {}

    @property
    def is_local(self) -> bool:
        return self.s3 is None

    def _full(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    # --- reading --------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object ``key`` (FileNotFoundError when absent)."""
        return self.filesystem.open_input_stream(self._full(key))

    def exists(self, key: str) -> bool:
        return self.filesystem.get_file_info(self._full(key)).type == pafs.FileType.File

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        info = self.filesystem.get_file_info(self._full(key))
        return info.size if info.type == pafs.FileType.File else None

    def iter_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The object's bytes ``start`` up to ``end`` (exclusive), in chunks, as a response body streams them."""
        with self.filesystem.open_input_file(self._full(key)) as source:
            source.seek(start)
            remaining = (end if end is not None else source.size()) - start
            while remaining > 0:
                chunk = source.read(min(CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def local_path(self, key: str) -> Path:
        """A local file holding the object ``key``, for readers that need one (DuckDB, pyarrow's Parquet reader).

        On a local store the object itself; on S3 a copy in the cache, fetched on first use.
        """
        if self.is_local:
            return Path(self._full(key))
        cached = self.cache_dir / "objects" / check_key(key)
        if cached.exists():
            try:
                os.utime(cached)  # recently used: evicted last
                return cached
            except FileNotFoundError:
                pass  # evicted meanwhile by another thread
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = cached.with_name(processes.temp_name("fetch", f".{cached.name}"))
        try:
            with self.open(key) as source, temp.open("wb") as target:
                shutil.copyfileobj(source, target, CHUNK)
            os.replace(temp, cached)
        finally:
            temp.unlink(missing_ok=True)
        self.evict(keep=cached)
        return cached

    def evict(self, *, keep: Path | None = None) -> int:
        """Remove the least recently used cached objects until the cache fits its budget; the bytes freed.

        An object and what was derived from it beside it (a snapshot's lookup store,
        ``v000001.keyed.*``) go together, and count as used when the object was.
        """
        folder = self.cache_dir / "objects"
        if not folder.is_dir():
            return 0
        with self._cache_lock:
            groups: dict[tuple[Path, str], list] = {}
            for path in folder.rglob("*"):
                if path.name.startswith(".") or not path.is_file():
                    continue  # a copy being fetched
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                group = groups.setdefault((path.parent, path.name.split(".", 1)[0]), [0.0, 0, []])
                group[0], group[1] = max(group[0], stat.st_mtime), group[1] + stat.st_size
                group[2].append(path)
            total, freed = sum(group[1] for group in groups.values()), 0
            kept = (keep.parent, keep.name.split(".", 1)[0]) if keep is not None else None
            for name, (_, size, paths) in sorted(groups.items(), key=lambda item: item[1][0]):
                if total <= self.cache_budget_bytes:
                    break
                if name == kept:
                    continue
                for path in paths:
                    path.unlink(missing_ok=True)
                total, freed = total - size, freed + size
            return freed

    def derived_path(self, local: Path, suffix: str) -> Path:
        """Where this replica keeps a file it derives from ``local`` (what ``local_path`` gave), such as a snapshot's
        lookup store: in its cache folder, never the data store's.

        On S3 beside the cached copy, so it is evicted with it (``evict``); on a local store under
        ``derived/``, at the object's key. Its folder is made by whoever writes the file.
        """
        if not self.is_local:
            return local.with_suffix(suffix)
        found = self._derived.get((local, suffix))
        if found is None:  # kept: every lookup asks, and pathlib's arithmetic cost more than the probe
            key = PurePosixPath(local.relative_to(self.root).as_posix())
            found = (self.cache_dir / "derived" / check_key(str(key))).with_suffix(suffix)
            if len(self._derived) >= 4096:
                self._derived.clear()
            self._derived[local, suffix] = found
        return found

    def cached_keys(self, folder: str) -> list[str]:
        """Keys under ``folder`` of which this replica holds a cached copy (none on a local store)."""
        root = self.cache_dir / "objects" / check_key(folder)
        if self.is_local or not root.is_dir():
            return []
        base = self.cache_dir / "objects"
        return sorted(str(path.relative_to(base)) for path in root.rglob("*") if path.is_file() and not path.name.startswith("."))

    def drop_cached(self, key: str) -> None:
        """Remove this replica's cached copy of ``key`` (the object in the store stays)."""
        if not self.is_local:
            (self.cache_dir / "objects" / check_key(key)).unlink(missing_ok=True)

    # --- writing --------------------------------------------------------------------------------

    def staging_path(self, key: str, purpose: str) -> Path:
        """A fresh local file name to write ``key``'s content into before ``publish``.

        Locally beside the final object (so publishing is a rename); on S3 in the cache folder.
        """
        name = PurePosixPath(check_key(key)).name
        folder = Path(self._full(key)).parent if self.is_local else self.cache_dir / "staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / processes.temp_name(purpose, f".{name}")

    def publish(self, staged: Path, key: str) -> int:
        """Make the staged file the object ``key`` at once (never a part of it); the staged file is consumed.

        Returns the object's size.
        """
        size = staged.stat().st_size
        if self.is_local:
            os.replace(staged, self._full(key))
            return size
        temporary = f"{self.root}/{TEMP_PREFIX}/{uuid.uuid4().hex}-{PurePosixPath(key).name}"
        try:
            with staged.open("rb") as source, self.filesystem.open_output_stream(temporary) as target:
                shutil.copyfileobj(source, target, 8 * CHUNK)
            self.filesystem.copy_file(temporary, self._full(key))
        finally:
            try:
                self.filesystem.delete_file(temporary)
            except (FileNotFoundError, OSError):
                pass  # left for remove_stale_temporaries
        # The writer will likely read it soon (a download, a lookup store): keep it as a cached copy.
        cached = self.cache_dir / "objects" / check_key(key)
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, cached)
        self.evict(keep=cached)
        return size

    def delete(self, key: str) -> None:
        """Remove the object ``key`` (and this replica's cached copy); a missing object is no error."""
        try:
            self.filesystem.delete_file(self._full(key))
        except FileNotFoundError:
            pass
        if not self.is_local:
            (self.cache_dir / "objects" / check_key(key)).unlink(missing_ok=True)

    def remove_stale_temporaries(self, *, now: _dt.datetime | None = None, older_than: _dt.timedelta = STALE_TEMPORARY) -> int:
        """Delete what interrupted writes left: ``tmp/`` objects older than ``older_than`` (S3), dead processes' staging files."""
        removed = len(processes.remove_dead_temp_files(self.cache_dir))
        if self.is_local:
            return removed + len(processes.remove_dead_temp_files(Path(self.root)))
        now = now or _dt.datetime.now(_dt.UTC)
        selector = pafs.FileSelector(f"{self.root}/{TEMP_PREFIX}", allow_not_found=True, recursive=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File and info.mtime is not None and info.mtime < now - older_than:
                try:
                    self.filesystem.delete_file(info.path)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # --- handing out ----------------------------------------------------------------------------

    def presigned_url(self, key: str, *, expires_seconds: int, now: _dt.datetime | None = None) -> str:
        """A URL of the object ``key`` that any HTTP client may GET until it expires (S3 stores only)."""
        if self.s3 is None or not self.s3.access_key or not self.s3.secret_key:
            raise StoreError("pre-signed URLs need an S3 store with credentials (GOVSHARE_DATA_URL=s3://..., AWS_* variables)")
        object_key = f"{self.s3.prefix}/{check_key(key)}" if self.s3.prefix else check_key(key)
        return presign_get(endpoint_url=self.s3.endpoint_url, region=self.s3.region, bucket=self.s3.bucket, key=object_key,
                           access_key=self.s3.access_key, secret_key=self.s3.secret_key, session_token=self.s3.session_token,
                           expires_seconds=expires_seconds, now=now)


def presign_get(*, endpoint_url: str | None, region: str, bucket: str, key: str, access_key: str, secret_key: str,
                expires_seconds: int, session_token: str | None = None, now: _dt.datetime | None = None) -> str:
    """A SigV4 query-string pre-signed GET URL (AWS's documented algorithm, "Authenticating Requests: Using Query Parameters").

    Written here rather than taken from botocore: pyarrow does the store's I/O, and a second
    S3 client as a runtime dependency for forty lines of HMAC would be most of its weight.
    """
    now = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
    if endpoint_url:  # an S3-compatible store: path-style addressing
        parts = urlsplit(endpoint_url)
        scheme, host, path = parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{bucket}/{key}"
    else:
        scheme, host, path = "https", f"{bucket}.s3.{region}.amazonaws.com", f"/{key}"
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{region}/s3/aws4_request"
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access_key}/{scope}", "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires_seconds), "X-Amz-SignedHeaders": "host",
    }
    if session_token:
        query["X-Amz-Security-Token"] = session_token
    canonical_query = "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in sorted(query.items()))
    canonical_uri = quote(path, safe="/-_.~")
    canonical_request = "\n".join(["GET", canonical_uri, canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    signing_key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{canonical_uri}?{canonical_query}&X-Amz-Signature={signature}"


def open_store(data_url: str, *, cache_dir: Path, cache_budget_bytes: int, endpoint_url: str | None = None,
               environ: dict[str, str] | None = None) -> Store:
    """The store ``data_url`` names: a local folder, or ``s3://BUCKET/PREFIX``."""
    environ = dict(os.environ if environ is None else environ)
    if not data_url.startswith("s3://"):
        root = Path(data_url.removeprefix("file://")).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return Store(pafs.LocalFileSystem(), str(root), cache_dir=cache_dir, cache_budget_bytes=cache_budget_bytes)
    parts = urlsplit(data_url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise StoreError(f"GOVSHARE_DATA_URL: {data_url!r} names no bucket (s3://BUCKET/PREFIX)")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    access_key, secret_key = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    session_token = environ.get("AWS_SESSION_TOKEN")
    options: dict = {"region": region}
    if access_key and secret_key:
        options.update(access_key=access_key, secret_key=secret_key, session_token=session_token)
    if endpoint_url:
        endpoint = urlsplit(endpoint_url)
        options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https")
    filesystem = pafs.S3FileSystem(**options)
    location = S3Location(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, region=region, access_key=access_key,
                          secret_key=secret_key, session_token=session_token)
    return Store(filesystem, f"{bucket}/{prefix}" if prefix else bucket, cache_dir=cache_dir,
                 cache_budget_bytes=cache_budget_bytes, s3=location)


def for_settings(settings) -> Store:
    """The store the settings name (one per process and settings, so the cache's bookkeeping is shared)."""
    return _cached_store(settings.resolved_data_url, settings.resolved_cache_dir, settings.cache_max_bytes,
                         settings.s3_endpoint_url)


@lru_cache(maxsize=64)
def _cached_store(data_url: str, cache_dir: Path, budget: int, endpoint_url: str | None) -> Store:
    return open_store(data_url, cache_dir=cache_dir, cache_budget_bytes=budget, endpoint_url=endpoint_url)

