"""HTTP Range requests on served files, checked before anything is recorded.

A download goes on the access ledger and the audit chain as a delivery, so a Range the
file cannot satisfy (or that is no byte range at all) is answered as a problem before either
is written, and what is recorded is the bytes that will be sent, with the ranges in a
normalised, bounded form: never the client's header text, which could be any length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable

from govshare.errors import GovshareError

RECORDED_RANGES = 10  # ranges named in an audit entry; beyond them only their count


class RangeInvalid(GovshareError):
    status, type, title = 400, "range-invalid", "Invalid Range header"


class RangeUnsatisfiable(GovshareError):
    status, type, title = 416, "range-not-satisfiable", "Range not satisfiable"


@dataclass(frozen=True)
class Delivery:
    """What a file response will send: the byte ranges (None: the whole file), their bytes, and a bounded description."""

    ranges: list[tuple[int, int]] | None  # [start, end) pairs
    bytes: int
    size: int

    def described(self) -> str | None:
        """``bytes=0-99,200-299`` (inclusive ends, as HTTP writes them), at most RECORDED_RANGES of them; None for the whole file."""
        if self.ranges is None:
            return None
        shown = ",".join(f"{start}-{end - 1}" for start, end in self.ranges[:RECORDED_RANGES])
        more = f" (+{len(self.ranges) - RECORDED_RANGES} more)" if len(self.ranges) > RECORDED_RANGES else ""
        return f"bytes={shown}{more}"


def planned_delivery(request: Request, path: Path) -> Delivery:
    """What serving ``path`` to ``request`` will send; ``RangeInvalid`` (400) or ``RangeUnsatisfiable`` (416) instead of a
    Range header Starlette's ``FileResponse`` would refuse, decided by the same rules."""
    stat = os.stat(path)
    header = request.headers.get("range")
    if header is None or request.method not in ("GET", "HEAD"):
        return Delivery(None, stat.st_size, stat.st_size)
    if_range = request.headers.get("if-range")
    if if_range is not None and not FileResponse(path, stat_result=stat)._should_use_range(if_range):
        return Delivery(None, stat.st_size, stat.st_size)  # the file changed since: the whole of it is sent
    try:
        ranges = FileResponse._parse_range_header(header, stat.st_size)
    except MalformedRangeHeader as error:
        # Starlette's own short messages: the header itself is not echoed (it may be kilobytes).
        raise RangeInvalid(f"Range: {error.content}; only one or more byte ranges (bytes=0-99) within the file are served") from None
    except RangeNotSatisfiable:
        raise RangeUnsatisfiable(
            f"Range: no requested range starts within the file ({stat.st_size} bytes)",
            headers={"Content-Range": f"bytes */{stat.st_size}"},
        ) from None
    if not ranges:  # more ranges than Starlette serves: it sends the whole file
        return Delivery(None, stat.st_size, stat.st_size)
    return Delivery(ranges, sum(end - start for start, end in ranges), stat.st_size)
