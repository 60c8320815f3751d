"""Working days, as the sharing regulations count time limits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class WorkingCalendar:
    """Monday to Friday, less public holidays, plus weekend days declared working days."""

    def __init__(self, *, holidays: Iterable[date] = (), extra_working_days: Iterable[date] = (), timezone: str = "UTC") -> None:
        self.holidays = frozenset(holidays)
        self.extra_working_days = frozenset(extra_working_days)
        self.zone = ZoneInfo(timezone)

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def due(self, filed_at: datetime, working_days: int) -> datetime:
        """The end of the ``working_days``-th working day after the filing day (the filing day does not count)."""
        day, counted = self.local_date(filed_at), 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=self.zone)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Whole working days after ``start``'s day up to and including ``end``'s day."""
        first, last = self.local_date(start), self.local_date(end)
        count, day = 0, first
        while day < last:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count

    def today(self, now: datetime) -> date:
        return self.local_date(now)
