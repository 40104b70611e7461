"""Reporting: projections of every service's events (public status, monthly figures, agency
performance, trends), the dashboard, and a rebuild of everything from the sources' logs — run by
hand (``rebuild``) or by itself when the code's projection shape differs from the stored one."""
from __future__ import annotations

import logging
from contextlib import ExitStack

import eventlet
from marshmallow import ValidationError
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.timer import timer
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from shared.core import config
from shared.core.errors import EXPECTED, Conflict, NotFound, ValidationFailed
from shared.core.events import Envelope, isoformat_utc, utc_now
from shared.glue.http import json_response, too_many_requests
from shared.core.store import ServiceStore
from shared.glue.providers import Consumer, RateLimit, Storage
from shared.glue.service_base import ServiceBase
from shared.core.handlers import EventHandlers, handles
from shared.glue.subscriptions import listens_to
from shared.core.reference import month_key
from services.reporting.adapters import dashboard, repository, tables
from services.reporting.domain import reports
from services.reporting.domain.narrative import monthly_narrative
from services.reporting.domain.projections import KEPT_FIELDS
from services.reporting.domain.public import complaint_status, summary_csv
from shared.core.tracking import normalise as normalise_tracking_code
from services.reporting.adapters.schemas import DashboardArgs, FindArgs, MonthArgs, PerformanceArgs, TrackingCodeArgs

log = logging.getLogger("reporting")

#: How often reporting checks that its live projection has the code's shape (and retries a
#: failed shape rebuild).
SHAPE_CHECK_SECONDS = 30


def build_store(url: str | None = None) -> ServiceStore:
    store = ServiceStore("reporting", tables.metadata, emits_events=False, url=url)
    # The projection generation tables are made at run time (a rebuild makes new ones), once the
    # migrated tables exist.
    store.on_ready.append(
        lambda: repository.ensure_live(store.database, (store.checkpoints, store.processed, store.failures)))
    return store


class ReportingHandlers(EventHandlers):
    """Every event a projection keeps a fact of: the types are ``KEPT_FIELDS``' keys."""

    @handles(*KEPT_FIELDS)
    def apply(self, tx, envelope: Envelope):
        repository.apply_event(tx, envelope.to_dict())


class SourceLogs(DependencyProvider):
    """Reads ``<source>.events_since`` for a rebuild; one rebuild at a time."""

    def setup(self):
        self.lock = eventlet.semaphore.Semaphore()
        self.progress: dict = {}

    def get_dependency(self, worker_ctx):
        return self

    def rebuild(self, store: ServiceStore, fetch: repository.Fetch | None = None) -> dict:
        """``fetch(source, position, limit)``: the sources' logs (default: their RPC)."""
        if not self.lock.acquire(blocking=False):
            raise Conflict("a rebuild is already running")
        try:
            self.progress = {"events": 0, "phase": "starting", "running": True}
            with ExitStack() as stack:
                if fetch is None:
                    proxy = stack.enter_context(ClusterRpcProxy(self.container.config, timeout=120))

                    def fetch(source, position, limit):
                        return getattr(proxy, source).events_since(position, limit)
                result = repository.rebuild(store.database, fetch, store.checkpoints,
                                            store.processed, store.failures, progress=self.progress)
            self.progress.update(result, phase="done")
            return result
        finally:
            self.progress["running"] = False
            self.lock.release()

    def rebuild_if_shape_changed(self, store: ServiceStore, fetch: repository.Fetch | None = None) -> dict | None:
        """Rebuild when the live generation was built with another shape than the code's (the
        rebuild records the code's fingerprint when it switches); None when nothing was to do."""
        if self.lock.locked() or repository.shape_is_current(store.database):
            return None
        log.warning("the projection's shape changed: rebuilding it from the sources' logs")
        try:
            return self.rebuild(store, fetch)
        except Conflict:
            return None  # a rebuild by hand started meanwhile; it records the fingerprint too


def _load(schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ValidationFailed(error.messages)


@listens_to(ReportingHandlers)
class ReportingService(ServiceBase):
    name = "reporting"

    store = Storage(build_store)
    consumer = Consumer(ReportingHandlers, batch_catch_up=True)
    logs = SourceLogs()
    # Anyone may look a code up; limiting per address keeps guessing codes slow.
    status_rate_limit = RateLimit("REPORTING_STATUS_RATE_PER_MINUTE", "120")

    # -- events: every type the projections use, from the service that emits it ---------------
    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        if not repository.shape_is_current(self.store.database):
            return  # the shape rebuild reads the logs itself, then sets the checkpoints
        self.consumer.catch_up()

    @timer(interval=SHAPE_CHECK_SECONDS, eager=True)
    def rebuild_when_shape_changed(self):
        """At start (and again until it succeeds, e.g. while a source is still starting):
        replace a projection built with another shape, in the background — the old generation
        keeps answering meanwhile."""
        try:
            result = self.logs.rebuild_if_shape_changed(self.store)
        except Exception as error:  # a source not up yet: the next tick tries again
            log.warning("shape rebuild failed, retrying in %ss: %s: %s", SHAPE_CHECK_SECONDS,
                        type(error).__name__, error)
            return
        if result is not None:
            log.info("projection rebuilt for its new shape: %s", result)

    # -- RPC ---------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def monthly_summary(self, year, month):
        args = _load(MonthArgs(), {"year": year, "month": month})
        return self._summary(args["year"], args["month"])

    @rpc(expected_exceptions=EXPECTED)
    def monthly_narrative(self, year, month):
        args = _load(MonthArgs(), {"year": year, "month": month})
        return {"year": args["year"], "month": args["month"],
                "text": monthly_narrative(self._summary(args["year"], args["month"]), self._agency_names())}

    @rpc(expected_exceptions=EXPECTED)
    def complaint_status(self, tracking_code):
        args = _load(TrackingCodeArgs(), {"tracking_code": tracking_code})
        return self._status(args["tracking_code"])

    @rpc(expected_exceptions=EXPECTED)
    def find_complaints(self, filters):
        """Public statuses of complaints matching filters (tracking_codes, category, filed_from, filed_to, status open/closed, limit); newest first."""
        args = _load(FindArgs(), filters if isinstance(filters, dict) else {})
        codes = [normalise_tracking_code(code) for code in args["tracking_codes"] or []] or None
        with self.store.database.read() as connection:
            found = repository.find_complaints(
                connection, codes, args["category"],
                isoformat_utc(args["filed_from"]) if args["filed_from"] else None,
                isoformat_utc(args["filed_to"]) if args["filed_to"] else None,
                None if args["status"] is None else args["status"] == "open", args["limit"])
        return [complaint_status(row, answers) for row, answers in found]

    @rpc(expected_exceptions=EXPECTED)
    def agency_performance(self, agency_code, date_from, date_to):
        args = _load(PerformanceArgs(), {"agency_code": agency_code, "date_from": date_from,
                                         "date_to": date_to})
        with self.store.database.read() as connection:
            rows = repository.agency_assignments(connection, args["agency_code"])
        return reports.agency_performance(rows, args["agency_code"], args["date_from"],
                                          args["date_to"], utc_now())

    @rpc(expected_exceptions=EXPECTED)
    def trends(self, year, month, months=12):
        args = _load(MonthArgs(), {"year": year, "month": month})
        if not isinstance(months, int) or not 1 <= months <= 60:
            raise ValidationFailed("months must be a whole number from 1 to 60")
        keys = reports.last_months(args["year"], args["month"], months)
        with self.store.database.read() as connection:
            counts = repository.trend_counts(connection, keys)
        return reports.trends(counts, keys)

    @rpc
    def rebuild_progress(self):
        """How far a running (or the last) rebuild got: events read so far, and its phase."""
        return dict(self.logs.progress)

    @rpc(expected_exceptions=EXPECTED)
    def rebuild(self):
        return self.logs.rebuild(self.store)

    # -- HTTP --------------------------------------------------------------------------------
    @http("GET", "/api/complaints/<tracking_code>")
    def http_complaint_status(self, request, tracking_code):
        if self.status_rate_limit is not None:
            decision = self.status_rate_limit.take(request.remote_addr or "unknown")
            if not decision.allowed:
                return too_many_requests(decision, "too many lookups from this address; try again later")
        try:
            return json_response(200, self._status(tracking_code))
        except NotFound as error:
            return json_response(404, {"error": str(error)})

    @http("GET", "/api/reports/monthly/<int:year>/<int:month>")
    def http_monthly_report(self, request, year, month):
        try:
            args = _load(MonthArgs(), {"year": year, "month": month})
        except ValidationFailed as error:
            return json_response(400, {"error": "invalid month", "fields": error.args[0]})
        summary = self._summary(args["year"], args["month"])
        if request.args.get("format") == "csv":
            response = Response(summary_csv(summary, self._agency_names()), status=200, mimetype="text/csv")
            response.headers["Content-Type"] = "text/csv; charset=utf-8"
            response.headers["Content-Disposition"] = (
                f'attachment; filename="ntbcare-{args["year"]:04d}-{args["month"]:02d}.csv"')
            return response
        return json_response(200, summary)

    @http("GET", "/api/reports/monthly/<int:year>/<int:month>/narrative")
    def http_monthly_narrative(self, request, year, month):
        try:
            args = _load(MonthArgs(), {"year": year, "month": month})
        except ValidationFailed as error:
            return json_response(400, {"error": "invalid month", "fields": error.args[0]})
        text = monthly_narrative(self._summary(args["year"], args["month"]), self._agency_names())
        if request.args.get("format") == "text":
            return Response(text, status=200, mimetype="text/plain", content_type="text/plain; charset=utf-8")
        return json_response(200, {"year": args["year"], "month": args["month"], "text": text})

    @http("GET", "/dashboard")
    def http_dashboard(self, request):
        try:
            args = DashboardArgs().load(dict(request.args))
        except ValidationError as error:
            return json_response(400, {"error": "month must look like 2020-11", "fields": error.messages})
        now = utc_now()
        key = args["month"] or month_key(now)
        year, month = (int(part) for part in key.split("-"))
        months = reports.last_months(year, month, 12)
        with self.store.database.read() as connection:
            rows = repository.month_complaints(connection, key)
            assignments = repository.month_assignments(connection, key)
            counts = repository.trend_counts(connection, months)
            open_rows = repository.open_complaints_with_deadline(connection)
            names = repository.agency_names(connection)
        summary = reports.monthly_summary(rows, year, month, now)
        page = dashboard.render(key, summary, reports.trends(counts, months),
                                reports.agency_table(assignments, now),
                                reports.nearing_deadline(open_rows, now)[:25],
                                monthly_narrative(summary, names), now, names)
        response = Response(page, status=200, mimetype="text/html", content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response

    @http("GET", "/dashboard/static/<name>")
    def http_dashboard_static(self, request, name):
        found = dashboard.static_file(name)
        if found is None:
            return json_response(404, {"error": "not found"})
        body, content_type = found
        return Response(body, status=200, content_type=content_type)

    # -- helpers -------------------------------------------------------------------------------
    def _summary(self, year: int, month: int) -> dict:
        with self.store.database.read() as connection:
            rows = repository.month_complaints(connection, f"{year:04d}-{month:02d}")
        return reports.monthly_summary(rows, year, month, utc_now())

    def _agency_names(self) -> dict[str, str]:
        with self.store.database.read() as connection:
            return repository.agency_names(connection)

    def _status(self, tracking_code: str) -> dict:
        code = normalise_tracking_code(tracking_code)
        with self.store.database.read() as connection:
            found = repository.complaint_by_tracking_code(connection, code)
        if found is None:
            raise NotFound("no complaint with that tracking code")
        return complaint_status(*found)
