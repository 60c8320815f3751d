"""What ``govshare serve`` runs, which uvicorn imports by name: the app factory and the HTTP protocol.

By name, so that one path serves one process or several: with ``--workers N`` uvicorn
spawns N fresh processes, each importing these and building its own app (its own
ledger writer, jobs, caches and rate-limit buckets, as a replica has). Revocations,
grants and every other state live in the record store, so what one process changes
the others see on their next call.
"""

from __future__ import annotations

from fastapi import FastAPI

from govshare import memory
from govshare.app import create_app
from govshare.limits import HeadDeadlineProtocol
from govshare.settings import get_settings


class Protocol(HeadDeadlineProtocol):
    """The served HTTP protocol; ``app`` sets its head deadline from the settings (before the first connection)."""


def app() -> FastAPI:
    """The served app, from the settings ``govshare serve`` left in the environment."""
    memory.configure_malloc()
    settings = get_settings()
    Protocol.head_timeout = settings.request_header_timeout_seconds
    return create_app(settings)
