"""Reporting: projections of every service's events (public status, monthly figures, agency
performance, trends), the dashboard, and a rebuild of everything from the sources' logs — run by
hand (``rebuild``) or by itself when the code's projection shape differs from the stored one.

The entrypoints only translate: they parse their arguments (``adapters.schemas``), call a use
case (``application.queries`` for every report, ``application.projection`` for the projection
itself), and shape the answer (JSON, CSV, text, the dashboard's HTML)."""
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
from shared.core.exclusive import exclusive
from shared.core.errors import EXPECTED, Conflict, NotFound, ValidationFailed
from shared.glue.http import client_address, json_response, too_many_requests
from shared.core.store import ServiceStore
from shared.glue.providers import Consumer, Storage
from shared.glue.shared_limits import SharedRateLimit
from shared.glue.service_base import ServiceBase
from shared.glue.subscriptions import listens_to
from services.reporting.adapters import dashboard, repository, tables
from services.reporting.adapters.schemas import DashboardArgs, FindArgs, MonthArgs, PerformanceArgs, TrackingCodeArgs
from services.reporting.application import projection, queries
from services.reporting.application.projection import ReportingHandlers

__all__ = ["ReportingHandlers", "ReportingService", "SourceLogs", "build_store"]

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


class PrefetchingFetch:
    """``fetch`` that asks for a source's next page as soon as it hands out a full one, so that
    the source's process reads and encodes that page while this one derives the current (over
    RPC the two had taken turns: each waited for the other). One call in flight at a time — the
    prefetch runs in a green thread of its own while the caller works without the proxy — and
    the caller gets exactly what ``fetch`` returns for the arguments it asks with (a prefetch
    for other arguments is dropped). ``close()`` drops what is still in flight."""

    def __init__(self, fetch: repository.Fetch):
        self._fetch = fetch
        self._ahead: tuple[tuple, eventlet.greenthread.GreenThread] | None = None

    def __call__(self, source: str, position: int, limit: int) -> list:
        wanted = (source, position, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == wanted:
            page = ahead[1].wait()
        else:
            if ahead is not None:
                ahead[1].kill()
            page = self._fetch(source, position, limit)
        if len(page) >= limit:
            last = repository.page_end(page, position)   # where the rebuild asks next
            if last > position:
                following = (source, last, limit)
                self._ahead = (following, eventlet.spawn(self._fetch, *following))
                eventlet.sleep(0)  # the request goes out now, before the caller's work
        return page

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].kill()
            self._ahead = None


class SourceLogs(DependencyProvider):
    """Reads ``<source>.events_since`` for a rebuild; one rebuild at a time. ``fetch`` (source,
    position, limit) reads the logs some other way than over RPC."""

    def __init__(self, fetch: repository.Fetch | None = None):
        self.fetch = fetch

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
            with ExitStack() as stack:
                # One rebuild among every reporting replica (they share the database).
                if not stack.enter_context(exclusive(store.database.engine, "reporting-rebuild")):
                    raise Conflict("a rebuild is already running (another reporting replica)")
                self.progress = {"events": 0, "phase": "starting", "running": True}
                fetch = fetch or self.fetch
                helper_reads = None
                if fetch is None:
                    proxy = stack.enter_context(ClusterRpcProxy(self.container.config, timeout=120))

                    def over_rpc(source, position, limit):
                        return getattr(proxy, source).events_since(position, limit)
                    fetch = PrefetchingFetch(over_rpc)
                    stack.callback(fetch.close)
                    # Routing's log (the largest) read by a helper process over RPC too.
                    helper_reads = {"routing": "rpc"}
                result = projection.rebuild(store, fetch, progress=self.progress, helper_reads=helper_reads)
            self.progress.update(result, phase="done")
            return result
        finally:
            self.progress["running"] = False
            self.lock.release()

    def rebuild_if_shape_changed(self, store: ServiceStore, fetch: repository.Fetch | None = None) -> dict | None:
        """Rebuild when the live generation was built with another shape than the code's (the
        rebuild records the code's fingerprint when it switches); None when nothing was to do."""
        if self.lock.locked() or projection.live_path_open(store):
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


def _invalid_month(error: ValidationFailed) -> Response:
    return json_response(400, {"error": "invalid month", "fields": error.args[0]})


class DashboardPages(DependencyProvider):
    """The process's dashboard page cache (``dashboard.PageCache``), shared by its workers."""

    def setup(self):
        self.cache = dashboard.PageCache.from_env()

    def get_dependency(self, worker_ctx):
        return self.cache


# A projection: a quarter of a second behind the logs costs nobody anything, and shares a
# transaction among the events of many complaints (shared.glue.batching: lingering).
@listens_to(ReportingHandlers, linger_ms=250)
class ReportingService(ServiceBase):
    name = "reporting"

    store = Storage(build_store)
    consumer = Consumer(ReportingHandlers, batch_catch_up=True)
    logs = SourceLogs()
    # Anyone may look a code up; limiting per address keeps guessing codes slow (one budget per
    # address for every replica: counted in reporting's database).
    status_rate_limit = SharedRateLimit("REPORTING_STATUS_RATE_PER_MINUTE", "120")
    # The public dashboard, rebuilt at most every REPORTING_DASHBOARD_CACHE_SECONDS.
    dashboard_pages = DashboardPages()

    # -- events: every type the projections use, from the service that emits it ---------------
    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        if not projection.live_path_open(self.store):
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
        return queries.monthly_summary(self.store.database, args["year"], args["month"])

    @rpc(expected_exceptions=EXPECTED)
    def monthly_narrative(self, year, month):
        args = _load(MonthArgs(), {"year": year, "month": month})
        return {"year": args["year"], "month": args["month"],
                "text": queries.monthly_narrative(self.store.database, args["year"], args["month"])}

    @rpc(expected_exceptions=EXPECTED)
    def complaint_status(self, tracking_code):
        args = _load(TrackingCodeArgs(), {"tracking_code": tracking_code})
        return queries.complaint_status(self.store.database, args["tracking_code"])

    @rpc(expected_exceptions=EXPECTED)
    def find_complaints(self, filters):
        """Public statuses of complaints matching filters (tracking_codes, category, filed_from, filed_to,
        status open/closed, limit); newest first."""
        args = _load(FindArgs(), filters if isinstance(filters, dict) else {})
        return queries.find_complaints(self.store.database, args["tracking_codes"], args["category"],
                                       args["filed_from"], args["filed_to"], args["status"], args["limit"])

    @rpc(expected_exceptions=EXPECTED)
    def agency_performance(self, agency_code, date_from, date_to):
        args = _load(PerformanceArgs(), {"agency_code": agency_code, "date_from": date_from,
                                         "date_to": date_to})
        return queries.agency_performance(self.store.database, args["agency_code"], args["date_from"],
                                          args["date_to"])

    @rpc(expected_exceptions=EXPECTED)
    def trends(self, year, month, months=12):
        args = _load(MonthArgs(), {"year": year, "month": month})
        if not isinstance(months, int) or not 1 <= months <= 60:
            raise ValidationFailed("months must be a whole number from 1 to 60")
        return queries.trends(self.store.database, args["year"], args["month"], months)

    @rpc(expected_exceptions=EXPECTED)
    def classifier_accuracy(self, month=None):
        """How often the desk kept the automatic category and region (its corrections and
        re-routes, from the events), overall, per category and per region; ``month``
        ``YYYY-MM`` (filing month, WITA) or null for every month."""
        if month is not None:
            args = _load(DashboardArgs(), {"month": month})  # the same YYYY-MM
            month = args["month"]
        return queries.classifier_accuracy(self.store.database, month)

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
            decision = self.status_rate_limit.take(client_address(request))
            if not decision.allowed:
                return too_many_requests(decision, "too many lookups from this address; try again later")
        try:
            return json_response(200, queries.complaint_status(self.store.database, tracking_code))
        except NotFound as error:
            return json_response(404, {"error": str(error)})

    @http("GET", "/api/reports/monthly/<int:year>/<int:month>")
    def http_monthly_report(self, request, year, month):
        try:
            args = _load(MonthArgs(), {"year": year, "month": month})
        except ValidationFailed as error:
            return _invalid_month(error)
        if request.args.get("format") == "csv":
            report = queries.monthly_report(self.store.database, args["year"], args["month"])
            response = Response(report.csv, status=200, mimetype="text/csv")
            response.headers["Content-Type"] = "text/csv; charset=utf-8"
            response.headers["Content-Disposition"] = (
                f'attachment; filename="ntbcare-{args["year"]:04d}-{args["month"]:02d}.csv"')
            return response
        return json_response(200, queries.monthly_summary(self.store.database, args["year"], args["month"]))

    @http("GET", "/api/reports/monthly/<int:year>/<int:month>/narrative")
    def http_monthly_narrative(self, request, year, month):
        try:
            args = _load(MonthArgs(), {"year": year, "month": month})
        except ValidationFailed as error:
            return _invalid_month(error)
        text = queries.monthly_narrative(self.store.database, args["year"], args["month"])
        if request.args.get("format") == "text":
            return Response(text, status=200, mimetype="text/plain", content_type="text/plain; charset=utf-8")
        return json_response(200, {"year": args["year"], "month": args["month"], "text": text})

    @http("GET", "/dashboard")
    def http_dashboard(self, request):
        try:
            args = DashboardArgs().load(dict(request.args))
        except ValidationError as error:
            return json_response(400, {"error": "month must look like 2020-11", "fields": error.messages})
        page = self.dashboard_pages.get(args["month"], lambda: dashboard.render(
            *queries.dashboard(self.store.database, args["month"]).render_args()))
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
