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


# --- directory ---------------------------------------------------------------------------


def dataset_document(code: str = "PSB-HOUSEHOLD", department: str = "PSB", **changes) -> dict:
    """The contract's example dataset body (DESIGN.md), for ``department``, with ``changes`` applied."""
    document = {
        "code": code, "title": "Household registration", "department": department,
        "summary": "Registered residents and their households", "domain": "household",
        "share_type": "conditional", "open_type": "closed", "update_frequency": "daily",
        "lookup_key": "citizen_id", "delivery_modes": ["extract", "interface"],
        "items": [
            {"name": "citizen_id", "type": "string", "description": "national ID number",
             "sensitivity": "personal", "required": True, "pattern": "^[0-9]{17}[0-9X]$"},
            {"name": "name", "type": "string", "description": "full name", "sensitivity": "personal"},
            {"name": "district", "type": "string", "description": "district code", "sensitivity": "internal"},
            {"name": "birth_date", "type": "date", "description": "date of birth", "sensitivity": "personal"},
        ],
    }
    document.update(changes)
    return document


def citizen_id(first17: str) -> str:
    """A valid 18-character citizen ID (GB 11643) for 17 digits, computed independently of the code under test."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights)) % 11]


class DirectoryFactory:
    """Registers datasets and uploads versions through the HTTP API, as the department's provider."""

    def __init__(self, factory: Factory) -> None:
        self.factory, self.http = factory, factory.http
        self._providers: dict[str, dict[str, str]] = {}

    def provider(self, department: str) -> dict[str, str]:
        if department not in self._providers:
            self._providers[department] = self.factory.caller(department, "provider")
        return self._providers[department]

    def dataset(self, code: str = "PSB-HOUSEHOLD", department: str = "PSB", **changes) -> dict:
        response = self.http.post("/api/v1/datasets", json=dataset_document(code, department, **changes), headers=self.provider(department))
        assert response.status_code == 201, response.text
        return response.json()

    def upload(self, code: str, content: bytes, filename: str = "data.csv", department: str = "PSB"):
        return self.http.post(
            f"/api/v1/datasets/{code}/versions", files={"file": (filename, content)}, headers=self.provider(department)
        )


# --- pages ---------------------------------------------------------------------------------


class Element:
    """One element of a parsed page: its tag, attributes, children and text."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Element | None") -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    @property
    def text(self) -> str:
        """The text inside, with runs of white space made single spaces."""
        parts = [child if isinstance(child, str) else f" {child.text} " for child in self.children]
        return " ".join("".join(parts).split())

    def iter(self):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list["Element"]:
        """Descendants with this tag and these attribute values (``class_`` matches one class)."""
        found = []
        for element in self.iter():
            if tag and element.tag != tag:
                continue
            if all(_attr_matches(element, name, value) for name, value in attrs.items()):
                found.append(element)
        return found

    def find(self, tag: str | None = None, **attrs: str) -> "Element | None":
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def has(self, name: str) -> bool:
        """Whether the attribute is present (boolean attributes such as ``selected`` have no value)."""
        return name in self.attrs


def _attr_matches(element: Element, name: str, value: str) -> bool:
    if name == "class_":
        return value in (element.get("class") or "").split()
    return element.get(name.rstrip("_").replace("_", "-")) == value


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def parse_html(html: str) -> Element:
    """A page as a tree of ``Element``s (stdlib html.parser; enough to check our own pages)."""
    from html.parser import HTMLParser

    root = Element("#document", {}, None)

    class _Builder(HTMLParser):
        current = root

        def handle_starttag(self, tag, attrs):
            element = Element(tag, dict(attrs), self.current)
            self.current.children.append(element)
            if tag not in _VOID:
                self.current = element

        def handle_startendtag(self, tag, attrs):
            self.current.children.append(Element(tag, dict(attrs), self.current))

        def handle_endtag(self, tag):
            node = self.current
            while node is not None and node.tag != tag:
                node = node.parent
            if node is not None and node.parent is not None:
                self.current = node.parent

        def handle_data(self, data):
            self.current.children.append(data)

    builder = _Builder(convert_charrefs=True)
    builder.feed(html)
    builder.close()
    return root
