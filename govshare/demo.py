"""Demo identities for ``govshare serve --demo``: departments, clients and a manager.

Secrets and the manager's password are generated afresh, printed once and written
to ``GOVSHARE_HOME/demo-credentials.json`` (readable only by its owner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from govshare import identities
from govshare.keys import _write_private
from govshare.models import Department
from govshare.security import generate_secret

DEMO_DEPARTMENTS = [
    ("PSB", "Public Security Bureau"),
    ("CAB", "Civil Affairs Bureau"),
    ("HRSS", "Human Resources and Social Security Bureau"),
    ("EDU", "Education Bureau"),
    ("HEALTH", "Health Commission"),
    ("DATA", "Big Data Management Bureau"),
]

# (department, roles, what the client is for)
DEMO_CLIENTS = [
    ("PSB", ["provider"], "publishes household registration"),
    ("CAB", ["provider", "demander", "service"], "publishes marriage records; its marriage-registration system pulls household data"),
    ("HEALTH", ["provider", "demander", "service"], "publishes birth records; its birth-registration system pulls data"),
    ("HRSS", ["provider", "demander", "service"], "publishes social insurance; its benefits system pulls data"),
    ("EDU", ["provider", "demander", "service"], "publishes education records; its enrolment system pulls data"),
    ("DATA", ["manager"], "the data manager's API client"),
    ("DATA", ["citizen_portal"], "the citizen portal"),
    ("DATA", ["admin"], "administration"),
]

DEMO_MANAGER = "manager"


def store_is_empty(session: Session) -> bool:
    return session.execute(select(func.count()).select_from(Department)).scalar_one() == 0


def seed_identities(session: Session) -> dict[str, Any]:
    """Create the demo departments, clients and manager; returns their credentials."""
    for code, name in DEMO_DEPARTMENTS:
        identities.add_department(session, code=code, name=name)
    clients = []
    for department, roles, purpose in DEMO_CLIENTS:
        created = identities.add_client(session, department_code=department, roles=roles, name=f"{department}: {purpose}")
        clients.append(
            {"department": department, "roles": roles, "purpose": purpose,
             "client_id": created.client.client_id, "client_secret": created.client_secret}
        )
    password = generate_secret(12)
    identities.add_user(session, name=DEMO_MANAGER, roles=["manager"], password=password, department_code="DATA")
    return {"manager": {"name": DEMO_MANAGER, "password": password}, "clients": clients}


def save_credentials(home: Path, credentials: dict[str, Any]) -> Path:
    path = home / "demo-credentials.json"
    _write_private(path, json.dumps(credentials, indent=2))
    return path


def describe(credentials: dict[str, Any], base_url: str) -> str:
    """How to log in, in plain words."""
    manager = credentials["manager"]
    lines = [
        "govshare demo is ready.",
        f"  Approval UI: {base_url}/ui  (user '{manager['name']}', password '{manager['password']}')",
        f"  API docs:    {base_url}/docs",
        "  Machine clients (OAuth2 client credentials at POST /oauth/token):",
    ]
    for client in credentials["clients"]:
        lines.append(
            f"    {client['department']:<7} {','.join(client['roles']):<26} {client['client_id']}  secret {client['client_secret']}"
        )
    lines.append("  Example: curl -u CLIENT_ID:SECRET -d grant_type=client_credentials " + base_url + "/oauth/token")
    return "\n".join(lines)
