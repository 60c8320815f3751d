"""The exchange's background jobs: building queued extracts (and recovering interrupted ones), keyed stores,
and erasing the files of ended grants."""

from __future__ import annotations

from pathlib import Path

from approvals import service as approvals
from exchange import extracts, retention
from exchange.service import prebuild_keyed_stores
from govshare.db import Database
from govshare.jobs import Job
from govshare.keys import KeyStore
from govshare.settings import Settings


def jobs(settings: Settings, keystore: KeyStore) -> list[Job]:
    data_dir: Path = settings.resolved_data_dir

    def build(database: Database) -> int:
        extracts.recover(database)
        return extracts.run_pending(database, data_dir=data_dir, keystore=keystore)

    def keyed_stores(database: Database) -> int:
        with database.transaction(write=False) as session:
            return prebuild_keyed_stores(session, data_dir=data_dir)

    def erase_ended(database: Database) -> int:
        return retention.erase_ended_grant_files(database, data_dir=data_dir, today=approvals.today(settings))

    return [Job("extracts", 0.5, build), Job("keyed-stores", 5.0, keyed_stores), Job("ended-grant-files", 60.0, erase_ended)]
