"""Who is calling: bearer tokens checked on every request, and role requirements.

A token is accepted when its signature is one of ours, it has not expired, its
``jti`` is on record and not revoked, and its client is still enabled. The last
two are one indexed read, so revocation takes effect on the next request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Annotated, Any

from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from fastapi import Depends, Request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from govshare.db import DbSession
from govshare.errors import Forbidden, Unauthenticated
from govshare.keys import KeyStore
from govshare.models import Client, IssuedToken, Role
from govshare.permissions import roles_for
from govshare.settings import Settings


@dataclass(frozen=True)
class Caller:
    """An authenticated client acting within its token's roles."""

    client_id: str
    department: str
    roles: frozenset[str]
    token_id: str

    @property
    def actor(self) -> str:
        """How the caller is named in the audit log and the ledger."""
        return f"client:{self.client_id}"

    def has_role(self, *roles: Role | str) -> bool:
        return any(str(role) in self.roles for role in roles)


class _Validator(JWTBearerTokenValidator):
    def __init__(self, settings: Settings, keystore: KeyStore) -> None:
        super().__init__(issuer=settings.issuer, resource_server=settings.issuer)
        self._keystore = keystore
        self.keyset: Any = None  # the set to verify against; the keystore's current one when None

    def get_jwks(self) -> Any:
        return self.keyset if self.keyset is not None else self._keystore.public_keyset()


# Built once with a bound parameter: constructing the statement anew on every call cost
# more than running it (this runs on every API call).
_TOKEN_STATE = (select(IssuedToken.revoked_at, Client.disabled_at, Client.department_code)
                .join(Client, Client.client_id == IssuedToken.client_id)
                .where(IssuedToken.jti == bindparam("jti")))


def authenticate_bearer(session: Session, *, settings: Settings, keystore: KeyStore, token: str) -> Caller:
    """The caller a bearer token stands for, or ``Unauthenticated``."""
    return _caller_from_store(session, _valid_claims(settings, keystore, token))


def _caller_from_store(session: Session, claims: _Claims) -> Caller:
    # Core, not the ORM's execute: this runs on every API call, and only columns are read.
    row = session.connection().execute(_TOKEN_STATE, {"jti": claims.jti}).first()
    if row is None:
        raise Unauthenticated("the access token is not known to this exchange")
    revoked_at, disabled_at, department = row
    if revoked_at is not None:
        raise Unauthenticated("the access token has been revoked")
    if disabled_at is not None:
        raise Unauthenticated("the client of this access token has been disabled")
    return Caller(client_id=claims.client_id, department=department, roles=claims.roles, token_id=claims.jti)


@dataclass(frozen=True)
class _Claims:
    """What a valid token says, and until when it is valid."""

    client_id: str
    jti: str
    roles: frozenset[str]
    expires: int


# A service system sends the same token with every call until it expires; checking its
# signature and claims again each time was a third of a lookup's cost. So a token found
# valid is remembered with the key set that verified it (a key change starts afresh),
# under the issuer it was checked for. Its claims cannot change, and of what authlib
# checks only expiry depends on time once a token is valid (not-before and issued-at
# only ever become truer), so expiry is checked on every call, as authlib does it. What
# can change while a token is valid (revocation, a disabled client) is read from the
# record store on every call.
_VERIFIED_MAX = 10_000


def _valid_claims(settings: Settings, keystore: KeyStore, token: str) -> _Claims:
    keyset, verified = keystore.verification()
    claims = verified.get((settings.issuer, token))
    if claims is None:
        validator = _Validator(settings, keystore)
        validator.keyset = keyset
        try:
            checked = validator.authenticate_token(token)
            validator.validate_token(checked, scopes=None, request=None)
        except InvalidTokenError:
            raise Unauthenticated("the access token is invalid or has expired") from None
        claims = _Claims(client_id=str(checked["client_id"]), jti=str(checked["jti"]),
                         roles=frozenset(str(checked.get("scope") or "").split()), expires=checked["exp"])
        if len(verified) >= _VERIFIED_MAX:
            verified.clear()  # bounded; the common case is a few tokens in use at a time
        verified[settings.issuer, token] = claims
    elif claims.expires < int(time.time()):  # authlib's own test (JWTClaims.validate_exp, no leeway)
        raise Unauthenticated("the access token is invalid or has expired")
    return claims


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated()
    return token.strip()


def get_caller(request: Request, session: DbSession) -> Caller:
    """The authenticated caller of this request."""
    return caller_of(request, session)


def caller_of(request: Request, session: Session) -> Caller:
    """The authenticated caller of ``request`` (for handlers that resolve it themselves)."""
    state = request.app.state
    return authenticate_bearer(session, settings=state.settings, keystore=state.keystore, token=_bearer_token(request))


def caller_at_stamp(request: Request, session: Callable[[], Session], stamp: str | None) -> Caller:
    """``caller_of``, trusting the token's state as resolved at change stamp ``stamp`` while the store's stamp is that.

    ``session``: gives the session to read the token's state with, called only when it must be read. The token's
    signature and expiry are checked on every call as in ``caller_of``; its revocation and its client's state are
    what the stamp vouches for (``govshare.changestamp``).
    """
    state = request.app.state
    claims = _valid_claims(state.settings, state.keystore, _bearer_token(request))
    key = ("caller", state.settings.issuer, claims.jti)
    caller = state.database.recall(key, stamp)
    if caller is None:
        caller = _caller_from_store(session(), claims)
        state.database.remember(key, stamp, caller)
    return caller


def check_role(caller: Caller, action: str) -> Caller:
    """``caller`` if it holds a role allowed to perform ``action``, else ``Forbidden``."""
    allowed = roles_for(action)
    if not caller.has_role(*allowed):
        needed = ", ".join(sorted(str(role) for role in allowed)) or "no role"
        raise Forbidden(f"'{action}' needs one of the roles: {needed}")
    return caller


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require(action: str):
    """A dependency that lets through only callers holding a role allowed to perform ``action``."""
    roles_for(action)  # an unknown action fails here, when the route is declared

    # async: a check this cheap runs on the event loop, not as a hop to the thread pool.
    async def _check(caller: CurrentCaller) -> Caller:
        return check_role(caller, action)

    _check.__name__ = f"require_{action.replace('.', '_')}"
    return _check
