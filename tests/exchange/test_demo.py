"""The demo's applications and grants (``govshare serve --demo``): every state has something to show."""

from __future__ import annotations

from sqlalchemy import select

from approvals import service as approvals
from approvals.models import Grant
from directory.demo import seed_directory
from exchange.demo import seed_exchange
from govshare import demo, storage


def test_the_demo_shows_grants_active_paused_expired_and_revoked(database, settings):
    with database.transaction() as session:
        demo.seed_identities(session)
        seed_directory(session, store=storage.for_settings(settings), rows=2_000)
        seed_exchange(session, settings=settings)
    with database.transaction(write=False) as session:
        today = approvals.today(settings)
        grants = session.execute(select(Grant)).scalars().all()
        states = {grant.id: approvals.grant_state(grant, today) for grant in grants}
    assert {"active", "paused", "expired", "revoked"} <= set(states.values()), states
    revoked = next(grant for grant in grants if states[grant.id] == "revoked")
    assert revoked.revoke_reason and revoked.revoked_by  # the grant page has a why and a who to show
    paused = next(grant for grant in grants if states[grant.id] == "paused")
    assert paused.pause_reason and paused.paused_by and paused.paused_at
    with database.transaction(write=False) as session:
        application = approvals.get_application(session, paused.application_id)
        assert application.disclosure_delay_until > today and application.disclosure_basis  # a delayed disclosure to see
