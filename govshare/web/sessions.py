"""Browser sessions of the web UI: who is signed in, the CSRF token, one-shot messages.

The ``govshare_ui`` cookie holds only a random id. A signed-in session is a row of
``web_sessions`` keyed by the id's SHA-256, so signing out, a new password or new roles
end it on the server: a copy of the cookie is worth nothing afterwards. A visitor not
signed in has an id too (no row): their forms' CSRF token is derived from it, and a new
id at sign-in leaves nothing planted before it usable after.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
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
SESSION_MAX_AGE = 8 * 3600
FLASH_MAX_AGE = 300
_ID_PATTERN_LENGTH = 43  # secrets.token_urlsafe(32)


def now(request: Request) -> datetime:
    """The pages' clock: ``app.state.clock`` when a test sets one, else the real one."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else utcnow()


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _secret(request: Request) -> str:
    return request.app.state.keystore.session_secret()


def _cookie_id(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
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
    message = f"csrf:{_browser_id(request)}".encode()
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
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    request.state.web_flash_taken = True
    try:
        message = _flash_signer(request).loads(value, max_age=FLASH_MAX_AGE)
    except BadSignature:
        return None
    return message if isinstance(message, str) else None


def _cookie_options(request: Request, max_age: int) -> dict:
    return {"path": "/ui", "max_age": max_age, "httponly": True, "samesite": "strict",
            "secure": request.app.state.settings.issuer.startswith("https")}


def finish(request: Request, response: Response) -> Response:
    """Put on ``response`` what this request changed of the browser's session: a new id, a message, or neither."""
    state = request.state
    if getattr(state, "web_ended", False):
        response.delete_cookie(COOKIE, path="/ui")
    new_id = getattr(state, "web_new_id", None)
    if new_id:
        response.set_cookie(COOKIE, new_id, **_cookie_options(request, SESSION_MAX_AGE))
    flash = getattr(state, "web_flash", None)
    if flash:
        response.set_cookie(FLASH_COOKIE, _flash_signer(request).dumps(flash), **_cookie_options(request, FLASH_MAX_AGE))
    elif getattr(state, "web_flash_taken", False):
        response.delete_cookie(FLASH_COOKIE, path="/ui")
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


def start(request: Request, session: Session, user: User) -> None:
    """A new session for ``user`` under a new id: nothing from before (a planted id or token) carries over."""
    moment = now(request)
    session.execute(delete(WebSession).where(WebSession.expires_at <= moment))  # the expired, while we are writing
    old = _cookie_id(request)
    if old:
        session.execute(delete(WebSession).where(WebSession.id_hash == _digest(old)))
    new_id = secrets.token_urlsafe(32)
    session.add(WebSession(id_hash=_digest(new_id), user_id=user.id, created_at=moment,
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
