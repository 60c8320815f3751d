"""``govshare sync CODE``: sync a dataset from its bound source now, with a progress bar."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors import service
from directory import service as directory
from govshare import storage
from govshare.db import Database
from govshare.errors import GovshareError
from govshare.keys import KeyStore
from govshare.settings import get_settings


def sync(
    code: str,
    full: Annotated[bool, typer.Option("--full", help="read everything even when the binding is incremental")] = False,
    as_department: Annotated[Optional[str], typer.Option("--as-department", help="act as this department (default: the dataset's own)")] = None,
) -> None:
    """Sync a dataset from its bound source into a new version now; exits 1 when the sync fails."""
    settings = get_settings()
    keystore = KeyStore(settings.resolved_keys_dir)
    database = Database(settings.resolved_database_url, keystore=keystore)
    console = Console(stderr=True)
    try:
        with database.transaction(write=False) as session:
            dataset = directory.get_dataset(session, code)
            if as_department:
                directory.ensure_own(dataset, department=as_department.upper())
        # Runs a process killed mid-sync left "running" are ended first, and its temporary files removed.
        service.recover_interrupted(database)
        storage.for_settings(settings).remove_stale_temporaries()
        with Progress(
            SpinnerColumn(), TextColumn(f"syncing {code}: {{task.completed:,}} rows read"), TimeElapsedColumn(),
            console=console, transient=False,
        ) as progress:
            task = progress.add_task("sync", total=None)
            run = service.run_sync(
                database, dataset_code=dataset.code, store=storage.for_settings(settings), keystore=keystore,
                actor=f"cli:{getpass.getuser()}", full=full, files_root=settings.resolved_sources_dir,
                connect_timeout=settings.source_connect_timeout_seconds, progress=lambda rows: progress.update(task, completed=rows),
            )
        view = service.run_view(run)
    except GovshareError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(json.dumps(view, ensure_ascii=False, indent=2))
    if run.outcome != "ok":
        typer.echo(f"error: the sync failed ({run.error_type}): {run.error}", err=True)
        raise typer.Exit(1)
