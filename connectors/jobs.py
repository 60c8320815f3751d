"""The connectors' background job: syncing every source whose dataset is due by its promised update frequency."""

from __future__ import annotations

from connectors import service
from govshare.db import Database
from govshare.jobs import Job
from govshare.keys import KeyStore
from govshare.settings import Settings
from govshare import storage


def jobs(settings: Settings, keystore: KeyStore) -> list[Job]:
    def sync_due(database: Database) -> int:
        runs = service.sync_due(
            database, store=storage.for_settings(settings), keystore=keystore, files_root=settings.resolved_sources_dir,
            connect_timeout=settings.source_connect_timeout_seconds,
        )
        return len(runs)

    return [Job("source-syncs", settings.sync_check_interval_seconds, sync_due)]
