"""Departments, machine clients and people: creating and finding them."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from govshare import audit
from govshare.db import utcnow
from govshare.errors import Conflict, InvalidInput, NotFound
from govshare.models import Client, Department, Role, User, WebSession
from govshare.security import generate_secret, hash_password, hash_secret

SYSTEM_ACTOR = "system"


def parse_roles(roles: Iterable[str]) -> list[str]:
    """Validate role names, keeping their order and dropping repeats."""
    names: list[str] = []
    for raw in roles:
        role = raw.strip()
        if not role:
            continue
        if role not in Role.__members__:
            allowed = ", ".join(Role.__members__)
            raise InvalidInput(f"unknown role '{role}'; roles are: {allowed}")
        if role not in names:
            names.append(role)
    if not names:
        raise InvalidInput("at least one role is required")
    return names


def add_department(session: Session, *, code: str, name: str, actor: str = SYSTEM_ACTOR) -> Department:
    """Register a department; its code is how everything else names it."""
    code = code.strip().upper()
    if not code or len(code) > 32 or not code.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("department code must be 1-32 letters, digits, '-' or '_'")
    if session.get(Department, code) is not None:
        raise Conflict(f"department {code} already exists")
    department = Department(code=code, name=name.strip() or code)
    session.add(department)
    session.flush()
    audit.record(session, actor=actor, action="department.added", subject=f"department:{code}", details={"name": department.name})
    return department


def get_department(session: Session, code: str) -> Department:
    department = session.get(Department, code.strip().upper())
    if department is None:
        raise NotFound(f"department {code} does not exist")
    return department


@dataclass(frozen=True)
class NewClient:
    """A client just created: the secret is shown here once and never again."""

    client: Client
    client_secret: str | None


def add_client(
    session: Session,
    *,
    department_code: str,
    roles: Iterable[str],
    name: str | None = None,
    public_jwks: dict | None = None,
    with_secret: bool = True,
    actor: str = SYSTEM_ACTOR,
) -> NewClient:
    """Register a machine client of a department, with a secret and/or a public key set."""
    department = get_department(session, department_code)
    role_names = parse_roles(roles)
    if public_jwks is not None:
        _check_public_jwks(public_jwks)
    if not with_secret and public_jwks is None:
        raise InvalidInput("a client needs a secret or a public key set to authenticate with")
    client_id = f"{department.code.lower()}-{secrets.token_hex(8)}"
    secret = generate_secret() if with_secret else None
    client = Client(
        client_id=client_id,
        name=name or f"{department.code} {'/'.join(role_names)} client",
        department_code=department.code,
        roles=role_names,
        secret_hash=hash_secret(secret) if secret else None,
        public_jwks=public_jwks,
    )
    session.add(client)
    session.flush()
    audit.record(
        session, actor=actor, action="client.added", subject=f"client:{client_id}",
        details={"department": department.code, "roles": role_names, "private_key_jwt": public_jwks is not None},
    )
    return NewClient(client, secret)


def _check_public_jwks(jwks: dict) -> None:
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidInput("public key set must be a JWKS document: {\"keys\": [...]}")
    for key in jwks["keys"]:
        if any(private in key for private in ("d", "p", "q", "dp", "dq", "qi")):
            raise InvalidInput("the public key set holds a private key; register only the public part")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise InvalidInput(f"public key set is not a valid JWKS: {error}") from error


def get_client(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound(f"client {client_id} does not exist")
    return client


def disable_client(session: Session, *, client_id: str, actor: str = SYSTEM_ACTOR) -> Client:
    """Switch a client off: its tokens stop working on the next request."""
    client = get_client(session, client_id)
    if client.disabled_at is None:
        client.disabled_at = utcnow()
        session.flush()
        audit.record(session, actor=actor, action="client.disabled", subject=f"client:{client_id}")
    return client


def list_clients(session: Session, *, department_code: str | None = None) -> list[Client]:
    query = select(Client).order_by(Client.department_code, Client.client_id)
    if department_code:
        query = query.where(Client.department_code == department_code.upper())
    return list(session.execute(query).scalars())


def add_user(
    session: Session,
    *,
    name: str,
    roles: Iterable[str],
    password: str,
    department_code: str | None = None,
    actor: str = SYSTEM_ACTOR,
) -> User:
    """Register a person for the web UI; the password is stored as a scrypt hash."""
    name = name.strip()
    if not name:
        raise InvalidInput("a user needs a name")
    _check_password(password)
    if session.execute(select(User).where(User.name == name)).scalar_one_or_none() is not None:
        raise Conflict(f"user {name} already exists")
    department = get_department(session, department_code).code if department_code else None
    user = User(name=name, roles=parse_roles(roles), password_hash=hash_password(password), department_code=department)
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="user.added", subject=f"user:{name}", details={"roles": user.roles})
    return user


def get_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    if user is None:
        raise NotFound(f"user {name} does not exist")
    return user


def _check_password(password: str) -> None:
    if len(password) < 12:
        raise InvalidInput("passwords must have at least 12 characters")


def end_sessions(session: Session, *, user: User) -> int:
    """Sign ``user`` out of every browser (their web sessions end on the next request); how many ended."""
    ended = session.execute(delete(WebSession).where(WebSession.user_id == user.id)).rowcount
    session.flush()
    return ended or 0


def set_password(session: Session, *, name: str, password: str, actor: str = SYSTEM_ACTOR) -> User:
    """Give a person a new password; every session signed in with the old one ends."""
    user = get_user(session, name)
    _check_password(password)
    user.password_hash = hash_password(password)
    ended = end_sessions(session, user=user)
    audit.record(session, actor=actor, action="user.password_changed", subject=f"user:{user.name}",
                 details={"sessions_ended": ended})
    return user


def set_roles(session: Session, *, name: str, roles: Iterable[str], actor: str = SYSTEM_ACTOR) -> User:
    """Change what a person may act as; their sessions end, so the new roles apply from their next sign-in."""
    user = get_user(session, name)
    user.roles = parse_roles(roles)
    ended = end_sessions(session, user=user)
    audit.record(session, actor=actor, action="user.roles_changed", subject=f"user:{user.name}",
                 details={"roles": user.roles, "sessions_ended": ended})
    return user


_nobody_hash: list[str] = []


def authenticate_user(session: Session, *, name: str, password: str) -> User | None:
    """The enabled person with this name and password, or None (whichever of the two was wrong)."""
    from govshare.security import verify_password

    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    if user is None:
        # Check against no one's hash, so an unknown name takes as long as a wrong password.
        if not _nobody_hash:
            _nobody_hash.append(hash_password(secrets.token_urlsafe(16)))
        verify_password(password, _nobody_hash[0])
        return None
    if not verify_password(password, user.password_hash) or user.disabled_at is not None:
        return None
    return user
