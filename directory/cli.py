"""``govshare datasets``: the directory from the command line, acting locally on the store.

Commands act as one department (``--as-department``, or the dataset's own) and
are audited with the actor ``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

# The directory's services (pyarrow, DuckDB) are imported by each command when it runs, so
# that ``govshare --help`` and the other commands stay fast (see govshare.cli).
if TYPE_CHECKING:
    from directory import listing
    from govshare.db import Database
    from govshare.errors import InvalidInput

datasets_app = typer.Typer(help="The resource directory: datasets and their data versions", no_args_is_help=True, rich_markup_mode=None)
AsDepartment = Annotated[
    Optional[str], typer.Option("--as-department", help="act as this department (default: the dataset's own)")
]


def _database() -> Database:
    from govshare.db import Database
    from govshare.keys import KeyStore
    from govshare.settings import get_settings

    settings = get_settings()
    return Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))


def _store_settings() -> tuple[str, float]:
    from govshare.settings import get_settings

    settings = get_settings()
    return settings.resolved_database_url, settings.sqlite_busy_timeout_seconds


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _print_errors(error: InvalidInput) -> None:
    for problem in error.extra.get("errors", []):
        if "row" in problem:
            where = f"row {problem['row']}, " if problem["row"] is not None else ""
            typer.echo(f"  {where}column {problem['column']}: {problem['message']} ({problem['rule']})", err=True)
        else:
            typer.echo(f"  {problem['field']}: {problem['message']} ({problem['rule']})", err=True)


@datasets_app.command("register")
def register(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a dataset in the unified format (JSON)")], as_department: AsDepartment = None) -> None:
    """Register a dataset described in a JSON file."""
    from directory import service
    from govshare.errors import InvalidInput

    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{file} is not JSON: {error}") from error
    department = (as_department or (document.get("department") if isinstance(document, dict) else None) or "").upper()
    database = _database()
    try:
        with database.transaction() as session:
            dataset = service.register_dataset(session, document=document, department=department, actor=_actor())
            typer.echo(f"dataset {dataset.code} registered for {dataset.department_code}")
    except InvalidInput as error:
        typer.echo(f"error: {error.detail}", err=True)
        _print_errors(error)
        raise typer.Exit(1) from None
    finally:
        database.dispose()


@datasets_app.command("list")
def list_datasets(
    q: Annotated[Optional[str], typer.Option(help="words to search for")] = None,
    department: Annotated[Optional[str], typer.Option()] = None,
    domain: Annotated[Optional[str], typer.Option()] = None,
    share_type: Annotated[Optional[str], typer.Option()] = None,
    delivery: Annotated[Optional[str], typer.Option(help="extract or interface")] = None,
    page: int = 1,
    page_size: int = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the search answer as JSON")] = False,
) -> None:
    """Search the directory (active datasets)."""
    from directory import listing
    from govshare import readonly

    filters = {"q": q, "department": department, "domain": domain, "share_type": share_type, "delivery": delivery,
               "page": page, "page_size": page_size}
    with readonly.connect_to_the_configured_store(_store_settings) as reader:
        # Read without SQLAlchemy where the store allows (a fast command: see govshare.readonly).
        result = listing.search(reader, **filters) if reader is not None else None
    if result is None:
        result = _listing_through_the_service(filters)
    items = result.items
    if as_json:
        typer.echo(json.dumps({"items": items, "total": result.total, "facets": result.facets}, ensure_ascii=False, indent=2))
        return
    for item in items:
        version = f"v{item['latest_version']}" if item["latest_version"] else "no data"
        typer.echo(f"{item['code']}\t{item['department']}\t{item['share_type']}\t{version}\t{item['title']}")
    typer.echo(f"{result.total} dataset(s)", err=True)


def _listing_through_the_service(filters: dict) -> listing.Listing:
    from directory import listing, search, service

    database = _database()
    try:
        with database.transaction(write=False) as session:
            result = search.search(session, **filters)
            return listing.Listing(items=[service.dataset_summary(dataset) for dataset in result.datasets],
                                   total=result.total, facets=result.facets)
    finally:
        database.dispose()


@datasets_app.command("show")
def show(code: str) -> None:
    """Print a dataset's description, state and latest quality report as JSON."""
    from directory import service

    database = _database()
    try:
        with database.transaction(write=False) as session:
            view = service.dataset_view(session, service.get_dataset(session, code))
    finally:
        database.dispose()
    typer.echo(json.dumps(view, ensure_ascii=False, indent=2))


@datasets_app.command("upload")
def upload(
    code: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, Parquet or JSON lines")],
    as_department: AsDepartment = None,
) -> None:
    """Check a data file against the dataset's items and store it as the next version."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from directory import service
    from directory.errors import NotOwnDepartment, VersionRefused
    from govshare import storage
    from govshare.errors import InvalidInput
    from govshare.settings import get_settings

    settings = get_settings()
    database = _database()
    console = Console(stderr=True)
    try:
        with database.transaction(write=False) as session:
            dataset = service.get_dataset(session, code)
            if as_department:
                service.ensure_own(dataset, department=as_department.upper())
        # The check (minutes for a large file) runs in no transaction: on SQLite a write
        # transaction held that long would stop a running server's writes, the ledger's too.
        with file.open("rb") as source, Progress(
            TextColumn(f"checking {file.name}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False,
        ) as progress:
            task = progress.add_task("upload", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            snapshot = service.check_file(dataset=dataset, source=source, filename=file.name,
                                          store=storage.for_settings(settings), progress=advance)
        with database.transaction() as session:
            version = service.store_checked(session, dataset=service.get_dataset(session, code), snapshot=snapshot,
                                            source_name=file.name, store=storage.for_settings(settings), actor=_actor())
            view = service.version_view(version)
    except (VersionRefused, NotOwnDepartment) as error:
        typer.echo(f"error: {error.detail}", err=True)
        if isinstance(error, InvalidInput):
            _print_errors(error)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(json.dumps(view, ensure_ascii=False, indent=2))
