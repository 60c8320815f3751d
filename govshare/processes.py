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
import shutil
import socket
import uuid
from pathlib import Path

log = logging.getLogger("govshare.processes")

HOST = socket.gethostname()
PID_REUSE_SLACK_SECONDS = 2.0  # the boot time /proc gives is in whole seconds
# ".{purpose}-{pid}@{host}-{32 hex}{anything}.tmp"; a host name holds neither "@" nor "/".
_TEMP_NAME = re.compile(r"^\.(?P<purpose>[a-z]+)-(?P<pid>[0-9]+)@(?P<host>[^@/]+)-[0-9a-f]{32}(\..*)?\.tmp$")


def temp_name(purpose: str, suffix: str = "") -> str:
    """A hidden temporary file name owned by this process: ``.{purpose}-{pid}@{host}-{uuid}{suffix}.tmp``."""
    return f".{purpose}-{os.getpid()}@{HOST}-{uuid.uuid4().hex}{suffix}.tmp"


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (Unix time, to within a second), where /proc tells (Linux); else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time in clock ticks after boot


def process_is_gone(host: str | None, pid: int | None, *, since: float | None = None) -> bool:
    """Whether the process ``pid`` on ``host``, known to be at work at Unix time ``since``, has certainly ended.

    Only this host's processes can be told. A process with that pid that started after
    ``since`` is another one that reused the number (a restarted container's server is
    often the same pid), so the one that was at work has ended.
    """
    if host != HOST or pid is None:
        return False
    if pid != os.getpid():
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it exists, under another user
    started = _started_at(pid) if since is not None else None
    return started is not None and started > since + PID_REUSE_SLACK_SECONDS


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
        for path in list(root.rglob(".*.tmp*")):
            # DuckDB keeps a write-ahead log beside a database being built ("<name>.tmp.wal"),
            # and a keyed-store build spills to a folder beside it ("<name>.tmp.spill").
            base = path.with_name(path.name.removesuffix(".wal").removesuffix(".spill"))
            found = owner(base)
            if found is None or not path.exists() or not process_is_gone(*found, since=path.stat().st_mtime):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by ended processes", len(removed))
    return removed
