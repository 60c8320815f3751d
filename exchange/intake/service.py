"""Submit once: intake datasets that service systems deposit citizens' submissions into.

A deposit is checked exactly like an upload (the directory's loader: types, required,
pattern, citizen ID check digit) and refused whole with the row and item of each
error; accepted records are upserted by the dataset's lookup key with the citizen's
consent reference. Other departments' services then pull them under their grants,
through the same grant-scoped queries as any dataset.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

import schemas
from directory import loading
from directory.models import Dataset
from exchange.errors import InvalidQuery
from exchange.stores.keyed_store import ROW_COLUMN
from exchange.models import IntakeRecord
from govshare.db import utcnow

MAX_RECORDS = 1000


def is_intake(dataset: Dataset) -> bool:
    return bool(dataset.document.get("intake"))


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def validated(records: list[dict[str, Any]], *, items: list[dict[str, Any]], work_dir: Path) -> list[dict[str, Any]]:
    """``records`` typed by the items, or the loader's 422 naming the row and item of each error."""
    lines = "\n".join(json.dumps(record, ensure_ascii=False) for record in records) + "\n"
    temp = work_dir / f".deposit-{uuid.uuid4().hex}.parquet.tmp"
    snapshot = loading.write_snapshot(io.BytesIO(lines.encode()), items=items, filename="deposit.jsonl", temp_path=temp)
    try:
        rows = pq.read_table(snapshot.temp_path).to_pylist()
    finally:
        snapshot.temp_path.unlink(missing_ok=True)
    return [{name: _jsonable(value) for name, value in row.items()} for row in rows]


def deposit(
    session: Session, *, dataset: Dataset, records: list[dict[str, Any]], consent_ref: str, department: str,
    client_id: str, work_dir: Path,
) -> list[str]:
    """Upsert ``records`` into the intake dataset by key; returns the keys deposited."""
    key = dataset.document.get("lookup_key")
    if not is_intake(dataset) or not key:
        raise InvalidQuery(f"dataset {dataset.code} is not an intake dataset with a lookup key")
    if not 1 <= len(records) <= MAX_RECORDS:
        raise InvalidQuery(f"records: from 1 to {MAX_RECORDS} records a deposit")
    if not consent_ref.strip():
        raise InvalidQuery("consent_ref: every deposit names the citizen's consent")
    # Text no record store keeps (a lone surrogate escape, a NUL), in a value or a name: refused by field up front,
    # before the records are encoded for the loader, which cannot encode a lone surrogate at all.
    unstorable = schemas.unstorable_text({"consent_ref": consent_ref, "records": records})
    if unstorable:
        first = unstorable[0]
        raise InvalidQuery(f"{first['field']}: {first['message']}", extra={"errors": unstorable[:schemas.MAX_REPORTED]})
    typed = validated(records, items=dataset.document["items"], work_dir=work_dir)
    now = utcnow()
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    keys = [str(record[key]) for record in typed]
    # Upserted in key order (stable: of repeats, the last wins): two deposits sharing keys then lock
    # their rows in the same order, so on PostgreSQL one waits for the other instead of deadlocking.
    for value, record in sorted(zip(keys, typed), key=lambda pair: pair[0]):
        statement = insert(IntakeRecord).values(
            dataset_id=dataset.id, key=value, record=record, consent_ref=consent_ref.strip(), department_code=department,
            client_id=client_id, deposited_at=now, updated_at=now,
        )
        # One statement per record: concurrent deposits of one key cannot both insert.
        session.execute(statement.on_conflict_do_update(
            index_elements=["dataset_id", "key"],
            set_={"record": statement.excluded.record, "consent_ref": statement.excluded.consent_ref,
                  "department_code": statement.excluded.department_code, "client_id": statement.excluded.client_id,
                  "updated_at": statement.excluded.updated_at},
        ))
    session.flush()
    return keys


def table(session: Session, *, dataset: Dataset, key_value: str | None = None) -> pa.Table:
    """The intake records (or those with one key) as a typed Arrow table with a ``_row`` column."""
    query = select(IntakeRecord.id, IntakeRecord.record).where(IntakeRecord.dataset_id == dataset.id)
    if key_value is not None:
        query = query.where(IntakeRecord.key == key_value)
    rows = session.execute(query.order_by(IntakeRecord.id)).all()
    return records_table([record for _, record in rows], items=dataset.document["items"], row_ids=[row_id for row_id, _ in rows])


def records_table(records: list[dict[str, Any]], *, items: list[dict[str, Any]], row_ids: list[int] | None = None) -> pa.Table:
    """JSON records as an Arrow table typed by the dataset's ``items``, with a ``_row`` column (``row_ids``, or their order).

    Raises ``pa.ArrowInvalid``, ``pa.ArrowTypeError`` or ``TypeError`` when a value is not of its item's type.
    """
    schema = loading.arrow_schema(items)
    arrays = [pa.array(row_ids if row_ids is not None else range(len(records)), type=pa.int64())]
    for field in schema:
        values = [record.get(field.name) for record in records]
        if pa.types.is_temporal(field.type):  # ISO text in JSON
            arrays.append(pa.array(values, type=pa.string()).cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(ROW_COLUMN, pa.int64()), *schema]))
