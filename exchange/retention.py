"""Files made under a grant are erased once the grant has ended (revoked, or past its period).

An ended grant serves nothing: its extracts and Delta Sharing files are refused from
the request after it ended. Keeping the files on disk would keep copies of citizens'
data that no service may use any more, so a job erases them. What stays is the record:
the extract's row, its signed manifest, the ledger lines and the audit entries.

Each file is removed before its row is changed, so a run stopped between the two (a
crash) leaves a row that the next run finds again; removing a missing file is a no-op.

The same holds for the previews of explicit requests past their last day: an expired
request is refused on every read whether or not this has run, and the job records it as
``expired`` and erases the copy of the citizen's records it kept.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, select, update

from approvals import service as approvals
from approvals.models import Grant
from exchange.citizens.service import LAPSING, RequestExpiry
from exchange.models import CitizenRequest, Extract, SharingFile
from govshare import audit
from govshare.db import Database
from govshare.storage import Store

ACTOR = "govshare:retention"


def _reason(revoked: bool) -> str:
    return "grant revoked" if revoked else "grant period ended"


def erase_ended_grant_files(database: Database, *, store: Store, today: date) -> int:
    """Erase the extract and sharing files of every ended grant; the number of files erased."""
    with database.transaction(write=False) as session:
        extracts = session.execute(
            select(Extract.id, Extract.path, Extract.grant_id, Grant.revoked_at.is_not(None))
            .join(Grant, Grant.id == Extract.grant_id).where(approvals.grant_ended(today), Extract.path.is_not(None))
        ).all()
        files = session.execute(
            select(SharingFile.id, SharingFile.path, SharingFile.grant_id, SharingFile.version_number, Grant.revoked_at.is_not(None))
            .join(Grant, Grant.id == SharingFile.grant_id).where(approvals.grant_ended(today))
        ).all()
    for extract_id, path, grant_id, revoked in extracts:
        store.delete(path)
        with database.transaction() as session:
            session.execute(update(Extract).where(Extract.id == extract_id).values(path=None))
            audit.record(session, actor=ACTOR, action="extract.erased", subject=f"extract:{extract_id}",
                         details={"grant": grant_id, "reason": _reason(revoked)})
    for file_id, path, grant_id, version, revoked in files:
        store.delete(path)
        with database.transaction() as session:
            session.execute(delete(SharingFile).where(SharingFile.id == file_id))
            audit.record(session, actor=ACTOR, action="sharing.file_erased", subject=f"grant:{grant_id}",
                         details={"file": file_id, "version": version, "reason": _reason(revoked)})
    return len(extracts) + len(files)


def erase_expired_requests(database: Database, *, expiry: RequestExpiry) -> int:
    """Record every explicit request past its last day as ``expired`` and erase its preview; the number expired."""
    with database.transaction(write=False) as session:
        lapsed = session.execute(
            select(CitizenRequest.id, CitizenRequest.status)
            .where(CitizenRequest.status.in_(LAPSING), CitizenRequest.created_at < expiry.cutoff).order_by(CitizenRequest.id)
        ).all()
    expired = 0
    for request_id, status in lapsed:
        with database.transaction() as session:
            # Conditional: a delivery or decision that won the race in between keeps its state.
            changed = session.execute(
                update(CitizenRequest).where(CitizenRequest.id == request_id, CitizenRequest.status == status)
                .values(status="expired", preview=None)
            ).rowcount
            if changed == 1:
                audit.record(session, actor=ACTOR, action="citizen_request.expired", subject=f"citizen_request:{request_id}",
                             details={"was": status, "reason": f"past its last day ({expiry.days} days after it was asked)"})
                expired += 1
    return expired


def drop_erased_copies(database: Database, *, store: Store) -> int:
    """Remove this replica's cached copies of extract and sharing files whose records no longer name them.

    The erasure above runs on one replica and removes the object from the store (and its
    own cached copy); the copies other replicas cached while building or serving the file
    are dropped by this, which each replica runs on its own cache.
    """
    cached = {folder: store.cached_keys(folder) for folder in ("extracts", "sharing")}
    if not any(cached.values()):
        return 0
    with database.transaction(write=False) as session:
        named = set(session.execute(select(Extract.path).where(Extract.path.in_(cached["extracts"] or [""]))).scalars())
        named |= set(session.execute(select(SharingFile.path).where(SharingFile.path.in_(cached["sharing"] or [""]))).scalars())
    dropped = [key for keys in cached.values() for key in keys if key not in named]
    for key in dropped:
        store.drop_cached(key)
    return len(dropped)
