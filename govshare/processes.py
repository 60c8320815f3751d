"""Which process owns what: temporary file names that carry their writer, and whether a writer is gone.

A process killed outright (SIGKILL, a power cut) runs no cleanup, so whatever it was
writing stays behind. Every temporary file is therefore named after the process that
writes it (pid and host); at start-up, files whose process has ended are removed. A
file of another host, or of a process still running, is never touched: its owner may
still be writing it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from pathlib import Path

log = logging.getLogger("govshare.processes")

HOST = socket.gethostname()
# ".{purpose}-{pid}@{host}-{32 hex}{anything}.tmp"; a host name holds neither "@" nor "/".
_TEMP_NAME = re.compile(r"^\.(?P<purpose>[a-z]+)-(?P<pid>[0-9]+)@(?P<host>[^@/]+)-[0-9a-f]{32}(\..*)?\.tmp$")


def temp_name(purpose: str, suffix: str = "") -> str:
    """A hidden temporary file name owned by this process: ``.{purpose}-{pid}@{host}-{uuid}{suffix}.tmp``."""
    return f".{purpose}-{os.getpid()}@{HOST}-{uuid.uuid4().hex}{suffix}.tmp"


def process_is_gone(host: str | None, pid: int | None) -> bool:
    """Whether the process ``pid`` on ``host`` has certainly ended (only this host's processes can be told)."""
    if host != HOST or pid is None:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


def owner(path: Path) -> tuple[str, int] | None:
    """The host and pid a temporary file's name gives, or None for any other name."""
    found = _TEMP_NAME.match(path.name)
    return (found["host"], int(found["pid"])) if found else None


def remove_dead_temp_files(*roots: Path) -> list[Path]:
    """Remove temporary files under ``roots`` left by processes of this host that have ended."""
    removed = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob(".*.tmp*"):
            # DuckDB keeps a write-ahead log beside a database being built: "<name>.tmp.wal".
            base = path.with_name(path.name.removesuffix(".wal"))
            found = owner(base)
            if found is None or not path.is_file() or not process_is_gone(*found):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by ended processes", len(removed))
    return removed
