"""The period every evaluation figure is counted over."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Period:
    """From ``start`` (included) to ``end`` (excluded), in UTC."""

    start: datetime
    end: datetime
