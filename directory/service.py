"""The directory's logic: registering, changing and retiring datasets, and storing versions.

Functions take the session first and flush, never commit: the caller (a request,
a CLI command) owns the transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import schemas
from directory import live_credentials, loading, search
from directory.errors import (
    DatasetExists,
    DatasetNotFound,
    DatasetRetired,
    InvalidDataset,
    NotOwnDepartment,
    VersionConflict,
)
from directory.models import Dataset, DatasetRevision, DatasetTerm, DatasetVersion
from govshare import audit
from govshare.db import utcnow
from govshare.models import Department
from govshare.storage import Store

_PLACED_FILES = "directory.placed_files"


def check_document(session: Session, document: Any) -> dict[str, Any]:
    """``document`` if it is a valid dataset in the unified format; rules a schema cannot say are checked here."""
    schemas.validate("dataset", document)
    names = [item["name"] for item in document["items"]]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidDataset(f"items[{index}].name: item '{name}' is named twice (rule 'unique')")
    for index, item in enumerate(document["items"]):
        if "pattern" in item and (problem := loading.check_pattern(item["pattern"])):
            raise InvalidDataset(f"items[{index}].pattern: not a usable regular expression (rule 'regex'): {problem}")
    lookup_key = document.get("lookup_key")
    if lookup_key is not None and lookup_key not in names:
        raise InvalidDataset(f"lookup_key: '{lookup_key}' is not one of the items (rule 'item')")
    if "live" in document["delivery_modes"]:
        if "live" not in document:
            raise InvalidDataset("live: a dataset offering delivery 'live' describes its provider's API in 'live' (rule 'required')")
        if lookup_key is None:
            raise InvalidDataset("lookup_key: a live dataset is called by key; name its lookup key (rule 'required')")
    live_credentials.check_live(document)
    for flag in ("consent_required", "explicit_request"):
        if document.get(flag) and lookup_key is None:
            raise InvalidDataset(f"lookup_key: a dataset with {flag} serves a citizen's rows by their ID; name its lookup key "
                                 "(rule 'required')")
    if session.get(Department, document["department"]) is None:
        raise InvalidDataset(f"department: department {document['department']} is not registered (rule 'exists')")
    return document


def get_dataset(session: Session, code: str) -> Dataset:
    """The dataset with resource code ``code``, or ``DatasetNotFound``."""
    dataset = session.execute(select(Dataset).where(Dataset.code == code)).scalar_one_or_none()
    if dataset is None:
        raise DatasetNotFound(f"dataset {code} does not exist")
    return dataset


def ensure_own(dataset: Dataset, *, department: str) -> Dataset:
    """``dataset`` if ``department`` provides it; ``NotOwnDepartment`` otherwise."""
    if dataset.department_code != department:
        raise NotOwnDepartment(f"dataset {dataset.code} belongs to department {dataset.department_code}, not {department}")
    return dataset


def _ensure_active(dataset: Dataset) -> None:
    if dataset.status != "active":
        raise DatasetRetired(f"dataset {dataset.code} is retired; it can no longer be changed or loaded")


def row_values(document: dict[str, Any]) -> dict[str, Any]:
    """The dataset columns kept from ``document`` (filters, search text)."""
    modes = document["delivery_modes"]
    return {
        "code": document["code"],
        "department_code": document["department"],
        "title": document["title"],
        "domain": document["domain"],
        "share_type": document["share_type"],
        "open_type": document["open_type"],
        "update_frequency": document["update_frequency"],
        "offers_extract": "extract" in modes,
        "offers_interface": "interface" in modes,
        "document": document,
        "search_text": search.search_text(document),
    }


def _index(session: Session, dataset: Dataset) -> None:
    session.execute(delete(DatasetTerm).where(DatasetTerm.dataset_id == dataset.id))
    terms = search.index_terms(dataset.search_text)
    if terms:
        session.execute(insert(DatasetTerm), [{"term": term, "dataset_id": dataset.id} for term in sorted(terms)])


def _revise(session: Session, dataset: Dataset, *, action: str, actor: str) -> None:
    search.directory_changed(session)
    session.add(
        DatasetRevision(
            dataset_id=dataset.id, revision=dataset.revision, action=action, actor=actor,
            at=dataset.updated_at, document=copy.deepcopy(dataset.document),
        )
    )
    session.flush()
    audit.record(
        session, actor=actor, action=f"dataset.{action}", subject=f"dataset:{dataset.code}",
        details={"revision": dataset.revision, "department": dataset.department_code},
    )


def register_dataset(session: Session, *, document: Any, department: str, actor: str) -> Dataset:
    """Add a dataset to the directory for ``department`` (which must be the document's)."""
    schemas.validate("dataset", document)
    if document["department"] != department:
        raise NotOwnDepartment(f"department {department} cannot register a dataset of department {document['department']}")
    check_document(session, document)
    document, secret = live_credentials.split_secret(document)
    if session.execute(select(Dataset.id).where(Dataset.code == document["code"])).first() is not None:
        raise DatasetExists(f"dataset {document['code']} is already registered")
    now = utcnow()
    dataset = Dataset(**row_values(document), status="active", revision=1, created_at=now, updated_at=now)
    session.add(dataset)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise DatasetExists(f"dataset {document['code']} is already registered") from None
    live_credentials.keep_secret(session, dataset=dataset, document=document, secret=secret)
    _index(session, dataset)
    _revise(session, dataset, action="registered", actor=actor)
    return dataset


def replace_dataset(session: Session, *, dataset: Dataset, document: Any, actor: str) -> Dataset:
    """Replace a dataset's whole description (its code and department stay)."""
    _ensure_active(dataset)
    check_document(session, document)
    if document["code"] != dataset.code:
        raise InvalidDataset(f"code: the code of dataset {dataset.code} cannot change (rule 'const')")
    if document["department"] != dataset.department_code:
        raise InvalidDataset(f"department: dataset {dataset.code} stays with department {dataset.department_code} (rule 'const')")
    document, secret = live_credentials.split_secret(document)
    live_credentials.keep_secret(session, dataset=dataset, document=document, secret=secret)
    if document == dataset.document:
        return dataset
    for name, value in row_values(document).items():
        setattr(dataset, name, value)
    dataset.revision += 1
    dataset.updated_at = utcnow()
    session.flush()
    _index(session, dataset)
    _revise(session, dataset, action="updated", actor=actor)
    return dataset


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patch_dataset(session: Session, *, dataset: Dataset, patch: dict[str, Any], actor: str) -> Dataset:
    """Change some fields of a dataset's description (JSON merge patch)."""
    return replace_dataset(session, dataset=dataset, document=merge_patch(dataset.document, patch), actor=actor)


def retire_dataset(session: Session, *, dataset: Dataset, actor: str) -> Dataset:
    """Take a dataset out of the directory's search; its history and versions stay."""
    _ensure_active(dataset)
    now = utcnow()
    dataset.status, dataset.retired_at, dataset.updated_at = "retired", now, now
    dataset.revision += 1
    session.flush()
    _revise(session, dataset, action="retired", actor=actor)
    return dataset


def history(session: Session, *, dataset: Dataset) -> list[DatasetRevision]:
    """Every revision of a dataset's metadata, oldest first."""
    query = select(DatasetRevision).where(DatasetRevision.dataset_id == dataset.id).order_by(DatasetRevision.revision)
    return list(session.execute(query).scalars())


def list_versions(session: Session, *, dataset: Dataset) -> list[DatasetVersion]:
    """Every stored version of a dataset's data, newest first."""
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id).order_by(DatasetVersion.number.desc())
    return list(session.execute(query).scalars())


def latest_version(session: Session, *, dataset: Dataset) -> DatasetVersion | None:
    if dataset.latest_version is None:
        return None
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == dataset.latest_version)
    return session.execute(query).scalar_one_or_none()


def snapshot_path(store: Store, version: DatasetVersion) -> Path:
    """A local file holding a version's Parquet snapshot (on an S3 store, this replica's cached copy)."""
    return store.local_path(version.path)


def add_version(
    session: Session,
    *,
    dataset: Dataset,
    source: BinaryIO,
    filename: str | None,
    store: Store,
    actor: str,
    progress: loading.Progress | None = None,
) -> DatasetVersion:
    """Check a data file against the dataset's items and store it as the next immutable version.

    The snapshot is written under a temporary name; the version row is inserted and
    flushed, and only then is the file renamed into place. Should the transaction
    roll back afterwards, the placed file is removed again (see ``_remove_on_rollback``).
    """
    snapshot = check_file(dataset=dataset, source=source, filename=filename, store=store, progress=progress)
    return _store_snapshot(session, dataset=dataset, snapshot=snapshot, source_name=filename, store=store, actor=actor)


def check_file(
    *, dataset: Dataset, source: BinaryIO, filename: str | None, store: Store, progress: loading.Progress | None = None,
) -> loading.Snapshot:
    """Check a data file into a temporary snapshot, not yet a version (``store_checked`` makes it one).

    Needs no transaction: the upload route checks a large file (minutes) holding none.
    """
    _ensure_active(dataset)
    items = copy.deepcopy(dataset.document["items"])
    temp_path = store.staging_path(f"datasets/{dataset.code}/upload.parquet", "upload")
    snapshot = loading.write_snapshot(source, items=items, filename=filename, temp_path=temp_path, progress=progress)
    snapshot.items = items
    return snapshot


def check_batches(
    *, dataset: Dataset, batches: Iterable[pa.RecordBatch], source_format: str, store: Store
) -> loading.Snapshot:
    """Check Arrow record batches (columns named after the items) into a temporary snapshot, not yet a version.

    What a connector's sync calls, outside any transaction (a sync may read its source for
    minutes); ``store_checked`` then makes it the next version, as ``add_version`` does.
    """
    _ensure_active(dataset)
    items = copy.deepcopy(dataset.document["items"])
    temp_path = store.staging_path(f"datasets/{dataset.code}/sync.parquet", "sync")
    snapshot = loading.write_batches(batches, items=items, source_format=source_format, temp_path=temp_path)
    snapshot.items = items
    return snapshot


def store_checked(
    session: Session, *, dataset: Dataset, snapshot: loading.Snapshot, source_name: str | None, store: Store, actor: str
) -> DatasetVersion:
    """Store a snapshot from ``check_batches`` as the next version (refused if the items changed meanwhile)."""
    try:
        _ensure_active(dataset)
        if snapshot.items != dataset.document["items"]:
            raise VersionConflict(f"the items of {dataset.code} changed while the data was read; try again")
    except BaseException:
        snapshot.temp_path.unlink(missing_ok=True)
        raise
    return _store_snapshot(session, dataset=dataset, snapshot=snapshot, source_name=source_name, store=store, actor=actor)


def _store_snapshot(
    session: Session, *, dataset: Dataset, snapshot: loading.Snapshot, source_name: str | None, store: Store, actor: str
) -> DatasetVersion:
    """Insert the version row for a checked temporary snapshot, then publish the file under its key."""
    items = dataset.document["items"]
    temp_path = snapshot.temp_path
    filename = source_name
    try:
        # Lock the dataset so two uploads cannot take the same number (PostgreSQL; SQLite serialises writers).
        session.execute(select(Dataset.id).where(Dataset.id == dataset.id).with_for_update())
        number = (session.execute(select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == dataset.id)).scalar_one() or 0) + 1
        key = f"datasets/{dataset.code}/v{number:06d}.parquet"
        version = DatasetVersion(
            dataset_id=dataset.id, number=number, rows=snapshot.rows, source_format=snapshot.source_format,
            source_name=(filename or "")[:300] or None, path=key,
            size_bytes=snapshot.size_bytes, sha256=snapshot.sha256, items=copy.deepcopy(items),
            quality=snapshot.quality, actor=actor, created_at=utcnow(),
        )
        session.add(version)
        dataset.latest_version = number
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            raise VersionConflict(f"another version {number} of {dataset.code} was stored at the same time; try again") from None
        audit.record(
            session, actor=actor, action="dataset.version_added", subject=f"dataset:{dataset.code}",
            details={"version": number, "rows": snapshot.rows, "sha256": snapshot.sha256},
        )
        store.publish(snapshot.temp_path, key)
        _remove_on_rollback(session, store, key)
    finally:
        temp_path.unlink(missing_ok=True)
    return version


def _remove_on_rollback(session: Session, store: Store, key: str) -> None:
    """Delete the object ``key`` if the session's transaction rolls back, so no file outlives its row."""
    if _PLACED_FILES not in session.info:
        session.info[_PLACED_FILES] = []
        event.listen(session, "after_commit", _forget_placed_files)
        event.listen(session, "after_rollback", _remove_placed_files)
    session.info[_PLACED_FILES].append((store, key))


def _forget_placed_files(session: Session) -> None:
    session.info.get(_PLACED_FILES, []).clear()


def _remove_placed_files(session: Session) -> None:
    placed = session.info.get(_PLACED_FILES, [])
    for store, key in placed:
        store.delete(key)
    placed.clear()


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """What a search hit shows of a dataset."""
    document = dataset.document
    return {
        "code": dataset.code,
        "title": dataset.title,
        "department": dataset.department_code,
        "summary": document["summary"],
        "domain": dataset.domain,
        "share_type": dataset.share_type,
        "open_type": dataset.open_type,
        "update_frequency": dataset.update_frequency,
        "delivery_modes": document["delivery_modes"],
        "keywords": document.get("keywords", []),
        "status": dataset.status,
        "latest_version": dataset.latest_version,
        "modified": dataset.updated_at.isoformat(),
    }


def version_view(version: DatasetVersion) -> dict[str, Any]:
    return {
        "number": version.number,
        "rows": version.rows,
        "format": version.source_format,
        "source_name": version.source_name,
        "size_bytes": version.size_bytes,
        "sha256": version.sha256,
        "created_at": version.created_at.isoformat(),
        "quality": version.quality,
    }


VersionWarning = Callable[[Session, Dataset, list[dict[str, Any]]], list[str]]
_VERSION_WARNINGS: list[VersionWarning] = []


def add_version_warning(check: VersionWarning) -> None:
    """Let a domain built on the directory warn the provider about a new version (approvals: live grants using a dropped item)."""
    if check not in _VERSION_WARNINGS:
        _VERSION_WARNINGS.append(check)


def version_warnings(session: Session, *, dataset: Dataset, version: DatasetVersion) -> list[str]:
    """Warnings for the provider about ``version`` of ``dataset``, from every registered check."""
    return [warning for check in _VERSION_WARNINGS for warning in check(session, dataset, version.items)]


ViewExtension = Callable[[Session, Dataset], dict[str, Any]]
_VIEW_EXTENSIONS: list[ViewExtension] = []


def add_view_extension(extension: ViewExtension) -> None:
    """Let a domain built on the directory add fields to ``dataset_view`` (the connectors add the last sync and freshness)."""
    if extension not in _VIEW_EXTENSIONS:
        _VIEW_EXTENSIONS.append(extension)


def dataset_view(session: Session, dataset: Dataset) -> dict[str, Any]:
    """The whole dataset: its description, its state, and its latest version's quality report."""
    latest = latest_version(session, dataset=dataset)
    extra: dict[str, Any] = {}
    for extension in _VIEW_EXTENSIONS:
        extra.update(extension(session, dataset))
    return {
        **dataset.document,
        "status": dataset.status,
        "revision": dataset.revision,
        "issued": dataset.created_at.isoformat(),
        "modified": dataset.updated_at.isoformat(),
        "retired_at": dataset.retired_at.isoformat() if dataset.retired_at else None,
        "latest_version": version_view(latest) if latest else None,
        **extra,
    }


def revision_view(revision: DatasetRevision) -> dict[str, Any]:
    return {
        "revision": revision.revision,
        "action": revision.action,
        "actor": revision.actor,
        "at": revision.at.isoformat(),
        "document": revision.document,
    }
