"""Factories: departments, clients and tokens made through the real services and endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.testclient import TestClient

from govshare import identities
from govshare.errors import NotFound
from govshare.db import Database


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None
    department: str
    roles: tuple[str, ...]


class Factory:
    """Makes what a test needs through the same code paths users go through."""

    def __init__(self, database: Database, client: TestClient) -> None:
        self.database, self.http = database, client

    def department(self, code: str, name: str | None = None) -> str:
        with self.database.transaction() as session:
            try:
                identities.get_department(session, code)
            except NotFound:
                identities.add_department(session, code=code, name=name or f"{code} department")
        return code

    def client(self, department: str, *roles: str, public_jwks: dict | None = None, with_secret: bool = True) -> ClientCredentials:
        self.department(department)
        with self.database.transaction() as session:
            created = identities.add_client(
                session, department_code=department, roles=list(roles), public_jwks=public_jwks, with_secret=with_secret
            )
            return ClientCredentials(created.client.client_id, created.client_secret, department, tuple(roles))

    def token(self, credentials: ClientCredentials, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        response = self.http.post("/oauth/token", data=data, auth=(credentials.client_id, credentials.client_secret))
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def headers(self, credentials: ClientCredentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(credentials)}"}

    def caller(self, department: str, *roles: str) -> dict[str, str]:
        """Bearer headers of a new client of ``department`` holding ``roles``."""
        return self.headers(self.client(department, *roles))
