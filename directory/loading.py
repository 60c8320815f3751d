"""Loading data files into versions: read in record batches, check against the items, write Parquet.

A file (CSV, Parquet or JSON lines) is read in bounded record batches; each batch
is checked with vectorised pyarrow compute kernels (types by casting, required,
pattern, citizen ID check digit) and written to a temporary Parquet file. A file
with any error is refused whole: the temporary file is removed and the first
errors are reported by data row (1-based) and item. Distinct counts for the
quality report come from DuckDB over the finished temporary file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from directory.errors import InvalidFile, VersionRefused
from govshare.db import quote_identifier

MAX_ERRORS = 20
BLOCK_SIZE = 512 << 10  # bytes of CSV / JSON text parsed per batch
MAX_HEADER_BYTES = 1 << 20  # of a CSV's first line, checked to be UTF-8
PARQUET_BATCH_ROWS = 64 * 1024
ROW_GROUP_BYTES = 8 << 20  # checked batches gathered into one Parquet row group
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": UTC_TIMESTAMP,
}

# GB 11643-1999: weights of the first 17 digits; (sum mod 11) indexes the check character.
CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CITIZEN_ID_CHECK = "10X98765432"
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while a file is read (bytes, or rows for Parquet)."""


def citizen_id_check_char(first17: str) -> str:
    """The GB 11643 check character for 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, CITIZEN_ID_WEIGHTS, strict=True))
    return CITIZEN_ID_CHECK[total % 11]


def is_citizen_id_item(item: dict[str, Any]) -> bool:
    """Items holding citizen IDs: declared with ``format: citizen_id`` or named ``citizen_id``."""
    return item.get("format") == "citizen_id" or item["name"] == "citizen_id"


def arrow_schema(items: list[dict[str, Any]]) -> pa.Schema:
    """The Parquet schema of a snapshot of ``items``."""
    return pa.schema([pa.field(item["name"], ARROW_TYPES[item["type"]]) for item in items])


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used (RE2 syntax), or None when it can."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except _CAST_ERRORS as error:
        return str(error)
    return None


@dataclass(frozen=True)
class RowError:
    """One way one value (or one column, row None) breaks the items."""

    row: int | None
    column: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "rule": self.rule, "message": self.message}


@dataclass
class Snapshot:
    """A checked file written to a temporary Parquet file, not yet in place."""

    temp_path: Path
    source_format: str
    rows: int
    size_bytes: int
    sha256: str
    quality: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)  # what it was checked against


def detect_format(filename: str | None, head: bytes) -> str:
    """csv, parquet or jsonl: from the file name's suffix, else from its first bytes."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _size(source: BinaryIO) -> int:
    source.seek(0, os.SEEK_END)
    size = source.tell()
    source.seek(0)
    return size


def _check_header_text(source: BinaryIO) -> None:
    """Refuse a CSV header that is not UTF-8, naming its column: pyarrow reads the column names into Python strings,
    which fails with no word of where."""
    source.seek(0)
    header = source.readline(MAX_HEADER_BYTES)
    source.seek(0)
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.end >= len(header) and len(header) == MAX_HEADER_BYTES:
            return  # a character cut by the read's limit, not a bad one
        column = header[: error.start].count(b",") + 1
        raise InvalidFile(
            f"row 1 (the header), column {column}: the column name is not valid UTF-8 (byte {error.start + 1} of the line); "
            "save the file as UTF-8",
            extra={"errors": [{"row": 1, "column": column, "rule": "encoding", "message": "not valid UTF-8"}]},
        ) from None


def _batches(source: BinaryIO, source_format: str, items: list[dict[str, Any]], progress: Progress | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's columns and an iterator over its record batches (bounded memory)."""
    total = _size(source)
    try:
        if source_format == "parquet":
            parquet = pq.ParquetFile(source)
            rows_total = parquet.metadata.num_rows

            def parquet_batches() -> Iterator[pa.RecordBatch]:
                done = 0
                for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                    done += batch.num_rows
                    if progress:
                        progress(done, rows_total)
                    yield batch

            return parquet.schema_arrow, parquet_batches()
        if source_format == "csv":
            _check_header_text(source)
            # Every item is read as text and cast per item type, so bad values are
            # reported by row instead of failing the whole read.
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),  # quoted addresses may span lines
                convert_options=pacsv.ConvertOptions(
                    column_types={item["name"]: pa.string() for item in items},
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
        else:
            reader = pajson.open_json(source, read_options=pajson.ReadOptions(block_size=BLOCK_SIZE))
    except _CAST_ERRORS as error:
        raise InvalidFile(f"the file cannot be read as {source_format}: {error}") from error

    def text_batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except _CAST_ERRORS as error:
                raise InvalidFile(f"the file cannot be read as {source_format}: {error}") from error
            if progress:
                progress(min(source.tell(), total), total)
            yield batch

    return reader.schema, text_batches()


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    if text and target != pa.string():
        values = pc.utf8_trim_whitespace(values)
    if target == UTC_TIMESTAMP:
        if text:
            try:
                return pc.cast(values, UTC_TIMESTAMP)
            except _CAST_ERRORS:
                # No zone offset given: the value is taken as UTC.
                return pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")
        if pa.types.is_timestamp(values.type) and values.type.tz is None:
            return pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")
    return pc.cast(values, target)


def _convert(values: pa.Array, target: pa.DataType, budget: int) -> tuple[pa.Array, list[int]]:
    """``values`` cast to ``target`` (bad ones null) and the offsets of those that would not cast.

    The whole array is cast at once; only a failing slice is halved to find its bad
    values, so a clean batch costs one kernel call and a bad one O(bad * log n).
    """
    bad: list[int] = []
    pieces: list[pa.Array] = []

    def walk(part: pa.Array, offset: int) -> None:
        if len(bad) >= budget:
            pieces.append(pa.nulls(len(part), target))
            return
        try:
            pieces.append(_cast(part, target))
            return
        except _CAST_ERRORS:
            if len(part) == 1:
                bad.append(offset)
                pieces.append(pa.nulls(1, target))
                return
        half = len(part) // 2
        walk(part.slice(0, half), offset)
        walk(part.slice(half), offset + half)

    walk(values, 0)
    converted = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
    return converted, bad


def _offsets(mask: pa.Array, budget: int) -> list[int]:
    """Offsets where ``mask`` is true (nulls count as false), at most ``budget`` of them."""
    found = pc.indices_nonzero(pc.fill_null(mask, False))
    return found.slice(0, budget).to_pylist()


def citizen_id_problems(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Masks over ``text`` (nulls are fine): malformed, impossible birth date, wrong check digit."""
    upper = pc.utf8_upper(text)
    well_formed = pc.fill_null(pc.match_substring_regex(upper, r"^[0-9]{17}[0-9X]$"), False)
    present = pc.is_valid(text)
    # Malformed values are swapped for a well-formed dummy so the digit casts cannot fail.
    safe = pc.if_else(well_formed, upper, pa.scalar("11010119900101001X"))
    total = None
    for position, weight in enumerate(CITIZEN_ID_WEIGHTS):
        digit = pc.cast(pc.utf8_slice_codeunits(safe, position, position + 1), pa.int32())
        term = pc.multiply(digit, weight)
        total = term if total is None else pc.add(total, term)
    remainder = pc.subtract(total, pc.multiply(pc.divide(total, 11), 11))
    expected = pc.take(pa.array(list(CITIZEN_ID_CHECK)), remainder)
    actual = pc.utf8_slice_codeunits(safe, 17, 18)
    birth = pc.strptime(pc.utf8_slice_codeunits(safe, 6, 14), format="%Y%m%d", unit="s", error_is_null=True)
    malformed = pc.and_(present, pc.invert(well_formed))
    bad_birth = pc.and_(well_formed, pc.is_null(birth))
    wrong_check = pc.and_(pc.and_(well_formed, pc.is_valid(birth)), pc.not_equal(expected, actual))
    return malformed, bad_birth, wrong_check


def _check_batch(
    batch: pa.RecordBatch, items: list[dict[str, Any]], schema: pa.Schema, first_row: int, budget: int
) -> tuple[pa.RecordBatch, list[RowError]]:
    """The batch converted to the snapshot schema, and what is wrong with it."""
    errors: list[RowError] = []
    columns: list[pa.Array] = []
    for item, target in zip(items, schema, strict=True):
        name = item["name"]
        index = batch.schema.get_field_index(name)
        original = batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, pa.string())
        converted, bad = _convert(original, target.type, budget)
        columns.append(converted)

        def report(offsets: list[int], rule: str, message: str) -> None:
            errors.extend(RowError(first_row + offset, name, rule, message) for offset in offsets)

        report(bad, "type", f"not a valid {item['type']}")
        if item.get("required") or item.get("is_key"):
            report(_offsets(pc.is_null(original), budget), "required", "a value is required")
        if item.get("pattern") or is_citizen_id_item(item):
            text = original if pa.types.is_string(original.type) else pc.cast(converted, pa.string())
            if item.get("pattern"):
                mismatch = pc.and_(pc.is_valid(text), pc.invert(pc.match_substring_regex(text, item["pattern"])))
                report(_offsets(mismatch, budget), "pattern", f"does not match the pattern {item['pattern']}")
            if is_citizen_id_item(item):
                malformed, bad_birth, wrong_check = citizen_id_problems(text)
                report(_offsets(malformed, budget), "citizen_id", "not an 18-character citizen ID (17 digits and a digit or X)")
                report(_offsets(bad_birth, budget), "citizen_id", "the citizen ID's birth date is not a date")
                report(_offsets(wrong_check, budget), "citizen_id", "the citizen ID's check digit is wrong (GB 11643)")
    return pa.RecordBatch.from_arrays(columns, schema=schema), errors


def _column_errors(file_schema: pa.Schema, items: list[dict[str, Any]]) -> list[RowError]:
    known = {item["name"] for item in items}
    errors = [
        RowError(None, name, "unknown_column", "the file has a column that is not a data item")
        for name in file_schema.names
        if name not in known
    ]
    present = set(file_schema.names)
    errors += [
        RowError(None, item["name"], "missing_column", "a required item is missing from the file")
        for item in items
        if (item.get("required") or item.get("is_key")) and item["name"] not in present
    ]
    return errors


def _refuse(errors: list[RowError], rows_checked: int) -> VersionRefused:
    errors = sorted(errors, key=lambda e: (-1 if e.row is None else e.row, e.column))[:MAX_ERRORS]
    first = errors[0]
    where = f"row {first.row}, column {first.column}" if first.row is not None else f"column {first.column}"
    return VersionRefused(
        f"the file was refused and nothing was stored; first problem: {where}: {first.message}",
        extra={"errors": [error.as_dict() for error in errors], "rows_checked": rows_checked},
    )


def write_snapshot(
    source: BinaryIO,
    *,
    items: list[dict[str, Any]],
    filename: str | None,
    temp_path: Path,
    progress: Progress | None = None,
) -> Snapshot:
    """Check ``source`` against ``items`` and write it to ``temp_path`` as Parquet.

    Raises ``VersionRefused`` (listing up to MAX_ERRORS errors) or ``InvalidFile``;
    either way no file is left behind.
    """
    source.seek(0)
    source_format = detect_format(filename, source.read(8))
    source.seek(0)
    schema = arrow_schema(items)
    temp_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        file_schema, batches = _batches(source, source_format, items, progress)
        column_errors = _column_errors(file_schema, items)
        if column_errors:
            raise _refuse(column_errors, 0)
        return _write_checked(batches, items=items, schema=schema, temp_path=temp_path, source_format=source_format)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def write_batches(
    batches: Iterable[pa.RecordBatch], *, items: list[dict[str, Any]], source_format: str, temp_path: Path
) -> Snapshot:
    """Check record batches (columns named after the items) and write them to ``temp_path`` as Parquet.

    The same checks and refusal as ``write_snapshot``, for data arriving as Arrow
    batches (a connector's source) instead of a file. No file is left behind on any
    error, including one raised by ``batches`` itself (a source that drops mid-way).
    """
    schema = arrow_schema(items)
    temp_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _write_checked(iter(batches), items=items, schema=schema, temp_path=temp_path, source_format=source_format)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def _write_checked(
    batches: Iterator[pa.RecordBatch], *, items: list[dict[str, Any]], schema: pa.Schema, temp_path: Path, source_format: str
) -> Snapshot:
    """Check each batch, write the good ones in row groups; refuse the whole if any is bad."""
    rows, errors, pending, pending_bytes = 0, [], [], 0
    with pq.ParquetWriter(temp_path, schema, compression="zstd") as writer:
        for batch in batches:
            converted, batch_errors = _check_batch(batch, items, schema, rows + 1, MAX_ERRORS)
            rows += batch.num_rows
            errors += batch_errors
            if len(errors) >= MAX_ERRORS:
                break
            if errors:
                continue  # refused anyway: keep checking, stop writing
            pending.append(converted)
            pending_bytes += converted.nbytes
            if pending_bytes >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
                pending, pending_bytes = [], 0
        if pending and not errors:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
    if errors:
        raise _refuse(errors, rows)
    return Snapshot(
        temp_path=temp_path,
        source_format=source_format,
        rows=rows,
        size_bytes=temp_path.stat().st_size,
        sha256=file_sha256(temp_path),
        quality=quality_report(temp_path, items, rows),
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()



def quality_report(path: Path, items: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """Row count, and per item the null count and an approximate distinct count (DuckDB).

    Distinct counts use DuckDB's approx_count_distinct (HyperLogLog, a few percent
    error) so that a file larger than memory is counted in one bounded pass.
    Violations are all zero: a version with any violation is refused whole.
    """
    columns = [
        f"count({quote_identifier(item['name'])}), approx_count_distinct({quote_identifier(item['name'])})" for item in items
    ]
    connection = duckdb.connect(config={"threads": 2, "memory_limit": "256MB"})
    try:
        values = connection.execute(f"SELECT {', '.join(columns)} FROM read_parquet(?)", [str(path)]).fetchone()
    finally:
        connection.close()
    report_items = {}
    for index, item in enumerate(items):
        non_null, distinct = values[2 * index], values[2 * index + 1]
        report_items[item["name"]] = {"nulls": rows - non_null, "distinct": distinct}
    checks = ["type", "required", "pattern", "citizen_id"]
    return {
        "rows": rows,
        "items": report_items,
        "violations": {check: 0 for check in checks},
        "distinct_method": "approx_count_distinct",
    }
