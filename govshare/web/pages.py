"""Rendering the web UI's pages: the shared layout, its navigation, dates as people read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from govshare.models import User
from govshare.web import address, sessions

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Pages show applications and names of people: keep them out of shared caches and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Person:
    """What the layout shows of the signed-in person; a plain copy that outlives the request's session."""

    name: str
    roles: tuple[str, ...]
    department_code: str | None

    @classmethod
    def of(cls, user: User) -> Person:
        return cls(user.name, tuple(user.roles), user.department_code)


@dataclass(frozen=True)
class NavLink:
    """One entry of the site's navigation: shown to people holding one of ``roles``."""

    label: str
    href: str
    roles: tuple[str, ...]
    # Paths under which this entry is the current page (the href itself by default).
    current: tuple[str, ...] = ()
    # People of a department only (pages about "your department's" things).
    department_only: bool = False

    def shown_to(self, user: User | Person | None) -> bool:
        if user is None or (self.department_only and not user.department_code):
            return False
        return any(role in user.roles for role in self.roles)

    def is_current(self, path: str) -> bool:
        path = path.rstrip("/") or "/"
        return path == self.href or any(path == prefix or path.startswith(prefix + "/") for prefix in self.current or (self.href,))


def navigation_of(request: Request, user: User | None) -> list[NavLink]:
    """The navigation entries ``user`` may follow (each domain adds its own in ``govshare.app``)."""
    return [link for link in getattr(request.app.state, "navigation", ()) if link.shown_to(user)]


def home_for(request: Request, user: User | None) -> str:
    """Where ``user`` starts: the first page of the navigation they may use (none: the sign-in page, to switch
    accounts); for nobody, the start page, which asks them to sign in (a citizen's pages, under /me: their page)."""
    if sessions.jar_of(request) is sessions.CITIZEN:
        return "/me"
    if user is None:
        return "/ui"
    links = navigation_of(request, user)
    return links[0].href if links else "/ui/login"


def duration_words(span: timedelta) -> str:
    """'3 days 4 hours', '2 hours 5 minutes', 'less than a minute'."""
    minutes = int(abs(span).total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes % 1440 // 60, minutes % 60

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'' if count == 1 else 's'}"

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute") if minutes else "less than a minute"


class Formats:
    """Dates and times as people read them, in the exchange's time zone."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone)
        return f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"

    def iso(self, moment: datetime | None) -> str:
        return moment.isoformat() if moment else ""

    @staticmethod
    def day(value) -> str:
        return f"{value.day} {value:%b %Y}" if value else "—"


def actor_words(actor: str | None) -> str:
    """Who acted, as people say it: 'maria' for user:maria, "a CAB system" for a client of CAB, not the raw tag."""
    if not actor:
        return "—"
    kind, _, name = actor.partition(":")
    if kind == "user" and name:
        return name
    if kind == "client" and name:
        department = name.rsplit("-", 1)[0].upper() if "-" in name else ""
        return f"a {department} system" if department else "a department's system"
    if actor == "system":
        return "govshare (automatically)"
    return actor


class Pages:
    """A domain's pages: its own templates, found first, over the shell's layout (base.html, macros)."""

    def __init__(self, directory: Path | None = None, **template_globals: Any) -> None:
        directories = [str(directory)] if directory else []
        self.templates = Jinja2Templates(directory=[*directories, str(TEMPLATES_DIR)])
        self.templates.env.globals.update(actor_words=actor_words, **template_globals)

    def render(
        self, request: Request, template: str, *, user: User | None = None, status_code: int = 200,
        headers: dict[str, str] | None = None, **context: Any,
    ) -> Response:
        """A page with what the layout needs: the user, their navigation, the CSRF token, any flash message."""
        context.update(
            user=user, navigation=navigation_of(request, user), home=home_for(request, user),
            csrf_token=sessions.csrf_token(request), flash=sessions.take_flash(request),
            fmt=Formats(request.app.state.settings.timezone),
        )
        response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})},
        )
        return sessions.finish(request, response)


def redirect(request: Request, url: str, *, flash: str | None = None) -> RedirectResponse:
    """A 303 to ``url`` after a form, with a message for the next page."""
    if flash:
        sessions.set_flash(request, flash)
    return sessions.finish(request, RedirectResponse(url, status_code=303))


_shell_pages = Pages()


def _user_behind(request: Request) -> Person | None:
    """Who is signed in, for an error page: known if a page's dependency found them, else looked up."""
    user = getattr(request.state, "web_user", None)
    if user is not None:
        return user
    try:
        with request.app.state.database.transaction(write=False) as session:
            found = sessions.current_user(request, session)
            return Person.of(found) if found is not None else None
    except Exception:  # an error page must not fail on the store that may have caused the error
        return None


def error_page(request: Request, problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """The error page for a browser: the site's layout, the navigation and a way back for whoever is signed in."""
    user = _user_behind(request)
    wrong = None
    if problem["status"] == 422:
        wrong = address.describe(getattr(request.state, "validation_errors", None) or [],
                                 path_params=request.path_params, query_params=request.query_params)
    return _shell_pages.render(request, "error.html", user=user, status_code=problem["status"], headers=headers,
                               problem=problem, wrong=wrong)
