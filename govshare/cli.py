"""The ``govshare`` command.

Only typer is imported up front: each command imports what it needs when it runs, so that
``govshare --help`` and the list commands start fast, and so that a ``serve --workers N``
worker (which multiprocessing starts by running this script again) answers its supervisor's
health check before it imports the app (see ``serve``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from approvals.cli import approvals_app
from connectors.cli import sync as sync_command
from directory.cli import datasets_app

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from govshare.db import Database
    from govshare.readonly import Reader
    from govshare.settings import Settings

app = typer.Typer(help="govshare: data-sharing exchange and resource directory", no_args_is_help=True, rich_markup_mode=None)
departments_app = typer.Typer(help="Departments that provide and demand data", no_args_is_help=True, rich_markup_mode=None)
clients_app = typer.Typer(help="Machine clients (OAuth2 client credentials)", no_args_is_help=True, rich_markup_mode=None)
users_app = typer.Typer(help="People who sign in to the web UI", no_args_is_help=True, rich_markup_mode=None)
audit_app = typer.Typer(help="The hash-chained audit log", no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="The exchange's signing keys", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(departments_app, name="departments")
app.add_typer(clients_app, name="clients")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")
app.add_typer(approvals_app, name="approvals")
app.command("sync")(sync_command)


def _settings() -> Settings:
    from govshare.settings import get_settings

    return get_settings()


def _database(settings: Settings) -> Database:
    from govshare.db import Database
    from govshare.keys import KeyStore

    keystore = KeyStore(settings.resolved_keys_dir)
    return Database(settings.resolved_database_url, keystore=keystore)


def _reader() -> AbstractContextManager[Reader | None]:
    """The store read without SQLAlchemy, for the list commands (``None``: a store only the SQLAlchemy path reads)."""
    from govshare import readonly

    return readonly.connect_to_the_configured_store(_store_settings)


def _store_settings() -> tuple[str, float]:
    """The record store's URL and SQLite busy timeout from the full settings."""
    settings = _settings()
    return settings.resolved_database_url, settings.sqlite_busy_timeout_seconds


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def init() -> None:
    """Create or migrate the store under GOVSHARE_HOME (safe to run again)."""
    from govshare.store import initialise

    result = initialise(_settings())
    typer.echo(f"store ready at {result.home}")
    typer.echo(f"  records:  {result.database_url} (schema {result.revision})")
    typer.echo(f"  keys:     {'generated' if result.keys_created else 'kept'}")


@departments_app.command("add")
def departments_add(code: str, name: Annotated[str, typer.Option(help="the department's full name")]) -> None:
    """Register a department."""
    from govshare import identities

    with _database(_settings()).transaction() as session:
        department = identities.add_department(session, code=code, name=name)
        typer.echo(f"department {department.code} added")


@departments_app.command("list")
def departments_list() -> None:
    """List departments."""
    with _reader() as reader:
        if reader is not None:
            for code, name in reader.rows("SELECT code, name FROM departments ORDER BY code"):
                typer.echo(f"{code}\t{name}")
            return
    from sqlalchemy import select

    from govshare.models import Department

    with _database(_settings()).transaction(write=False) as session:
        for department in session.execute(select(Department).order_by(Department.code)).scalars():
            typer.echo(f"{department.code}\t{department.name}")


@clients_app.command("add")
def clients_add(
    department: Annotated[str, typer.Option(help="the client's department code")],
    roles: Annotated[str, typer.Option(help="comma-separated: provider,demander,manager,service,citizen_portal,admin")],
    name: Annotated[Optional[str], typer.Option(help="a label for people")] = None,
    jwks_file: Annotated[Optional[Path], typer.Option(help="public JWKS for private_key_jwt")] = None,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="authenticate by private_key_jwt only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print {client_id, client_secret} as JSON")] = False,
) -> None:
    """Register a machine client; its secret is printed once and stored only as a hash."""
    from govshare import identities

    public_jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    with _database(_settings()).transaction() as session:
        created = identities.add_client(
            session, department_code=department, roles=roles.split(","), name=name,
            public_jwks=public_jwks, with_secret=not no_secret,
        )
        client_id, secret = created.client.client_id, created.client_secret
    if as_json:
        typer.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
    else:
        typer.echo(f"client_id:     {client_id}")
        if secret:
            typer.echo(f"client_secret: {secret}   (shown once: store it now)")


@clients_app.command("list")
def clients_list(department: Annotated[Optional[str], typer.Option()] = None) -> None:
    """List clients (never their secrets)."""
    with _reader() as reader:
        if reader is not None:
            # As identities.list_clients reads them.
            where, parameters = ("WHERE department_code = ? ", [department.upper()]) if department else ("", [])
            sql = f"SELECT client_id, department_code, roles, disabled_at, name FROM clients {where}ORDER BY department_code, client_id"
            for client_id, department_code, roles, disabled_at, name in reader.rows(sql, parameters):
                state = "active" if disabled_at is None else "disabled"
                typer.echo(f"{client_id}\t{department_code}\t{','.join(reader.json(roles))}\t{state}\t{name}")
            return
    from govshare import identities

    with _database(_settings()).transaction(write=False) as session:
        for client in identities.list_clients(session, department_code=department):
            state = "active" if client.active else "disabled"
            typer.echo(f"{client.client_id}\t{client.department_code}\t{','.join(client.roles)}\t{state}\t{client.name}")


@clients_app.command("disable")
def clients_disable(client_id: str) -> None:
    """Disable a client: its tokens are refused from the next request on."""
    from govshare import identities

    with _database(_settings()).transaction() as session:
        identities.disable_client(session, client_id=client_id)
    typer.echo(f"client {client_id} disabled")


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="comma-separated roles, e.g. manager")],
    department: Annotated[Optional[str], typer.Option()] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from standard input")] = False,
) -> None:
    """Register a person for the web UI (password hashed with scrypt)."""
    if not password_stdin:
        _fail("give the password on standard input with --password-stdin (never on the command line)", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    from govshare import identities

    with _database(_settings()).transaction() as session:
        user = identities.add_user(session, name=name, roles=role.split(","), password=password, department_code=department)
        typer.echo(f"user {user.name} added with roles {','.join(user.roles)}")


def _password_from_stdin(password_stdin: bool) -> str:
    if not password_stdin:
        _fail("give the password on standard input with --password-stdin (never on the command line)", 2)
    return sys.stdin.readline().rstrip("\r\n")


@users_app.command("set-password")
def users_set_password(
    name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the new password from standard input")] = False,
) -> None:
    """Give a person a new password; they are signed out of every browser."""
    from govshare import identities

    password = _password_from_stdin(password_stdin)
    with _database(_settings()).transaction() as session:
        user = identities.set_password(session, name=name, password=password)
        typer.echo(f"password of {user.name} changed; their sessions have ended")


@users_app.command("set-roles")
def users_set_roles(name: str, role: Annotated[str, typer.Option(help="comma-separated roles, e.g. manager")]) -> None:
    """Change a person's roles; they are signed out of every browser."""
    from govshare import identities

    with _database(_settings()).transaction() as session:
        user = identities.set_roles(session, name=name, roles=role.split(","))
        typer.echo(f"user {user.name} now has roles {','.join(user.roles)}; their sessions have ended")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the whole audit chain; exits 1 and names the first broken entry if it is broken."""
    import exchange.ledger  # noqa: F401  (registers the check of the ledger lines the chain signs)
    from govshare import audit

    with _database(_settings()).transaction(write=False) as session:
        result = audit.verify(session)
    typer.echo(json.dumps(result.as_dict(), indent=2))
    if not result.ok:
        broken = result.first_broken
        typer.echo(f"audit chain BROKEN at entry {broken.seq}: {broken.reason}", err=True)
        raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key and make it active; old keys stay published for verification."""
    from govshare.keys import KeyStore

    kid = KeyStore(_settings().resolved_keys_dir).rotate()
    typer.echo(f"new active signing key {kid}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    demo_data: Annotated[bool, typer.Option("--demo", help="fill an empty store with demo data first")] = False,
    demo_citizens: Annotated[int, typer.Option(help="how many synthetic citizens the demo registers")] = 3_000_000,
    workers: Annotated[int, typer.Option(min=1, help="server processes sharing the port (one Python process uses about one core)")] = 1,
) -> None:
    """Run the server (creating or migrating the store first)."""
    import uvicorn

    from govshare import memory
    from govshare.logs import log_config
    from govshare.settings import get_settings
    from govshare.store import initialise

    memory.configure_malloc()
    if "GOVSHARE_ISSUER" not in os.environ:
        # No public URL configured: the issuer (token audience, base of links) is where we listen.
        # Set in the environment, which the served app's settings are read from (govshare.serving).
        public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        os.environ["GOVSHARE_ISSUER"] = f"http://{public_host}:{port}"
        get_settings.cache_clear()  # read again, with it
    settings = _settings()
    initialise(settings)
    if demo_data:
        _seed_demo(settings, citizens=demo_citizens)
    # By import string (govshare.serving): uvicorn builds the app in this process, or, with
    # --workers, in each process it spawns, from the same environment.
    uvicorn.run("govshare.serving:app", factory=True, workers=workers, host=host, port=port, log_level="info",
                log_config=log_config(), http="govshare.serving:Protocol")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes, to check the harness (CI runs this)")] = False,
    out: Annotated[Path, typer.Option(help="where the Markdown report is written (default: REPORT.md in the current folder)")] = Path("REPORT.md"),
    only: Annotated[Optional[list[str]], typer.Option(help="run only this section (repeatable): extract, lookup, live, search, memory, metrics, cli")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="record store to measure on (default: embedded SQLite)")] = None,
    rows: Annotated[Optional[int], typer.Option(min=1000, help="rows of the lookup section's dataset (default 10,000,000; --quick 50,000)")] = None,
    seconds: Annotated[Optional[float], typer.Option(min=1, help="length of each load run in seconds (default 30; --quick 3)")] = None,
) -> None:
    """Measure the exchange against the bare engines and write a Markdown report."""
    from evaluation.bench import run

    unknown = sorted(set(only or []) - set(run.SECTIONS))
    if unknown:
        _fail(f"unknown section {', '.join(unknown)}; choose from {', '.join(run.SECTIONS)}", code=2)
    report = run.run(quick=quick, out=out, only=only, database_url=database_url, rows=rows, seconds=seconds)
    missed = [row.measure for rows in report.rows.values() for row in rows if row.met is False]
    typer.echo(f"report written to {out}" + (f"; targets missed: {len(missed)}" if missed else "; every target met"))


def _seed_demo(settings: Settings, *, citizens: int) -> None:
    from directory.demo import seed_directory
    from exchange.demo import seed_exchange
    from govshare import demo, storage

    with _database(settings).transaction() as session:
        if not demo.store_is_empty(session):
            typer.echo(f"store already holds data; demo credentials are in {settings.resolved_home / 'demo-credentials.json'}")
            return
        credentials = demo.seed_identities(session)
        typer.echo(f"filling the demo store: {citizens:,} synthetic citizens ...")
        seed_directory(session, store=storage.for_settings(settings), rows=citizens)
        seed_exchange(session, settings=settings)
    demo.save_credentials(settings.resolved_home, credentials)
    typer.echo(demo.describe(credentials, settings.issuer))


def configure_logging() -> None:
    """The server's log set-up for every command: what a command logs (a failed sync, a lost
    ledger line) withholds personal data as the server's log does (``govshare.logs.log_config``).

    Installed when the first record reaches the root logger's level: the set-up is uvicorn's,
    and importing uvicorn would cost every command (a list command logs nothing) a tenth of a
    second. Until then the root logger holds its level (WARNING) and one handler that installs it.
    """
    import logging

    class InstallOnFirstRecord(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            import logging.config

            from govshare.logs import log_config

            logging.config.dictConfig(log_config())  # replaces this handler
            for handler in logging.getLogger().handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)

    root = logging.getLogger()
    root.handlers = [InstallOnFirstRecord()]
    root.setLevel(logging.WARNING)


def main() -> None:
    """Entry point: domain errors become one clear line and a non-zero exit."""
    configure_logging()
    try:
        app()
    except Exception as error:
        from govshare.errors import GovshareError  # loaded by whatever raised one

        if not isinstance(error, GovshareError):
            raise
        typer.echo(f"error: {error.detail}", err=True)
        sys.exit(1)
