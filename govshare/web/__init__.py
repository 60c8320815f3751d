"""The web UI's shell: sign-in, sessions, CSRF, the layout and its navigation, error pages.

Infrastructure, like the rest of ``govshare``: each domain's ``views.py`` adds only its own
pages (a ``Pages`` over its templates, routes guarded by the dependencies below), and
``govshare.app`` mounts the shell with ``install``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI

from govshare.web.pages import (
    PAGE_HEADERS, Formats, NavLink, Pages, duration_words, error_page, home_for, redirect,
)
from govshare.web.citizens import Citizen, SignedInCitizen, signed_in_citizen
from govshare.web.citizens import router as citizens_router
from govshare.web.sessions import csrf_token
from govshare.web.signin import (
    CheckedForm, ManagerUser, PostedForm, SignedInUser, actor, holds_any, manager_user, may, person_allowed,
    person_with_role, router, signed_in_user,
)

__all__ = [
    "PAGE_HEADERS", "CheckedForm", "Citizen", "SignedInCitizen", "signed_in_citizen", "Formats", "ManagerUser", "NavLink", "Pages", "PostedForm", "SignedInUser", "actor",
    "csrf_token", "duration_words", "error_page", "holds_any", "home_for", "install", "manager_user", "may",
    "person_allowed", "person_with_role", "redirect", "signed_in_user",
]


def install(app: FastAPI, *, navigation: Iterable[NavLink]) -> None:
    """Mount the shell on ``app``: its routes, the error pages, and the site's navigation (the domains' entries)."""
    app.state.navigation = tuple(navigation)
    app.state.error_page = error_page
    app.include_router(router)
    app.include_router(citizens_router)
