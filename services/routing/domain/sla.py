"""Service-level clocks of a routed complaint: when triage, the first response and the follow-up
are due, counted in NTB working days where the national rules say "working days".

Conventions (where the brief is silent):

- Working days are Monday–Friday in Asia/Makassar time (WITA, UTC+8, no DST) minus the holidays
  and cuti bersama in ``data/holidays.yaml``. Dates are taken in WITA, so 23:30 WITA on Friday is
  Friday even though it is 15:30 UTC the same day, and 00:30 WITA on Saturday is not a working
  day although it is still Friday in UTC.
- ``add_working_days(start, n)``: a start on a working day is due at the same WITA clock time on
  the n-th following working day (Friday 10:00 + 1 = Monday 10:00, or Tuesday 10:00 when Monday
  is a holiday). A start on a non-working day counts from 00:00 WITA of the next working day, so a
  complaint routed on Saturday gets n whole working days (Saturday + 3 = Thursday 00:00, i.e. the
  end of Wednesday).
- First-response targets (urgent 1 h, important 24 h, normal 48 h) are elapsed hours, as
  NTBCare publishes them ("1×24 jam"), not working hours.
- The 60 days of Perpres 76/2013 are calendar days from filing; reported, never escalated.
- ``ROUTING_SLA_SECONDS`` ("triage=5,urgent=3,important=3,normal=3,follow_up=8"; also
  ``settlement``) replaces each named clock with that many elapsed seconds, for tests and drills;
  clocks it does not name keep their normal rule.

Pure domain code: no nameko, no SQLAlchemy, no clock reads (callers pass ``now``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Optional
from zoneinfo import ZoneInfo

import yaml

from shared.core import reference
from shared.core.reference import PRIORITIES

DEFAULT_HOLIDAYS_PATH = Path(__file__).resolve().parents[1] / "data" / "holidays.yaml"
WITA = reference.WITA.key  # "Asia/Makassar"

TRIAGE = "triage"
FIRST_RESPONSE = "first_response"
FOLLOW_UP = "follow_up"
SETTLEMENT = "settlement"

# Names ROUTING_SLA_SECONDS may override: the three clocks, first response per priority.
OVERRIDABLE = (TRIAGE, *PRIORITIES, FOLLOW_UP, SETTLEMENT)


def load_holidays(path: Optional[Path | str] = None) -> set[date]:
    with open(path or DEFAULT_HOLIDAYS_PATH, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    entries = document.get("holidays") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path or DEFAULT_HOLIDAYS_PATH}: expected a top-level 'holidays' list")
    days: set[date] = set()
    for entry in entries:
        value = entry.get("date") if isinstance(entry, dict) else entry
        if isinstance(value, str):
            value = date.fromisoformat(value)
        if not isinstance(value, date) or isinstance(value, datetime):
            raise ValueError(f"holiday {entry!r}: expected an ISO date (YYYY-MM-DD)")
        days.add(value)
    return days


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC); got a naive datetime")


class WorkingCalendar:
    def __init__(self, holidays: Iterable[date] = (), tz: str = WITA):
        self.holidays = frozenset(holidays)
        self.tz = ZoneInfo(tz)

    @classmethod
    def from_yaml(cls, path: Optional[Path | str] = None, tz: str = WITA) -> "WorkingCalendar":
        return cls(load_holidays(path), tz)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, start_utc: datetime, n: int) -> datetime:
        """``n`` working days after ``start_utc`` (see the module docstring), as aware UTC."""
        _require_aware(start_utc, "start_utc")
        if n < 0:
            raise ValueError("n must not be negative")
        local = start_utc.astimezone(self.tz)
        day, clock = local.date(), local.time()
        if not self.is_working_day(day):
            day, clock = self.next_working_day(day), time(0, 0)
        for _ in range(n):
            day = self.next_working_day(day)
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(timezone.utc)


def parse_sla_seconds(value: Optional[str]) -> dict[str, float]:
    """Parse ``ROUTING_SLA_SECONDS``; a clear ValueError names the bad part."""
    overrides: dict[str, float] = {}
    if not value or not value.strip():
        return overrides
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, number = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"ROUTING_SLA_SECONDS: {part!r} is not name=seconds")
        if name not in OVERRIDABLE:
            raise ValueError(f"ROUTING_SLA_SECONDS: unknown clock {name!r}; "
                             f"expected one of {', '.join(OVERRIDABLE)}")
        try:
            seconds = float(number)
        except ValueError:
            raise ValueError(f"ROUTING_SLA_SECONDS: {name}={number.strip()!r} is not a number") from None
        if seconds <= 0:
            raise ValueError(f"ROUTING_SLA_SECONDS: {name} must be a positive number of seconds")
        overrides[name] = seconds
    return overrides


@dataclass(frozen=True)
class SlaPolicy:
    calendar: WorkingCalendar
    triage_working_days: int = 3
    first_response: Mapping[str, timedelta] = field(default_factory=lambda: {
        "urgent": timedelta(hours=1),
        "important": timedelta(hours=24),
        "normal": timedelta(hours=48),
    })
    follow_up_working_days: int = 5
    settlement_days: int = 60
    overrides: Mapping[str, float] = field(default_factory=dict)  # clock name -> seconds

    @classmethod
    def from_env(cls, value: Optional[str], calendar: WorkingCalendar) -> "SlaPolicy":
        """``value`` is the raw ``ROUTING_SLA_SECONDS`` (or None when unset)."""
        return cls(calendar=calendar, overrides=parse_sla_seconds(value))

    def _working_days_or_override(self, name: str, start: datetime, days: int) -> datetime:
        if name in self.overrides:
            return start + timedelta(seconds=self.overrides[name])
        return self.calendar.add_working_days(start, days)

    def due_at(self, routed_at_utc: datetime, priority: str, at_desk: bool) -> dict[str, datetime]:
        """The clocks a routing starts: {"triage"} at the desk, else {"first_response", "follow_up"}."""
        _require_aware(routed_at_utc, "routed_at_utc")
        routed_at_utc = routed_at_utc.astimezone(timezone.utc)
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        if at_desk:
            return {TRIAGE: self._working_days_or_override(
                TRIAGE, routed_at_utc, self.triage_working_days)}
        if priority in self.overrides:
            first = routed_at_utc + timedelta(seconds=self.overrides[priority])
        else:
            first = routed_at_utc + self.first_response[priority]
        return {
            FIRST_RESPONSE: first,
            FOLLOW_UP: self._working_days_or_override(
                FOLLOW_UP, routed_at_utc, self.follow_up_working_days),
        }

    def settlement_due(self, filed_at: datetime) -> datetime:
        """Perpres 76/2013: settled within 60 (calendar) days of filing. For reports only."""
        _require_aware(filed_at, "filed_at")
        filed_at = filed_at.astimezone(timezone.utc)
        if SETTLEMENT in self.overrides:
            return filed_at + timedelta(seconds=self.overrides[SETTLEMENT])
        return filed_at + timedelta(days=self.settlement_days)
