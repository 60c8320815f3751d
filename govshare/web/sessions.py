"""Browser sessions of the web UI: who is signed in, the CSRF token, one-shot messages."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from govshare.models import User

COOKIE = "govshare_ui"
SESSION_MAX_AGE = 8 * 3600
USER_KEY, USER_NAME_KEY, SIGNED_IN_KEY, CSRF_KEY, FLASH_KEY = "user_id", "user_name", "signed_in_at", "csrf", "flash"


def middleware_options(*, secret_key: str, issuer: str) -> dict[str, Any]:
    """Options for Starlette's SessionMiddleware: a signed, strict, 8-hour cookie for /ui only."""
    return {
        "secret_key": secret_key, "session_cookie": COOKIE, "path": "/ui", "max_age": SESSION_MAX_AGE,
        "same_site": "strict", "https_only": issuer.startswith("https"),
    }


def csrf_token(request: Request) -> str:
    """This session's CSRF token (created on first use)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def expected_csrf_token(request: Request) -> str | None:
    """The token a form of this session must send back, if the session has one."""
    token = request.session.get(CSRF_KEY)
    return token if isinstance(token, str) else None


def set_flash(request: Request, message: str) -> None:
    request.session[FLASH_KEY] = message


def take_flash(request: Request) -> str | None:
    return request.session.pop(FLASH_KEY, None)


def signed_in_name(request: Request) -> str | None:
    """The name of whoever this browser session belongs to, as far as the session says (for the sign-in page)."""
    return request.session.get(USER_NAME_KEY)


def current_user(request: Request, session: Session) -> User | None:
    """The enabled person signed in to this browser session, within the session's lifetime; else None."""
    user_id, signed_in_at = request.session.get(USER_KEY), request.session.get(SIGNED_IN_KEY)
    fresh = isinstance(signed_in_at, int | float) and time.time() - signed_in_at < SESSION_MAX_AGE
    user = session.get(User, user_id) if isinstance(user_id, int) and fresh else None
    if user is None or user.disabled_at is not None:
        for key in (USER_KEY, USER_NAME_KEY, SIGNED_IN_KEY):
            request.session.pop(key, None)
        return None
    return user


def start(request: Request, session: Session, user: User) -> None:
    """A new session for ``user``: nothing from before (a planted token) carries over."""
    request.session.clear()
    request.session.update({USER_KEY: user.id, USER_NAME_KEY: user.name, SIGNED_IN_KEY: int(time.time()),
                            CSRF_KEY: secrets.token_urlsafe(32)})


def end(request: Request, session: Session) -> None:
    """Sign this browser out."""
    request.session.clear()
