"""Browser sessions of the web UI: who is signed in, the CSRF token, one-shot messages.

The ``govshare_ui`` cookie holds only a random id. A signed-in session is a row of
``web_sessions`` keyed by the id's SHA-256, so signing out, a new password or new roles
end it on the server: a copy of the cookie is worth nothing afterwards. A visitor not
signed in has an id too (no row): their forms' CSRF token is derived from it, and a new
id at sign-in leaves nothing planted before it usable after.

Two kinds of session share the table and never each other's cookie: a person of the
staff (``user_id``; the ``govshare_ui`` cookie, path ``/ui``) and a citizen signed in
through the identity provider (``citizen_id``; the ``govshare_me`` cookie, path ``/me``).
Which one a request reads is decided by its path (``jar_of``), so a citizen's session
is never a staff session and a staff session never opens a citizen's page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from govshare.db import utcnow
from govshare.models import User, WebSession

COOKIE = "govshare_ui"
FLASH_COOKIE = "govshare_ui_flash"
CITIZEN_COOKIE = "govshare_me"
CITIZEN_FLASH_COOKIE = "govshare_me_flash"
SESSION_MAX_AGE = 8 * 3600
FLASH_MAX_AGE = 300
_ID_PATTERN_LENGTH = 43  # secrets.token_urlsafe(32)


def now(request: Request) -> datetime:
    """The pages' clock: ``app.state.clock`` when a test sets one, else the real one."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else utcnow()


@dataclass(frozen=True)
class Jar:
    """The cookies of one kind of session: their names, the path they are sent to, and their SameSite rule."""

    cookie: str
    flash_cookie: str
    path: str
    # A citizen arrives from the identity provider's site (a cross-site redirect to /me/callback, then /me):
    # a "strict" cookie would not be sent there. "lax" still keeps it off cross-site POSTs, and every form
    # carries a CSRF token besides.
    samesite: str
    csrf_label: str

    def serves(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")


STAFF = Jar(COOKIE, FLASH_COOKIE, "/ui", "strict", "csrf")
CITIZEN = Jar(CITIZEN_COOKIE, CITIZEN_FLASH_COOKIE, "/me", "lax", "csrf-citizen")


def jar_of(request: Request) -> Jar:
    """The session a request belongs to: a citizen's under /me, else the staff's."""
    return CITIZEN if CITIZEN.serves(request.url.path) else STAFF


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _secret(request: Request) -> str:
    return request.app.state.keystore.session_secret()


def _cookie_id(request: Request) -> str | None:
    value = request.cookies.get(jar_of(request).cookie)
    return value if isinstance(value, str) and len(value) == _ID_PATTERN_LENGTH else None


def _browser_id(request: Request) -> str:
    """This browser's id: the one its cookie holds, or (first visit, signed out) a new one set on the response."""
    pending = getattr(request.state, "web_new_id", None)
    if pending:
        return pending
    existing = _cookie_id(request)
    if existing:
        return existing
    request.state.web_new_id = secrets.token_urlsafe(32)
    return request.state.web_new_id


def csrf_token(request: Request) -> str:
    """The token this browser's forms send back: bound to its session id, so it changes at sign-in."""
    message = f"{jar_of(request).csrf_label}:{_browser_id(request)}".encode()
    return hmac.new(_secret(request).encode(), message, hashlib.sha256).hexdigest()


def expected_csrf_token(request: Request) -> str | None:
    """The token a form of this browser must send back (None without a session id)."""
    return csrf_token(request) if _cookie_id(request) else None


def _flash_signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(request), salt="govshare-ui-flash")


def set_flash(request: Request, message: str) -> None:
    """A message for the next page this browser sees (in a signed cookie of its own, for a few minutes)."""
    request.state.web_flash = message


def take_flash(request: Request) -> str | None:
    """The message left for this page, if any (cleared from the browser by ``finish``)."""
    value = request.cookies.get(jar_of(request).flash_cookie)
    if not value:
        return None
    request.state.web_flash_taken = True
    try:
        message = _flash_signer(request).loads(value, max_age=FLASH_MAX_AGE)
    except BadSignature:
        return None
    return message if isinstance(message, str) else None


def cookie_options(request: Request, max_age: int) -> dict:
    """How this request's session cookies are set: its jar's path and SameSite rule, HTTP only, secure over https."""
    jar = jar_of(request)
    return {"path": jar.path, "max_age": max_age, "httponly": True, "samesite": jar.samesite,
            "secure": request.app.state.settings.issuer.startswith("https")}


def finish(request: Request, response: Response) -> Response:
    """Put on ``response`` what this request changed of the browser's session: a new id, a message, or neither."""
    state, jar = request.state, jar_of(request)
    if getattr(state, "web_ended", False):
        response.delete_cookie(jar.cookie, path=jar.path)
    new_id = getattr(state, "web_new_id", None)
    if new_id:
        response.set_cookie(jar.cookie, new_id, **cookie_options(request, SESSION_MAX_AGE))
    flash = getattr(state, "web_flash", None)
    if flash:
        response.set_cookie(jar.flash_cookie, _flash_signer(request).dumps(flash), **cookie_options(request, FLASH_MAX_AGE))
    elif getattr(state, "web_flash_taken", False):
        response.delete_cookie(jar.flash_cookie, path=jar.path)
    return response


def current_user(request: Request, session: Session) -> User | None:
    """The enabled person signed in to this browser, while their session lasts; else None."""
    session_id = _cookie_id(request)
    if session_id is None:
        return None
    return session.execute(
        select(User).join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.id_hash == _digest(session_id), WebSession.expires_at > now(request), User.disabled_at.is_(None))
    ).scalar_one_or_none()


def signed_in_name(request: Request, session: Session) -> str | None:
    """The name of whoever is signed in to this browser (for the sign-in page, to sign out first)."""
    user = current_user(request, session)
    return user.name if user is not None else None


def current_citizen(request: Request, session: Session) -> str | None:
    """The citizen ID of the citizen signed in to this browser (under /me), while their session lasts; else None."""
    session_id = _cookie_id(request)
    if session_id is None or jar_of(request) is not CITIZEN:
        return None
    return session.execute(
        select(WebSession.citizen_id)
        .where(WebSession.id_hash == _digest(session_id), WebSession.expires_at > now(request), WebSession.citizen_id.is_not(None))
    ).scalar_one_or_none()


def start(request: Request, session: Session, user: User) -> None:
    """A new session for ``user`` under a new id: nothing from before (a planted id or token) carries over."""
    _start(request, session, user_id=user.id, citizen_id=None)


def start_citizen(request: Request, session: Session, citizen_id: str) -> None:
    """A new citizen's session (under /me) for ``citizen_id``, as the identity provider's verified ID token names it."""
    if jar_of(request) is not CITIZEN:
        raise RuntimeError("a citizen's session starts only under /me")
    _start(request, session, user_id=None, citizen_id=citizen_id)


def _start(request: Request, session: Session, *, user_id: int | None, citizen_id: str | None) -> None:
    moment = now(request)
    session.execute(delete(WebSession).where(WebSession.expires_at <= moment))  # the expired, while we are writing
    old = _cookie_id(request)
    if old:
        session.execute(delete(WebSession).where(WebSession.id_hash == _digest(old)))
    new_id = secrets.token_urlsafe(32)
    session.add(WebSession(id_hash=_digest(new_id), user_id=user_id, citizen_id=citizen_id, created_at=moment,
                           expires_at=moment + timedelta(seconds=SESSION_MAX_AGE)))
    session.flush()
    request.state.web_new_id = new_id


def end(request: Request, session: Session) -> None:
    """Sign this browser out: its session row goes, and its cookie with it."""
    old = _cookie_id(request)
    if old:
        session.execute(delete(WebSession).where(WebSession.id_hash == _digest(old)))
        session.flush()
    request.state.web_ended = True
