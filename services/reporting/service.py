"""Reporting: projections of every service's events, rebuildable from the logs."""
from __future__ import annotations

from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.timer import timer
from sqlalchemy import func, select

from shared import config
from shared.errors import EXPECTED, ValidationFailed
from shared.events import Envelope, isoformat_utc, utc_now
from shared.events.catalogue import CATEGORIES
from shared.nameko_support import Consumer, ServiceStore, Storage
from shared.service_base import ServiceBase
from services.reporting import tables
from services.reporting.months import month_key


def build_store(url: str | None = None) -> ServiceStore:
    return ServiceStore("reporting", tables.metadata, emits_events=False, url=url)


def handlers(store: ServiceStore) -> dict:
    def on_complaint_filed(tx, envelope: Envelope):
        data = envelope.data
        tx.execute(tables.complaint_facts.insert().values(
            complaint_id=envelope.complaint_id, tracking_code=data["tracking_code"],
            category=data["category"], region_code=data["region_code"], filed_at=data["filed_at"],
            month=month_key(data["filed_at"]), lead_agencies="[]", followed_up=False,
            resolved=False, public_status="diterima", updated_at=envelope.occurred_at))
    return {"ComplaintFiled": on_complaint_filed}


class ReportingService(ServiceBase):
    name = "reporting"

    store = Storage(build_store)
    consumer = Consumer(["intake", "routing", "notification"], handlers)

    @event_handler("intake", "ComplaintFiled")
    def on_complaint_filed(self, payload):
        self.consumer.handle(payload, "intake")

    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()

    @rpc(expected_exceptions=EXPECTED)
    def monthly_summary(self, year, month):
        try:
            year, month = int(year), int(month)
            if not 1 <= month <= 12 or not 2000 <= year <= 2100:
                raise ValueError
        except (TypeError, ValueError):
            raise ValidationFailed("year and month must be a real month, e.g. 2020, 11")
        key = f"{year:04d}-{month:02d}"
        facts = tables.complaint_facts
        with self.store.database.read() as connection:
            rows = connection.execute(select(facts).where(facts.c.month == key)).mappings().all()
        by_category = {code: 0 for code in CATEGORIES}
        by_region: dict[str, int] = {}
        for row in rows:
            by_category[row["category"]] = by_category.get(row["category"], 0) + 1
            region = row["region_code"] or "unknown"
            by_region[region] = by_region.get(region, 0) + 1
        total = len(rows)
        followed_up = sum(1 for row in rows if row["followed_up"])
        return {
            "year": year, "month": month, "total": total, "by_category": by_category,
            "by_region": by_region, "by_agency": {}, "followed_up": followed_up,
            "follow_up_rate": (followed_up / total) if total else 0.0,
            "resolved": sum(1 for row in rows if row["resolved"]),
            "median_hours_to_first_response": None, "within_first_response_sla": None,
        }
