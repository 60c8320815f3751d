"""The ``govshare`` command, run as a user runs it: the installed script, in a subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from govshare import identities
from govshare.models import Department, User
from govshare.security import verify_password
from tests.factories import DirectoryFactory

GOVSHARE = str(Path(sys.executable).parent / "govshare")


def run(settings, *args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home),
                   "GOVSHARE_DATABASE_URL": settings.resolved_database_url, **(env or {})}
    return subprocess.run([GOVSHARE, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=120)


def test_init_creates_a_fresh_embedded_store_and_is_safe_to_repeat(tmp_path):
    home = tmp_path / "fresh"
    env = {key: value for key, value in os.environ.items() if not key.startswith("GOVSHARE_")}
    env["GOVSHARE_HOME"] = str(home)
    first = subprocess.run([GOVSHARE, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "keys:     generated" in first.stdout
    assert (home / "govshare.db").exists()
    keyfile = home / "keys" / "signing-keys.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    keys_before = keyfile.read_text()
    second = subprocess.run([GOVSHARE, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "keys:     kept" in second.stdout
    assert keyfile.read_text() == keys_before


def test_init_migrates_the_configured_database(settings):
    completed = run(settings, "init")
    assert completed.returncode == 0, completed.stderr
    assert "schema " in completed.stdout


def test_departments_add_and_a_duplicate_is_refused(settings):
    assert run(settings, "departments", "add", "PSB", "--name", "Public Security Bureau").returncode == 0
    duplicate = run(settings, "departments", "add", "PSB", "--name", "Again")
    assert duplicate.returncode == 1
    assert "department PSB already exists" in duplicate.stderr
    listing = run(settings, "departments", "list")
    assert "PSB\tPublic Security Bureau" in listing.stdout


def test_clients_add_json_prints_credentials_that_get_a_token(settings, client):
    run(settings, "departments", "add", "HRSS", "--name", "Human Resources")
    completed = run(settings, "clients", "add", "--department", "HRSS", "--roles", "service,demander", "--json")
    assert completed.returncode == 0, completed.stderr
    credentials = json.loads(completed.stdout)
    assert set(credentials) == {"client_id", "client_secret"}
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(credentials["client_id"], credentials["client_secret"]))
    assert response.status_code == 200
    assert response.json()["scope"] == "service demander"
    listing = run(settings, "clients", "list")
    assert credentials["client_id"] in listing.stdout
    assert credentials["client_secret"] not in listing.stdout


def test_clients_add_refuses_an_unknown_role_or_department(settings):
    run(settings, "departments", "add", "EDU", "--name", "Education")
    wrong_role = run(settings, "clients", "add", "--department", "EDU", "--roles", "superuser", "--json")
    assert wrong_role.returncode == 1 and "unknown role 'superuser'" in wrong_role.stderr
    wrong_department = run(settings, "clients", "add", "--department", "NOPE", "--roles", "provider", "--json")
    assert wrong_department.returncode == 1 and "department NOPE does not exist" in wrong_department.stderr


def test_clients_add_with_a_public_key_set_for_private_key_jwt(settings, tmp_path):
    from joserfc.jwk import RSAKey

    run(settings, "departments", "add", "EDU", "--name", "Education")
    key = RSAKey.generate_key(2048, {"kid": "k1"}, private=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    completed = run(settings, "clients", "add", "--department", "EDU", "--roles", "service", "--jwks-file", str(jwks_file), "--no-secret", "--json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["client_secret"] is None
    leaked = tmp_path / "private.json"
    leaked.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    refused = run(settings, "clients", "add", "--department", "EDU", "--roles", "service", "--jwks-file", str(leaked), "--json")
    assert refused.returncode == 1 and "private key" in refused.stderr


def test_users_add_reads_the_password_from_stdin_and_stores_a_scrypt_hash(settings, database):
    run(settings, "departments", "add", "DATA", "--name", "Data Bureau")
    password = "a long enough passphrase"
    completed = run(settings, "users", "add", "mlin", "--role", "manager", "--department", "DATA", "--password-stdin", stdin=password + "\n")
    assert completed.returncode == 0, completed.stderr
    with database.transaction(write=False) as session:
        user = session.execute(select(User).where(User.name == "mlin")).scalar_one()
    assert user.roles == ["manager"]
    assert user.password_hash.startswith("scrypt$")
    assert password not in user.password_hash
    assert verify_password(password, user.password_hash)
    assert not verify_password("a long enough passphrasE", user.password_hash)


def test_users_add_refuses_a_password_on_the_command_line_or_a_short_one(settings):
    no_stdin = run(settings, "users", "add", "x", "--role", "manager")
    assert no_stdin.returncode == 2 and "--password-stdin" in no_stdin.stderr
    short = run(settings, "users", "add", "x", "--role", "manager", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr


def test_keys_rotate_publishes_a_second_key(settings, client):
    completed = run(settings, "keys", "rotate")
    assert completed.returncode == 0, completed.stderr
    kid = completed.stdout.split()[-1]
    assert [key["kid"] for key in client.get("/oauth/jwks").json()["keys"]][-1] == kid


def test_clients_disable_stops_its_tokens(settings, client, factory):
    credentials = factory.client("DATA", "manager")
    headers = factory.headers(credentials)
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 200
    assert run(settings, "clients", "disable", credentials.client_id).returncode == 0
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 401


def _modules_loaded(settings, *args: str) -> set[str]:
    """The modules ``govshare ARGS`` imports (each package and submodule), as ``python -X importtime`` lists them."""
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    finished = subprocess.run([sys.executable, "-X", "importtime", GOVSHARE, *args], env=environment,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return {line.rpartition("|")[2].strip() for line in finished.stderr.splitlines() if line.startswith("import time:")}


def _packages(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


# What the server loads and a command line should not wait for (seconds on a loaded machine).
APP_PACKAGES = {"fastapi", "starlette", "uvicorn", "duckdb", "pyarrow", "pandas", "numpy", "authlib", "jsonschema"}
# What the list commands do without: the ORM and every domain's mappers, the signing keys' cryptography,
# the server's log set-up (uvicorn). About 0.8 s of CPU together, against a few rows printed.
STORE_PACKAGES = {"sqlalchemy", "cryptography", "joserfc", "alembic"}


def test_help_loads_no_part_of_the_app(settings):
    loaded = _packages(_modules_loaded(settings, "--help"))
    assert "typer" in loaded  # the probe sees imports at all
    assert not loaded & (APP_PACKAGES | STORE_PACKAGES | {"pydantic", "exchange", "evaluation"}), loaded


LIST_COMMANDS = [("departments", "list"), ("clients", "list"), ("clients", "list", "--department", "psb"),
                 ("datasets", "list"), ("datasets", "list", "--q", "household", "--json")]


def test_the_list_commands_read_the_store_without_the_orm_the_keys_or_the_server(settings, factory):
    directory = DirectoryFactory(factory)
    directory.dataset("PSB-HOUSEHOLD", "PSB")
    factory.client("PSB", "provider")
    for command in LIST_COMMANDS:
        modules = _modules_loaded(settings, *command)
        assert "govshare.readonly" in modules and "typer" in modules, command  # the probe sees the command's imports
        assert not _packages(modules) & (APP_PACKAGES | STORE_PACKAGES | {"exchange", "evaluation"}), (command, _packages(modules) & (APP_PACKAGES | STORE_PACKAGES))
        assert not {"sqlalchemy.orm", "govshare.models", "govshare.keys", "govshare.db"} & modules, command
        assert "pydantic_settings" not in _packages(modules), command  # the store's URL read light (govshare.readonly)


def test_the_list_commands_print_what_the_orm_reads(settings, database, factory):
    directory = DirectoryFactory(factory)
    directory.dataset("PSB-HOUSEHOLD", "PSB", title="Household registration")
    directory.dataset("CAB-MARRIAGE", "CAB", title="Marriages", share_type="unconditional")
    factory.department("EDU", name="Education, Sport & Youth")
    provider = factory.client("PSB", "provider", "demander")
    factory.client("CAB", "service")
    assert run(settings, "clients", "disable", provider.client_id).returncode == 0
    with database.transaction(write=False) as session:
        departments = "".join(f"{d.code}\t{d.name}\n" for d in session.execute(select(Department).order_by(Department.code)).scalars())
        clients = {department: "".join(
            f"{c.client_id}\t{c.department_code}\t{','.join(c.roles)}\t{'active' if c.active else 'disabled'}\t{c.name}\n"
            for c in identities.list_clients(session, department_code=department)) for department in (None, "psb")}
    assert "EDU\tEducation, Sport & Youth\n" in departments and f"{provider.client_id}\tPSB\tprovider,demander\tdisabled\t" in clients[None]
    assert run(settings, "departments", "list").stdout == departments
    assert run(settings, "clients", "list").stdout == clients[None]
    assert run(settings, "clients", "list", "--department", "psb").stdout == clients["psb"]
    datasets = run(settings, "datasets", "list", "--department", "psb")
    assert (datasets.stdout, datasets.stderr) == ("PSB-HOUSEHOLD\tPSB\tconditional\tno data\tHousehold registration\n", "1 dataset(s)\n")
    refused = run(settings, "datasets", "list", "--delivery", "post")
    assert (refused.returncode, refused.stderr) == (1, "error: delivery must be one of: extract, interface\n")
