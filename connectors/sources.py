"""Source adapters: one small class per kind, each reading its source as Arrow record batches.

A source knows its columns (name -> a type name stable enough to notice a retyped
column) and yields bounded record batches of the columns asked for, optionally only
the rows whose update column is past a watermark. Credentials come in decrypted at
sync time and are never kept in the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from sqlalchemy import MetaData, Table, column, create_engine, make_url, select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from connectors.errors import InvalidSource, SourceAddressRefused, SourceFailed, SourceTimeout
from govshare import outbound

BATCH_ROWS = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0  # the default of GOVSHARE_SOURCE_CONNECT_TIMEOUT_SECONDS
HTTP_READ_TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 5


def _array(values: tuple[Any, ...]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed Python types in one column: hand them over as text; the item checks cast them.
        return pa.array([None if value is None else str(value) for value in values], pa.string())


class SqlSource:
    """A table (or a query) on any SQLAlchemy URL, streamed with a server-side cursor."""

    kind = "sql"

    def __init__(
        self, config: dict[str, Any], secret: str | None, *, files_root: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.config, self._secret, self._root, self._connect_timeout = config, secret, files_root, connect_timeout

    @staticmethod
    def split_secret(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The configuration without its credential (the URL's password), and the credential."""
        unknown = set(config) - {"url", "table", "schema", "query"}
        if unknown:
            raise InvalidSource(f"config: unknown field(s) {', '.join(sorted(unknown))} for a sql source")
        if not isinstance(config.get("url"), str):
            raise InvalidSource("config.url: a SQLAlchemy URL is required")
        if bool(config.get("table")) == bool(config.get("query")):
            raise InvalidSource("config: give either a table or a query")
        try:
            url = make_url(config["url"])
        except ArgumentError:
            raise InvalidSource("config.url: not a SQLAlchemy URL") from None
        # URL.set() ignores None, so the URL without its password is built anew.
        bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        clean = {**config, "url": bare.render_as_string(hide_password=False)}
        return clean, url.password

    def _url(self) -> URL:
        url = make_url(self.config["url"])
        if url.get_backend_name() == "sqlite":
            # A SQLite source is a local file: like file sources, only under the sources folder
            # (never, say, the exchange's own record store).
            if self._root is None or not url.database or url.database == ":memory:" or url.query:
                raise InvalidSource("config.url: a SQLite source must be a database file under the sources folder")
            path = (self._root / url.database).resolve()
            if not path.is_relative_to(self._root):
                raise InvalidSource(f"config.url: a SQLite source must lie under the sources folder ({self._root})")
            url = url.set(database=str(path))
        return url.set(password=self._secret) if self._secret is not None else url

    def _connect_args(self, url: URL) -> dict[str, Any]:
        # A server that accepts the connection and never answers would otherwise hold the
        # caller for as long as the operating system keeps the socket open.
        driver = url.get_driver_name()
        if driver in ("psycopg", "psycopg2", "psycopg2cffi", "pg8000"):
            key = "timeout" if driver == "pg8000" else "connect_timeout"
            return {key: max(2, math.ceil(self._connect_timeout))}  # libpq counts whole seconds, at least 2
        if driver in ("pymysql", "mysqldb", "mariadbconnector"):
            return {"connect_timeout": max(1, math.ceil(self._connect_timeout))}
        return {}

    def _engine(self) -> Engine:
        try:
            url = self._url()
            return create_engine(url, poolclass=NullPool, connect_args=self._connect_args(url))
        except (ArgumentError, ImportError) as error:
            raise InvalidSource(f"config.url: no usable database driver for {make_url(self.config['url']).drivername}: {error}") from None

    def _table(self, connection: Any) -> Table:
        try:
            return Table(self.config["table"], MetaData(), schema=self.config.get("schema"), autoload_with=connection)
        except NoSuchTableError:
            raise InvalidSource(f"config.table: the source has no table {self.config['table']}") from None

    def columns(self) -> dict[str, str]:
        """Every column of the source and its generic SQL type."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                if self.config.get("table"):
                    return {found.name: _type_name(found.type) for found in self._table(connection).columns}
                result = connection.execute(text(f"SELECT * FROM ({self.config['query']}) AS source WHERE 1 = 0"))
                # A query has no table to reflect: its columns' types are what the driver describes.
                dbapi_connection = connection.connection.dbapi_connection
                return {
                    name: _driver_type_name(dbapi_connection, described[1])
                    for name, described in zip(result.keys(), result.cursor.description, strict=True)
                }
        except SQLAlchemyError as error:
            if _timed_out(error):
                raise SourceTimeout(
                    f"the source database did not answer within {self._connect_timeout:g} s "
                    "(GOVSHARE_SOURCE_CONNECT_TIMEOUT_SECONDS)"
                ) from None
            raise SourceFailed(f"the source database could not be read: {_redact(_message(error), self._secret)}") from None
        finally:
            engine.dispose()

    def batches(
        self, columns: list[str], *, update_column: str | None = None, since: Any = None, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """The source's rows (only those whose ``update_column`` is past ``since``, when given) in record batches."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                if self.config.get("table"):
                    table = self._table(connection)
                    query = select(*(table.c[name] for name in columns))
                    if update_column is not None and since is not None:
                        query = query.where(table.c[update_column] >= since)
                else:
                    named = list(dict.fromkeys([*columns, *([update_column] if update_column else [])]))
                    source = text(self.config["query"]).columns(*(column(name) for name in named)).subquery("source")
                    query = select(*(source.c[name] for name in columns))  # quoted the source dialect's way
                    if update_column is not None and since is not None:
                        query = query.where(source.c[update_column] >= since)
                result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
                for rows in result.partitions(batch_rows):
                    values = list(zip(*rows, strict=True))
                    yield pa.RecordBatch.from_arrays([_array(cells) for cells in values], names=columns)
        except SQLAlchemyError as error:
            raise SourceFailed(f"the source database stopped answering: {_redact(_message(error), self._secret)}") from None
        finally:
            engine.dispose()


def _timed_out(error: SQLAlchemyError) -> bool:
    """Whether the driver gave up waiting for the source (a connect timeout), not the source refusing."""
    original = getattr(error, "orig", None)
    if isinstance(original, TimeoutError) or type(original).__name__ == "ConnectionTimeout":  # psycopg 3
        return True
    # pymysql reports its socket timeout as error 2003 or 2013 "... (timed out)"
    args = getattr(original, "args", ())
    return bool(args) and args[0] in (2003, 2013) and "timed out" in str(original)


def _type_name(sql_type: Any) -> str:
    try:
        return type(sql_type.as_generic()).__name__
    except NotImplementedError:
        return type(sql_type).__name__


def _driver_type_name(dbapi_connection: Any, type_code: Any) -> str:
    """A query column's type as its driver names it (PostgreSQL's type name, MySQL's field type), else its code."""
    if type_code is None:
        return "unknown"  # SQLite describes no types
    adapters = getattr(dbapi_connection, "adapters", None)  # psycopg 3: type codes are PostgreSQL type OIDs
    if adapters is not None and (info := adapters.types.get(type_code)) is not None:
        return info.name
    if type(dbapi_connection).__module__.startswith("pymysql"):
        from pymysql.constants import FIELD_TYPE

        names = {value: name for name, value in reversed(vars(FIELD_TYPE).items()) if name.isupper()}
        return names.get(type_code, str(type_code))
    return str(type_code)


def _message(error: SQLAlchemyError) -> str:
    """The driver's own words, without the statement SQLAlchemy appends."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:500]


def parse_watermark(value: str | None, type_name: str) -> Any:
    """A stored watermark back as a value comparable with the update column."""
    if value is None:
        return None
    # Generic SQL type names (sql sources) or Arrow type names (files, http sources).
    if type_name in ("Integer", "BigInteger", "SmallInteger") or type_name.startswith(("int", "uint")):
        return int(value)
    if type_name == "DateTime" or type_name.startswith("timestamp"):
        return datetime.fromisoformat(value)
    if type_name == "Date" or type_name.startswith("date"):
        return date.fromisoformat(value)
    return value


class FilesSource:
    """A Parquet or CSV file, or a folder of them, on the local store (under the sources folder) or S3."""

    kind = "files"

    def __init__(
        self, config: dict[str, Any], secret: str | None, *, files_root: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.config, self._secret, self._root, self._connect_timeout = config, secret, files_root, connect_timeout

    @staticmethod
    def split_secret(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        unknown = set(config) - {"path", "format", "endpoint", "region", "access_key", "secret_key"}
        if unknown:
            raise InvalidSource(f"config: unknown field(s) {', '.join(sorted(unknown))} for a files source")
        if not isinstance(config.get("path"), str) or not config["path"]:
            raise InvalidSource("config.path: a file or folder (a local path, or s3://bucket/prefix) is required")
        if config.get("format", "parquet") not in ("parquet", "csv"):
            raise InvalidSource("config.format: parquet or csv")
        clean = {key: value for key, value in config.items() if key != "secret_key"}
        return clean, config.get("secret_key")

    def _dataset(self, *, text: bool = True) -> ds.Dataset:
        path = self.config["path"]
        if path.startswith("s3://"):
            if self.config.get("endpoint"):
                try:
                    outbound.policy().check_url(self.config["endpoint"])
                except outbound.OutboundRefused as error:
                    raise SourceAddressRefused(f"config.endpoint: {error}") from None
            filesystem = pafs.S3FileSystem(
                access_key=self.config.get("access_key"), secret_key=self._secret,
                endpoint_override=self.config.get("endpoint"), region=self.config.get("region") or "us-east-1",
                connect_timeout=self._connect_timeout,
            )
            location = path.removeprefix("s3://")
        else:
            if self._root is None:
                raise InvalidSource("config.path: local file sources are not enabled")
            resolved = (self._root / path).resolve()
            if not resolved.is_relative_to(self._root):
                raise InvalidSource(f"config.path: local sources must lie under the sources folder ({self._root})")
            filesystem, location = pafs.LocalFileSystem(), str(resolved)
        try:
            found = ds.dataset(location, format=self.config.get("format", "parquet"), filesystem=filesystem)
            if self.config.get("format") == "csv" and text:
                # CSV has no types: every column is read as text (a district "01" must not become 1) and cast per item.
                text_schema = pa.schema([pa.field(name, pa.string()) for name in found.schema.names])
                found = ds.dataset(location, format="csv", filesystem=filesystem, schema=text_schema)
            return found
        except (OSError, pa.ArrowInvalid) as error:
            raise SourceFailed(f"the files could not be read: {_redact(str(error), self._secret)}") from None

    def columns(self) -> dict[str, str]:
        """Every column and its type; CSV columns are read as text, named with the type their values look like."""
        if self.config.get("format") != "csv":
            return {field.name: str(field.type) for field in self._dataset().schema}
        # pyarrow infers each column's type from the first block of the first file: enough to notice
        # dates that became free text, say, though not a change that starts further down.
        inferred = self._dataset(text=False).schema
        return {field.name: _text_holding(field.type) for field in inferred}

    def batches(
        self, columns: list[str], *, update_column: str | None = None, since: Any = None, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        dataset = self._dataset()
        condition = ds.field(update_column) >= since if update_column is not None and since is not None else None
        try:
            for batch in dataset.to_batches(columns=columns, filter=condition, batch_size=batch_rows):
                yield batch
        except (OSError, pa.ArrowInvalid) as error:
            raise SourceFailed(f"the files stopped being readable: {_redact(str(error), self._secret)}") from None


def _text_holding(inferred: pa.DataType) -> str:
    if pa.types.is_string(inferred) or pa.types.is_large_string(inferred) or pa.types.is_null(inferred):
        return "string"
    return f"string holding {inferred}"


class HttpSource:
    """An HTTP JSON API answering pages of records, followed by a next-page link or a page number."""

    kind = "http"

    def __init__(self, config: dict[str, Any], secret: str | None, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS, **_: Any) -> None:
        self.config, self._secret, self._connect_timeout = config, secret, connect_timeout

    @staticmethod
    def split_secret(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        unknown = set(config) - {"url", "records", "next", "page_param", "token"}
        if unknown:
            raise InvalidSource(f"config: unknown field(s) {', '.join(sorted(unknown))} for an http source")
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidSource("config.url: an http(s) URL is required")
        clean = {key: value for key, value in config.items() if key != "token"}
        return clean, config.get("token")

    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        records_key, next_key = self.config.get("records", "records"), self.config.get("next", "next")
        page_param = self.config.get("page_param")
        url: str | None = self.config["url"]
        page = 1
        timeout = httpx.Timeout(HTTP_READ_TIMEOUT_SECONDS, connect=self._connect_timeout)
        # Redirects are followed, each checked by the outbound policy like the URL itself.
        with outbound.client(headers=headers, timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client:
            while url:
                try:
                    response = client.get(url, params={page_param: page} if page_param else None)
                    response.raise_for_status()
                    body = response.json()
                except outbound.OutboundRefused as error:
                    raise SourceAddressRefused(f"config.url (or a redirect or next link from it): {error}") from None
                except httpx.ConnectTimeout:
                    raise SourceTimeout(
                        f"the HTTP source did not accept a connection within {self._connect_timeout:g} s "
                        "(GOVSHARE_SOURCE_CONNECT_TIMEOUT_SECONDS)"
                    ) from None
                except (httpx.HTTPError, ValueError) as error:
                    raise SourceFailed(f"the HTTP source failed: {_redact(str(error), self._secret)}") from None
                records = body.get(records_key) if isinstance(body, dict) else body
                if not isinstance(records, list):
                    raise SourceFailed(f"the HTTP source's answer has no list of records under '{records_key}'")
                if not records:
                    return
                yield records
                if page_param:
                    page += 1
                else:
                    link = body.get(next_key) if isinstance(body, dict) else None
                    url = urljoin(url, link) if link else None

    def columns(self) -> dict[str, str]:
        for records in self._pages():
            return {field.name: str(field.type) for field in pa.Table.from_pylist(records[:1000]).schema}
        return {}

    def batches(self, columns: list[str], *, update_column: str | None = None, since: Any = None, **_: Any) -> Iterator[pa.RecordBatch]:
        for records in self._pages():
            table = pa.table({name: _array(tuple(record.get(name) for record in records)) for name in columns})
            if update_column is not None and since is not None:
                table = table.filter(pc.greater_equal(table.column(update_column), pa.scalar(since)))
            yield from table.to_batches()


def _redact(text_: str, secret: str | None) -> str:
    return text_.replace(secret, "***") if secret else text_


SOURCES: dict[str, Any] = {SqlSource.kind: SqlSource, FilesSource.kind: FilesSource, HttpSource.kind: HttpSource}
