"""``govshare approvals ...``: run the approvals' jobs by hand (or from cron, with GOVSHARE_JOBS_ENABLED=false)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from govshare.db import Database

approvals_app = typer.Typer(help="Applications and grants: time limits and notifications", no_args_is_help=True, rich_markup_mode=None)


def _database() -> Database:
    # Imported when a command runs: ``govshare --help`` stays fast (see govshare.cli).
    from govshare.db import Database
    from govshare.keys import KeyStore
    from govshare.settings import get_settings

    settings = get_settings()
    return Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))


@approvals_app.command("escalate")
def escalate() -> None:
    """Raise an 'application.overdue' event for each application past its decision time limit."""
    from approvals import jobs

    typer.echo(f"{jobs.escalate(_database())} application(s) escalated")


@approvals_app.command("deliver-webhooks")
def deliver_webhooks() -> None:
    """Post pending events to every registered webhook now."""
    from approvals import webhooks

    typer.echo(f"{webhooks.deliver_once(_database())} event(s) delivered")
