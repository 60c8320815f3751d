"""The README stays true: every setting, command and route a user meets is documented."""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer.main

from govshare.cli import app as cli_app
from govshare.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group, prefix: str = "govshare") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a group of subcommands
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_every_setting_is_documented():
    missing = [f"GOVSHARE_{name.upper()}" for name in Settings.model_fields if f"`GOVSHARE_{name.upper()}`" not in README]
    assert missing == []


def test_every_command_is_documented():
    commands = _commands(typer.main.get_command(cli_app))
    assert "govshare audit verify" in commands
    missing = [command for command in commands if f"`{command}" not in README]
    assert missing == []


def test_every_route_is_documented(app):
    # The OpenAPI document lists every API route (included routers are nested in app.routes).
    paths = app.openapi()["paths"]
    routes = [f"{method.upper()} {path}" for path, operations in paths.items() for method in operations]
    assert "GET /api/v1/audit/verify" in routes and "POST /oauth/token" in routes
    missing = [route for route in routes if f"`{route}" not in README]
    assert missing == []


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert len(blocks) == 2
    run_command, test_command = blocks
    assert run_command.endswith("govshare serve --demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"TEST_COMMAND='{test_command}'" in ci
    # The suite's services (PostgreSQL, MariaDB, Redis, Chromium, wrk, nginx) come up first, by the same script in CI.
    assert test_command.startswith(".ci/services && ")
    services = (ROOT / ".ci" / "services")
    assert os.access(services, os.X_OK)
    installed = next(line for line in services.read_text().splitlines() if line.startswith("install "))
    assert {"postgresql", "mariadb-server", "redis-server", "chromium", "wrk", "nginx"} <= set(installed.split())


def test_the_readmes_json_examples_are_valid_against_their_schemas():
    import json

    import schemas

    examples = re.findall(r"<!-- schema: (\w+) -->\n```json\n(.*?)\n```", README, re.S)
    assert {name for name, _ in examples} >= {"dataset", "application"}
    for name, text in examples:
        assert schemas.errors(name, json.loads(text)) == [], name
