"""Signing in and out, who may see a page, and the CSRF check every form goes through."""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from govshare import identities
from govshare.db import DbSession
from govshare.errors import Forbidden, GovshareError
from govshare.models import Role, User
from govshare.permissions import OVERSEERS, roles_for
from govshare.web import sessions, throttle
from govshare.web.pages import TEMPLATES_DIR, Pages, Person, home_for, redirect

router = APIRouter(prefix="/ui", include_in_schema=False)
pages = Pages()


class SignInRequired(GovshareError):
    status, type, title = 303, "sign-in-required", "Sign in required"


class CsrfRefused(GovshareError):
    status, type, title = 403, "csrf-refused", "Form refused"


# --- who is signed in --------------------------------------------------------------------


def _sign_in_redirect(request: Request, what: str) -> SignInRequired:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/ui"
    return SignInRequired(f"sign in to use {what}", headers={"Location": "/ui/login?" + urlencode({"next": target})})


def signed_in_user(request: Request, session: DbSession) -> User:
    """The person signed in to this browser session, or a redirect to the sign-in page."""
    user = sessions.current_user(request, session)
    if user is None:
        raise _sign_in_redirect(request, "these pages")
    request.state.web_user = Person.of(user)  # for an error page later in this request
    return user


SignedInUser = Annotated[User, Depends(signed_in_user)]


def holds_any(user: User, roles: Iterable[str]) -> bool:
    return any(str(role) in user.roles for role in roles)


def may(user: User, action: str) -> bool:
    """Whether the person holds a role that the permissions table allows ``action`` to."""
    return holds_any(user, roles_for(action))


def person_with_role(roles: Iterable[str], refusal: str):
    """A dependency letting through only a signed-in person holding one of ``roles``; ``refusal`` (formatted
    with ``name``) explains the 403 to anyone else."""
    roles = tuple(str(role) for role in roles)

    def _check(user: SignedInUser) -> User:
        if not holds_any(user, roles):
            raise Forbidden(refusal.format(name=user.name))
        return user

    return _check


# The pages for data managers (the queue, grants, the dashboard): one check, one message.
manager_user = person_with_role(OVERSEERS, (
    "These pages are for data managers: your account ({name}) does not have the manager role. "
    "To use another account, sign out on the sign-in page, /ui/login."))
ManagerUser = Annotated[User, Depends(manager_user)]


def person_allowed(action: str, *, first: object = signed_in_user):
    """A dependency letting through only a signed-in person whom the permissions table allows ``action``.

    ``first``: a dependency the person must pass before (say, a page's role check), for its own message.
    """

    def _check(user: User = Depends(first)) -> User:  # a default, not Annotated: `first` is no global to resolve
        if not may(user, action):
            needed = " or ".join(sorted(str(role) for role in roles_for(action)))
            raise Forbidden(f"Only people with the {needed} role may do this; nothing was changed.")
        return user

    _check.__name__ = f"person_allowed_{action.replace('.', '_')}"
    return _check


def actor(user: User) -> str:
    """How a person acting through the pages is named in histories and the audit log."""
    return f"user:{user.name}"


# --- forms: CSRF -----------------------------------------------------------------------------


def _own_origins(request: Request) -> set[str]:
    issuer = urlsplit(request.app.state.settings.issuer)
    return {f"{request.url.scheme}://{request.url.netloc}", f"{issuer.scheme}://{issuer.netloc}"}


async def checked_form(request: Request) -> None:
    """Refuse a form sent from another site, or without this session's CSRF token."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefused("This form was sent from another site, so it was refused. Nothing was changed.")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in _own_origins(request):
        raise CsrfRefused("This form was sent from another site, so it was refused. Nothing was changed.")
    form = await request.form()
    sent, expected = form.get("csrf_token"), sessions.expected_csrf_token(request)
    if not isinstance(sent, str) or not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("This form has expired or did not come from this site: reload the page and try again. Nothing was changed.")


CheckedForm = [Depends(checked_form)]


async def posted_form(request: Request) -> FormData:
    """The POSTed form itself, for fields named after a dataset's items."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


# --- the stylesheet and signing in -------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of these pages: a sign-in link must not send people to another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui"
    return target


@router.get("/style.css")
def stylesheet() -> Response:
    return Response((TEMPLATES_DIR / "govshare.css").read_text(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/favicon.svg")
def favicon() -> Response:
    return Response((TEMPLATES_DIR / "favicon.svg").read_text(), media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/login")
def login_page(request: Request, session: DbSession, next: str = "/ui") -> Response:
    # Someone already signed in (say, to an account without the role a page needs) may sign out here.
    return pages.render(request, "login.html", next=_safe_next(next), name="",
                        signed_in_as=sessions.signed_in_name(request, session))


@router.post("/login", dependencies=CheckedForm)
def login(
    request: Request, session: DbSession, name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "", next: Annotated[str, Form()] = "/ui",
) -> Response:
    now, address = sessions.now(request), request.client.host if request.client else None
    block = throttle.blocked(session, name=name, address=address, now=now)
    if block is not None:
        minutes = math.ceil(block.retry_after / 60)
        return pages.render(request, "login.html", status_code=429, next=_safe_next(next), name=name,
                            headers={"Retry-After": str(block.retry_after)},
                            error=(f"Too many wrong passwords: signing in is paused for {minutes} minute"
                                   f"{'' if minutes == 1 else 's'}. Try again after that."))
    user = identities.authenticate_user(session, name=name, password=password)
    if user is None:
        throttle.failed(session, name=name, address=address, now=now)
        return pages.render(request, "login.html", status_code=401, next=_safe_next(next), name=name,
                            error="The name or the password is wrong.")
    throttle.succeeded(session, name=name)
    sessions.start(request, session, user)
    return redirect(request, _landing(request, user, _safe_next(next)), flash=f"Signed in as {user.name}.")


def _landing(request: Request, user: User, next: str) -> str:
    """Where sign-in leads: the page asked for; asked for none, the first page the person may use.

    The start page (/ui, the queue) is the managers'; a department's officer signing in
    without a page in mind was shown a 403 there.
    """
    if next == "/ui":
        home = home_for(request, user)
        return home if home != "/ui/login" else next
    return next


@router.post("/logout", dependencies=CheckedForm)
def logout(request: Request, session: DbSession) -> Response:
    sessions.end(request, session)
    return redirect(request, "/ui/login", flash="You have signed out.")
