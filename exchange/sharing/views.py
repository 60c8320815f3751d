"""The page where a demanding department's people download Delta Sharing profiles: /ui/sharing.

It is drawn in the web shell's layout, behind its sign-in, session and CSRF check
(``govshare.web``). A profile is made by a POSTed form (it creates a token),
and answered as a file to save; each grant lists its tokens (never the secret), and
one can be revoked on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from approvals import service as approvals
from approvals.dependencies import department_grant
from approvals.labels import GRANT_STATE_LABELS
from approvals.models import Grant
from exchange import service
from exchange.sharing import service as sharing
from exchange.dependencies import active_extract_grant
from exchange.errors import SharingTokenRevoked
from exchange.models import SharingToken
from exchange.sharing.api import profile_response
from govshare import web
from govshare.db import DbSession, utcnow
from govshare.errors import Forbidden
from govshare.models import Role, User
from govshare.permissions import roles_for

pages = web.Pages(Path(__file__).parent / "templates")

router = APIRouter(prefix="/ui", include_in_schema=False)
NAVIGATION = (web.NavLink("Delta Sharing", "/ui/sharing", (Role.demander, Role.service), department_only=True),)


def sharing_user(user: Annotated[User, Depends(web.signed_in_user)]) -> User:
    """The signed-in person, if the permissions table lets them fetch profiles and they belong to a department."""
    if not web.may(user, "sharing.profile") or not user.department_code:
        needed = " or ".join(sorted(str(role) for role in roles_for("sharing.profile")))
        raise Forbidden(f"This page is for a department's {needed} people: your account ({user.name}) is not one of them.")
    return user


SharingUser = Annotated[User, Depends(sharing_user)]


@router.get("/sharing")
def sharing_page(request: Request, session: DbSession, user: SharingUser) -> Response:
    today = approvals.today(request.app.state.settings)
    grants = session.execute(select(Grant).where(Grant.department_code == user.department_code, Grant.delivery == "extract")
                             .order_by(Grant.id.desc())).scalars().all()
    tokens: dict[int, list[SharingToken]] = {grant.id: [] for grant in grants}
    if grants:
        for token in session.execute(select(SharingToken).where(SharingToken.grant_id.in_(list(tokens)))
                                     .order_by(SharingToken.created_at.desc(), SharingToken.id.desc())).scalars():
            tokens[token.grant_id].append(token)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for grant in grants:
        scope = service.scope_of(session, grant)
        rows.append({"grant": grant, "state": approvals.grant_state(grant, today),
                     "table": f"{sharing.share_name(grant)}.{sharing.schema_name(scope)}.{sharing.table_name(scope)}",
                     "tokens": [{"token": token, "state": sharing.token_state(token, now)} for token in tokens[grant.id]]})
    return pages.render(request, "sharing.html", user=user, rows=rows, state_labels=GRANT_STATE_LABELS,
                        endpoint=f"{request.app.state.settings.issuer}/delta-sharing")


@router.post("/sharing/grants/{grant_id}/profile", dependencies=web.CheckedForm)
def download_profile(grant_id: int, request: Request, session: DbSession, user: SharingUser) -> Response:
    scope = active_extract_grant(session, grant_id, user, settings=request.app.state.settings)
    return profile_response(session, request, scope=scope, actor=web.actor(user))


@router.post("/sharing/grants/{grant_id}/tokens/{token_id}/revoke", dependencies=web.CheckedForm)
def revoke_token(grant_id: int, token_id: int, request: Request, session: DbSession, user: SharingUser) -> Response:
    grant = department_grant(session, grant_id, user)
    try:
        sharing.revoke_token(session, grant=grant, token_id=token_id, actor=web.actor(user))
    except SharingTokenRevoked:
        # A second click, or someone else first: the outcome asked for holds; say so rather than fail.
        return web.redirect(request, "/ui/sharing", flash=f"Token {token_id} of grant {grant_id} was revoked already.")
    return web.redirect(request, "/ui/sharing", flash=(
        f"Token {token_id} of grant {grant_id} revoked: profiles holding it no longer read the share. "
        "The grant's other tokens still work."))
