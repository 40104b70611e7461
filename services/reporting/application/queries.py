"""Reporting's use cases that read: every report and lookup the entrypoints serve, each inside
one read transaction of the live projection (``adapters.repository``), shaped by the pure rules
of ``domain`` (``reports``, ``public``, ``narrative``). The entrypoints (``service.py``) only parse
their arguments, call one of these, and shape the response.

``now`` is the caller's clock (``utc_now()`` when not given): the figures that depend on it
(open complaints past their deadline, the dashboard's "nearing deadline") are measured there.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable, Optional

from shared.core.db import Database
from shared.core.errors import NotFound
from shared.core.events import isoformat_utc, utc_now
from shared.core.reference import month_key
from shared.core.tracking import normalise as normalise_tracking_code
from services.reporting.adapters import repository
from services.reporting.domain import reports
from services.reporting.domain.narrative import monthly_narrative as narrate
from services.reporting.domain.public import complaint_status as public_status
from services.reporting.domain.public import summary_csv

#: How many months the dashboard's trend shows, and how many deadlines it lists.
DASHBOARD_MONTHS = 12
DASHBOARD_DEADLINES = 25


def _month(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


# -- the monthly report ----------------------------------------------------------------------------

def monthly_summary(database: Database, year: int, month: int, now: Optional[datetime] = None) -> dict:
    """The month's public figures (``reports.monthly_summary``)."""
    with database.read() as connection:
        rows = repository.month_complaints(connection, _month(year, month))
    return reports.monthly_summary(rows, year, month, now or utc_now())


def classifier_accuracy(database: Database, month: Optional[str] = None) -> dict:
    """How often the desk kept the automatic category and region (``reports.classifier_accuracy``),
    over every filed complaint or those filed in ``month`` (``YYYY-MM``, WITA)."""
    with database.read() as connection:
        rows = repository.filed_complaints(connection, month)
    return {"month": month, **reports.classifier_accuracy(rows)}


@dataclass(frozen=True)
class MonthlyReport:
    summary: dict
    agency_names: dict[str, str]

    @property
    def narrative(self) -> str:
        """The month in words (the agencies by the names their events carried)."""
        return narrate(self.summary, self.agency_names)

    @property
    def csv(self) -> bytes:
        return summary_csv(self.summary, self.agency_names)


def monthly_report(database: Database, year: int, month: int, now: Optional[datetime] = None) -> MonthlyReport:
    """The month's figures with the agencies' display names, read together."""
    with database.read() as connection:
        rows = repository.month_complaints(connection, _month(year, month))
        names = repository.agency_names(connection)
    return MonthlyReport(reports.monthly_summary(rows, year, month, now or utc_now()), names)


def monthly_narrative(database: Database, year: int, month: int, now: Optional[datetime] = None) -> str:
    return monthly_report(database, year, month, now).narrative


# -- public lookups --------------------------------------------------------------------------------

def complaint_status(database: Database, tracking_code: str) -> dict:
    """One complaint's public status by its tracking code (any spelling of it); ``NotFound``
    when no filed complaint has it."""
    code = normalise_tracking_code(tracking_code)
    with database.read() as connection:
        found = repository.complaint_by_tracking_code(connection, code)
    if found is None:
        raise NotFound("no complaint with that tracking code")
    return public_status(*found)


def find_complaints(database: Database, tracking_codes: Optional[Iterable[str]] = None,
                    category: Optional[str] = None, filed_from: Optional[datetime] = None,
                    filed_to: Optional[datetime] = None, status: Optional[str] = None,
                    limit: int = 200) -> list[dict]:
    """Public statuses of the complaints matching every filter given, newest first (Open311's
    ``GET requests``); ``status`` is ``open``, ``closed`` or None for both."""
    codes = [normalise_tracking_code(code) for code in tracking_codes or []] or None
    with database.read() as connection:
        found = repository.find_complaints(
            connection, codes, category,
            isoformat_utc(filed_from) if filed_from else None,
            isoformat_utc(filed_to) if filed_to else None,
            None if status is None else status == "open", limit)
    return [public_status(row, answers) for row, answers in found]


# -- agencies and trends ---------------------------------------------------------------------------

def agency_performance(database: Database, agency_code: str, date_from: date, date_to: date,
                       now: Optional[datetime] = None) -> dict:
    with database.read() as connection:
        rows = repository.agency_assignments(connection, agency_code)
    return reports.agency_performance(rows, agency_code, date_from, date_to, now or utc_now())


def trends(database: Database, year: int, month: int, months: int = 12) -> dict:
    """Complaints per month, category and region over the ``months`` ending with this one."""
    keys = reports.last_months(year, month, months)
    with database.read() as connection:
        counts = repository.trend_counts(connection, keys)
    return reports.trends(counts, keys)


# -- the dashboard ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard page shows (rendered by ``adapters.dashboard.render``)."""

    month_key: str
    summary: dict
    trend: dict
    agencies: list[dict]
    nearing: list[dict]
    narrative: str
    now: datetime
    agency_names: dict[str, str]

    def render_args(self) -> tuple[Any, ...]:
        return (self.month_key, self.summary, self.trend, self.agencies, self.nearing, self.narrative,
                self.now, self.agency_names)


def dashboard(database: Database, month: Optional[str] = None, now: Optional[datetime] = None) -> Dashboard:
    """The dashboard of a month (``YYYY-MM``; this month when None): its figures, the trend of
    the twelve months up to it, the agencies' table and the open complaints nearest their
    deadline — read in one transaction."""
    now = now or utc_now()
    key = month or month_key(now)
    year, month_number = (int(part) for part in key.split("-"))
    months = reports.last_months(year, month_number, DASHBOARD_MONTHS)
    with database.read() as connection:
        rows = repository.month_complaints(connection, key)
        assignments = repository.month_assignments(connection, key)
        counts = repository.trend_counts(connection, months)
        open_rows = repository.open_complaints_with_deadline(connection)
        names = repository.agency_names(connection)
    summary = reports.monthly_summary(rows, year, month_number, now)
    return Dashboard(key, summary, reports.trends(counts, months), reports.agency_table(assignments, now),
                     reports.nearing_deadline(open_rows, now)[:DASHBOARD_DEADLINES],
                     narrate(summary, names), now, names)
