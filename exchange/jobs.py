"""The exchange's background jobs: building queued extracts (and recovering interrupted ones), keyed stores,
erasing the files of ended grants, and expiring citizens' requests (erasing their previews)."""

from __future__ import annotations

from approvals import service as approvals
from exchange import retention
from exchange.citizens.service import RequestExpiry
from exchange.extracts import service as extracts
from exchange.service import prebuild_keyed_stores
from datetime import timedelta

from govshare import storage
from govshare.db import Database
from govshare.jobs import Job
from govshare.keys import KeyStore
from govshare.settings import Settings


def jobs(settings: Settings, keystore: KeyStore) -> list[Job]:
    store = storage.for_settings(settings)

    lease = timedelta(seconds=settings.job_lease_seconds)

    def build(database: Database) -> int:
        extracts.recover(database, stale_after=lease)
        return extracts.run_pending(database, store=store, keystore=keystore, pause_dir=settings.test_pause_dir)

    def keyed_stores(database: Database) -> int:
        with database.transaction(write=False) as session:
            return prebuild_keyed_stores(session, store=store)

    def erase_ended(database: Database) -> int:
        return retention.erase_ended_grant_files(database, store=store, today=approvals.today(settings))

    def expired_requests(database: Database) -> int:
        return retention.erase_expired_requests(database, expiry=RequestExpiry.of(settings))

    def erased_copies(database: Database) -> int:
        return retention.drop_erased_copies(database, store=store)

    def store_temporaries(database: Database) -> int:
        return store.remove_stale_temporaries()

    # Extracts are claimed one row at a time, so every replica builds them side by side;
    # keyed stores and cached copies are each replica's own.
    return [Job("extracts", 0.5, build, shared=False), Job("keyed-stores", 5.0, keyed_stores, shared=False),
            Job("ended-grant-files", 60.0, erase_ended), Job("expired-requests", 60.0, expired_requests),
            Job("erased-copies", 60.0, erased_copies, shared=False),
            Job("store-temporaries", 3600.0, store_temporaries)]
