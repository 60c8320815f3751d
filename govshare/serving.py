"""The entry points of ``govshare serve --workers N``'s processes, which uvicorn imports by name.

Each worker is a fresh Python process (uvicorn spawns them) serving the shared port
with its own app: its own ledger writer, jobs, caches and rate-limit buckets, as a
replica has. Revocations, grants and every other state live in the record store, so
what one worker changes the others see on their next call.
"""

from __future__ import annotations

from fastapi import FastAPI

from govshare import memory
from govshare.app import create_app
from govshare.limits import HeadDeadlineProtocol
from govshare.settings import get_settings


class Protocol(HeadDeadlineProtocol):
    """The HTTP protocol of a worker; ``app`` sets its head deadline from the settings (before the first connection)."""


def app() -> FastAPI:
    """A worker's app, from the settings ``govshare serve`` left in the environment."""
    memory.configure_malloc()
    settings = get_settings()
    Protocol.head_timeout = settings.request_header_timeout_seconds
    return create_app(settings)
