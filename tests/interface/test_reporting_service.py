"""Reporting's interface tier: every entrypoint of ``ReportingService`` — the handlers of every
event type the projections keep, the report and lookup RPC methods, the rebuild, the public
``/api`` routes, the dashboard, health and metrics, and both timers — driven in-process on SQLite
files, with no broker and no database server.

The sources' logs are real: ``tests.support.reporting_seed.Seeder`` records a small November
2020 (and one October complaint) through intake's, routing's and notification's own event stores,
routing's events with the lifecycle routing's fold gives. The worker comes from nameko's
``worker_factory`` with real dependencies: reporting's own ``ServiceStore`` (migrated, live
generation ensured), the real ``ConsumerApi`` over an ``EventConsumer`` built from
``ReportingHandlers`` (catch-up pulls the seeded logs), the real per-address rate limiter, and
the real ``SourceLogs`` given a ``fetch`` over the seeded logs instead of its ``ClusterRpcProxy``
— the only part that needs a broker. ``test_every_reporting_entrypoint_has_an_interface_test``
fails when an entrypoint is added without a test here.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from shared.core.errors import Conflict, NotFound, ValidationFailed
from shared.core.shared_budget import shared_limiter_from_env
from shared.core.store import ServiceStore
from shared.glue.subscriptions import handler_name
from services.reporting.adapters import dashboard, repository, tables
from services.reporting.service import ReportingHandlers, ReportingService, SourceLogs, build_store
from tests.interface.harness import (check_coverage, consumer_api, covers, instrument, json_of, real_dependencies,
                                     request, text_of)
from tests.support.reporting_seed import Seeder, iso

NOV = datetime(2020, 11, 3, 1, 0, tzinfo=timezone.utc)          # 09:00 WITA
FIRST_WITA_HOUR = datetime(2020, 10, 31, 16, 30, tzinfo=timezone.utc)  # 1 November, 00:30 WITA
LAST_OCTOBER = datetime(2020, 10, 31, 15, 30, tzinfo=timezone.utc)     # 31 October, 23:30 WITA
HOUR = timedelta(hours=1)


@dataclass
class Sources:
    seeder: Seeder
    complaints: dict[str, dict]     # by name
    last: dict[str, int]            # the last position of each source's log

    def events(self, source: str) -> list[dict]:
        return self.seeder.stores[source].events_since(0, 1000)

    def fetch(self, source: str, position: int, limit: int) -> list[dict]:
        return self.seeder.stores[source].events_since(position, limit)

    def code(self, name: str) -> str:
        return self.complaints[name]["tracking_code"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Sources:
    """Five complaints: four in November 2020 (WITA), one on the last evening of October."""
    seeder = Seeder(tmp_path_factory.mktemp("sources"))
    road = seeder.filed(NOV, "infrastruktur", "5271", index=1)
    seeder.routed(road, NOV + HOUR, "dpupr")
    seeder.acknowledged(road, NOV + 2 * HOUR, "dpupr")
    seeder.responded(road, NOV + 5 * HOUR, "dpupr", resolved=True, text="Jalan sudah ditambal.")  # + resolved
    seeder.notified(road, NOV + 5 * HOUR)
    # The citizen says "belum": reopened, resolved again, then rated 4 (issue 19).
    seeder.add("routing", "ComplaintReopened", road["complaint_id"], NOV + 6 * HOUR, {
        "words": "belum, masih berlubang", "actor": "citizen", "reopen_count": 1, "to_desk": False,
        "due_at": {"follow_up": iso(NOV + 100 * HOUR)}, "answer_event_id": None})
    seeder.responded(road, NOV + 8 * HOUR, "dpupr", resolved=True, text="Sudah ditambal ulang.")
    seeder.add("routing", "CitizenRated", road["complaint_id"], NOV + 9 * HOUR, {
        "score": 4, "words": "4", "agencies": ["dpupr"], "answer_event_id": None})

    levy = seeder.filed(NOV + 24 * HOUR, "pungli", "5203", index=2)  # confidential by its category
    seeder.routed(levy, NOV + 25 * HOUR, "polda-ntb")
    seeder.responded(levy, NOV + 30 * HOUR, "polda-ntb", text="Oknum petugas sudah diperiksa.")

    waste = seeder.filed(NOV + 48 * HOUR, "lingkungan_hidup", "5271", channel="facebook_comment", index=3)
    due = seeder.routed(waste, NOV + 49 * HOUR, "dlhk")
    seeder.add("routing", "ComplaintEscalated", waste["complaint_id"], NOV + 97 * HOUR, {
        "breach": "first_response", "due_at": due["first_response"], "notified": ["dlhk", "diskominfotik"]})
    seeder.rejected(waste, NOV + 98 * HOUR, "dlhk")  # the only lead hands it back: at the desk again
    seeder.add("routing", "ComplaintReopenRefused", waste["complaint_id"], NOV + 99 * HOUR, {
        "reason": "open", "words": "belum", "answer_event_id": None, "period_days": 14})
    # The desk joins it to the road's cluster (issue 19, duplicates): the status does not move.
    seeder.add("routing", "ComplaintLinked", waste["complaint_id"], NOV + 100 * HOUR, {
        "primary_complaint_id": road["complaint_id"], "primary_tracking_code": road["tracking_code"],
        "reason": "sama", "actor": "operator:desk-ani", "because": ["same_post"], "score": 0.3})

    clinic = seeder.filed(FIRST_WITA_HOUR, "kesehatan", None, index=4)
    seeder.add("intake", "ComplaintAmended", clinic["complaint_id"], FIRST_WITA_HOUR + HOUR, {
        "text": "Tambahan keterangan.", "why": "more_messages", "last_citizen_message_at": None})
    seeder.confidentiality(clinic, FIRST_WITA_HOUR + 2 * HOUR, True)
    seeder.add("routing", "ComplaintDismissed", clinic["complaint_id"], FIRST_WITA_HOUR + 3 * HOUR, {
        "reason": "aduan ganda", "duplicate_of": None, "actor": "operator:desk-ani"})
    seeder.add("notification", "CitizenNotificationFailed", clinic["complaint_id"], FIRST_WITA_HOUR + 3 * HOUR, {
        "trigger_event_id": "00000000-0000-4000-8000-000000000001", "reason": "outside_window", "code": 10,
        "permanent": True})

    october = seeder.filed(LAST_OCTOBER, "sosial", "5201", index=5)
    seeder.at_desk(october, LAST_OCTOBER + HOUR)
    # The desk corrects its region (issue 20): the rule that applies does not change.
    seeder.add("routing", "ComplaintReclassified", october["complaint_id"], LAST_OCTOBER + 2 * HOUR, {
        "category_before": "sosial", "category_after": "sosial", "region_before": "5201", "region_after": "5202",
        "reason": "desa di Lombok Tengah", "actor": "operator:desk-ani", "rerouted": False})
    last = seeder.flush()
    yield Sources(seeder, {"road": road, "levy": levy, "waste": waste, "clinic": clinic, "october": october}, last)
    seeder.dispose()


@dataclass
class Reporting:
    worker: ReportingService
    store: ServiceStore
    logs: SourceLogs
    sources: Sources

    def push_all(self) -> list[str]:
        """Every seeded event to its ``on_<event>`` handler, source by source (as the broker
        delivers them: each type on its own queue); returns the handlers called."""
        used = []
        for source in ("intake", "routing", "notification"):
            for envelope in self.sources.events(source):
                name = handler_name(envelope["event_type"])
                if hasattr(self.worker, name):
                    getattr(self.worker, name)(envelope)
                    used.append(name)
        return used

    def status(self, name: str) -> dict:
        return self.worker.complaint_status(self.sources.code(name))

    def get(self, entrypoint: str, path: str, *args, query=None, remote_addr="203.0.113.7"):
        return getattr(self.worker, entrypoint)(request("GET", path, query=query, remote_addr=remote_addr), *args)

    def set_fingerprint(self, fingerprint: str) -> None:
        with self.store.database.transaction() as tx:
            tx.execute(update(tables.projection_state).values(fingerprint=fingerprint))


@pytest.fixture
def make_reporting(migrated_sqlite, monkeypatch, called, sources):
    stores = []

    def make(fetch=None, pushed=True, **env) -> Reporting:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        store = build_store(migrated_sqlite("reporting", build_store))
        store.prepare()
        stores.append(store)
        logs = SourceLogs(fetch=fetch or sources.fetch)
        logs.setup()
        worker = real_dependencies(
            ReportingService, store=store, logs=logs,
            consumer=consumer_api(store, ReportingHandlers, sources.seeder.stores),
            status_rate_limit=shared_limiter_from_env("REPORTING_STATUS_RATE_PER_MINUTE", "120", store.database),
            dashboard_pages=dashboard.PageCache.from_env())
        reporting = Reporting(instrument(worker, called), store, logs, sources)
        if pushed:
            reporting.push_all()
        return reporting

    yield make
    for store in stores:
        store.database.dispose()


@pytest.fixture
def reporting(make_reporting) -> Reporting:
    return make_reporting()


def test_every_reporting_entrypoint_has_an_interface_test():
    check_coverage(ReportingService, sys.modules[__name__])


# --- the events ------------------------------------------------------------------------------------

@covers("on_complaint_filed", "on_complaint_amended", "on_complaint_routed", "on_complaint_acknowledged",
        "on_complaint_responded", "on_complaint_resolved", "on_complaint_escalated",
        "on_complaint_rejected_by_agency", "on_complaint_dismissed", "on_complaint_confidentiality_changed",
        "on_citizen_notified", "on_citizen_notification_failed", "complaint_status",
        "on_complaint_reopened", "on_citizen_rated", "on_complaint_reopen_refused",
        "on_complaint_linked", "on_complaint_reclassified")
def test_every_kept_event_type_reaches_the_projection_once(make_reporting):
    reporting = make_reporting(pushed=False)
    used = reporting.push_all()
    assert set(used) == {handler_name(t) for t in ReportingHandlers.subscriptions()["intake"]
                         + ReportingHandlers.subscriptions()["routing"]
                         + ReportingHandlers.subscriptions()["notification"]}
    road = reporting.status("road")
    assert (road["status"], road["open"], [a["code"] for a in road["agencies"]]) == ("selesai", False, ["dpupr"])
    assert road["answers"][0]["text"] == "Jalan sudah ditambal." and road["answers"][0]["resolved"] is True
    assert reporting.status("clinic")["status"] == "ditolak" and reporting.status("clinic")["confidential"] is True
    assert reporting.status("waste")["agencies"] == []  # handed back to the desk
    before = {name: reporting.status(name) for name in reporting.sources.complaints}

    reporting.push_all()  # redelivered: the same projection
    assert {name: reporting.status(name) for name in reporting.sources.complaints} == before
    assert reporting.worker.quarantined() == []


# --- RPC: reports ----------------------------------------------------------------------------------

@covers("monthly_summary")
def test_the_monthly_summary_counts_the_wita_month(reporting):
    summary = reporting.worker.monthly_summary(2020, 11)
    assert (summary["year"], summary["month"], summary["total"]) == (2020, 11, 4)  # the 00:30 WITA filing too
    assert {code: n for code, n in summary["by_category"].items() if n} == {
        "infrastruktur": 1, "pungli": 1, "lingkungan_hidup": 1, "kesehatan": 1}
    assert summary["by_region"]["5271"] == 2 and summary["by_region"]["5203"] == 1
    assert summary["by_agency"] == {"dpupr": 1, "polda-ntb": 1}
    assert summary["resolved"] == 1 and summary["followed_up"] == 2 and summary["follow_up_rate"] == 0.5
    assert reporting.worker.monthly_summary("2020", "10")["total"] == 1
    # The citizens' verdict (issue 19): the road was reopened once and rated 4.
    assert summary["satisfaction"] == {"rated": 1, "average_rating": 4.0, "rated_share": 1.0,
                                       "reopened": 1, "reopen_rate": 1.0}
    assert summary["satisfaction_by_category"]["infrastruktur"]["average_rating"] == 4.0
    assert summary["satisfaction_by_category"]["pungli"] == {"rated": 0, "average_rating": None,
                                                             "rated_share": None, "reopened": 0,
                                                             "reopen_rate": None}
    assert summary["satisfaction_by_agency"]["dpupr"]["reopened"] == 1
    for year, month in ((2020, 13), (1999, 1), ("x", 1)):
        with pytest.raises(ValidationFailed):
            reporting.worker.monthly_summary(year, month)


@covers("monthly_summary")
def test_the_monthly_summary_counts_clusters_of_duplicates(reporting):
    summary = reporting.worker.monthly_summary(2020, 11)
    assert summary["duplicates"] == {"complaints": 4, "linked": 1, "clusters": 1, "problems": 3,
                                     "duplicate_share": 0.25}
    assert summary["duplicates_by_category"]["lingkungan_hidup"]["linked"] == 1
    assert summary["duplicates_by_category"]["infrastruktur"]["linked"] == 0
    assert reporting.worker.monthly_summary(2020, 10)["duplicates"]["linked"] == 0


@covers("classifier_accuracy", "monthly_summary")
def test_classifier_accuracy_counts_what_the_desk_kept_per_month_category_and_region(reporting):
    everything = reporting.worker.classifier_accuracy()
    # road, levy and waste were routed by the desk (kept both); october's region was corrected;
    # clinic was dismissed without a routing decision: not evidence.
    assert (everything["month"], everything["complaints"], everything["reviewed"], everything["corrected"]) == (
        None, 5, 4, 1)
    assert (everything["category"]["kept"], everything["category"]["reviewed"]) == (4, 4)
    assert (everything["region"]["kept"], everything["region"]["reviewed"]) == (3, 4)
    assert everything["by_region"]["5201"] == {"reviewed": 1, "kept": 0, "kept_share": 0.0,
                                               "corrected_to": {"5202": 1}}
    october = reporting.worker.classifier_accuracy("2020-10")
    assert (october["month"], october["reviewed"], october["region"]["kept_share"],
            october["category"]["kept_share"]) == ("2020-10", 1, 0.0, 1.0)
    assert reporting.worker.classifier_accuracy("2020-11")["region"]["kept_share"] == 1.0
    assert reporting.worker.classifier_accuracy("2021-01")["reviewed"] == 0
    for bad in ("2020-13", "november", 202011):
        with pytest.raises(ValidationFailed):
            reporting.worker.classifier_accuracy(bad)
    # The monthly summary carries the month's figures (an added field only).
    assert reporting.worker.monthly_summary(2020, 10)["classifier_accuracy"] == {
        key: value for key, value in october.items() if key != "month"}


@covers("monthly_narrative")
def test_the_monthly_narrative_tells_the_same_month(reporting):
    narrative = reporting.worker.monthly_narrative(2020, 11)
    assert (narrative["year"], narrative["month"]) == (2020, 11)
    assert narrative["text"].startswith("Selama bulan November 2020, NTBCare menerima 4 aduan masyarakat")
    assert "(2 dari 4 aduan, 50%)" in narrative["text"] and "1 aduan telah dinyatakan selesai" in narrative["text"]
    # The agencies by the names their events carried.
    assert "Dinas PUPR (1 aduan) dan Polda NTB (Saber Pungli) (1 aduan)" in narrative["text"]
    assert "Oknum" not in narrative["text"] and "Pelapor" not in narrative["text"]
    with pytest.raises(ValidationFailed):
        reporting.worker.monthly_narrative(2020, 0)


@covers("complaint_status")
def test_a_complaint_s_public_status_by_any_spelling_of_its_code(reporting):
    levy = reporting.worker.complaint_status(f"  {reporting.sources.code('levy').lower()} ")
    assert levy["tracking_code"] == reporting.sources.code("levy") and levy["status"] == "diproses"
    # Confidential now: that an agency answered, and when, but not what it wrote.
    assert levy["confidential"] is True and levy["answers"][0]["text"] is None
    assert levy["answers"][0]["agency_code"] == "polda-ntb"
    with pytest.raises(NotFound):
        reporting.worker.complaint_status("NTB-ZZZZZ-ZZZZZ")
    with pytest.raises(ValidationFailed):
        reporting.worker.complaint_status("NT")


@covers("find_complaints")
def test_find_complaints_filters_and_orders_newest_first(reporting):
    codes = reporting.sources.code
    everything = reporting.worker.find_complaints({})
    assert [c["tracking_code"] for c in everything] == [codes(n) for n in ("waste", "levy", "road", "clinic",
                                                                           "october")]
    assert [c["tracking_code"] for c in reporting.worker.find_complaints({"category": "infrastruktur"})] == [
        codes("road")]
    closed = reporting.worker.find_complaints({"status": "closed"})
    assert {c["tracking_code"] for c in closed} == {codes("road"), codes("clinic")}
    opened = reporting.worker.find_complaints({"status": "open", "limit": 2})
    assert [c["tracking_code"] for c in opened] == [codes("waste"), codes("levy")]
    by_code = reporting.worker.find_complaints({"tracking_codes": [codes("levy").lower(), "NTB-ZZZZZ-ZZZZZ"]})
    assert [c["tracking_code"] for c in by_code] == [codes("levy")]
    window = reporting.worker.find_complaints({"filed_from": "2020-11-03T00:00:00+00:00",
                                               "filed_to": "2020-11-04T12:00:00+00:00"})
    assert [c["tracking_code"] for c in window] == [codes("levy"), codes("road")]
    assert len(reporting.worker.find_complaints("not a dict")) == 5
    for bad in ({"status": "pending"}, {"limit": 0}, {"filed_from": "2020-11-03"}):
        with pytest.raises(ValidationFailed):
            reporting.worker.find_complaints(bad)


@covers("agency_performance")
def test_agency_performance_counts_leads_assigned_in_the_period(reporting):
    dpupr = reporting.worker.agency_performance("dpupr", "2020-11-01", "2020-11-30")
    assert (dpupr["assigned"], dpupr["acknowledged"], dpupr["answered"], dpupr["resolved"]) == (1, 1, 1, 1)
    assert dpupr["median_hours_to_first_answer"] == 4.0 and dpupr["within_first_response_deadline"] == 1.0
    assert (dpupr["rated"], dpupr["average_rating"], dpupr["reopened"], dpupr["reopen_rate"]) == (1, 4.0, 1, 1.0)
    dlhk = reporting.worker.agency_performance("dlhk", "2020-11-01", "2020-11-30")
    assert (dlhk["assigned"], dlhk["escalations"], dlhk["rejections"]) == (1, 1, 1)
    assert reporting.worker.agency_performance("dpupr", "2020-12-01", "2020-12-31")["assigned"] == 0
    with pytest.raises(ValidationFailed):
        reporting.worker.agency_performance("dpupr", "2020-11-30", "2020-11-01")
    with pytest.raises(ValidationFailed):
        reporting.worker.agency_performance("", "2020-11-01", "2020-11-30")


@covers("trends")
def test_trends_count_each_month_by_category_and_region(reporting):
    trend = reporting.worker.trends(2020, 11, 3)
    assert list(trend) == ["2020-09", "2020-10", "2020-11"]
    assert [trend[m]["total"] for m in trend] == [0, 1, 4]
    assert trend["2020-10"]["by_category"]["sosial"] == 1 and trend["2020-10"]["by_region"] == {"5201": 1}
    assert list(reporting.worker.trends(2021, 1)) == [f"2020-{m:02d}" for m in range(2, 13)] + ["2021-01"]
    for months in (0, 61, "12"):
        with pytest.raises(ValidationFailed):
            reporting.worker.trends(2020, 11, months)


# --- RPC: the rebuild --------------------------------------------------------------------------------

@covers("rebuild", "rebuild_progress")
def test_a_rebuild_from_the_logs_gives_the_same_projection(reporting):
    before = {name: reporting.status(name) for name in reporting.sources.complaints}
    summary = reporting.worker.monthly_summary(2020, 11)
    assert reporting.worker.rebuild_progress() == {}
    result = reporting.worker.rebuild()
    assert result["generation"] == 2 and result["events"] == sum(reporting.sources.last.values())
    progress = reporting.worker.rebuild_progress()
    assert progress["phase"] == "done" and progress["running"] is False
    assert progress["events"] == result["events"]
    assert {name: reporting.status(name) for name in reporting.sources.complaints} == before
    assert reporting.worker.monthly_summary(2020, 11) == summary
    assert reporting.worker.consumer.checkpoint("routing") == reporting.sources.last["routing"]


@covers("rebuild")
def test_only_one_rebuild_runs_at_a_time(reporting):
    assert reporting.logs.lock.acquire(blocking=False)  # another rebuild is running
    try:
        with pytest.raises(Conflict):
            reporting.worker.rebuild()
    finally:
        reporting.logs.lock.release()


# --- HTTP ------------------------------------------------------------------------------------------

@covers("http_complaint_status")
def test_api_complaint_status_answers_200_or_404(reporting):
    code = reporting.sources.code("road")
    found = reporting.get("http_complaint_status", f"/api/complaints/{code.lower()}", code.lower())
    assert found.status_code == 200 and found.headers["Cache-Control"] == "no-store"
    assert json_of(found) == reporting.status("road")
    missing = reporting.get("http_complaint_status", "/api/complaints/NTB-ZZZZZ-ZZZZZ", "NTB-ZZZZZ-ZZZZZ")
    assert (missing.status_code, json_of(missing)) == (404, {"error": "no complaint with that tracking code"})


@covers("http_complaint_status")
def test_api_complaint_status_is_rate_limited_per_address(make_reporting):
    reporting = make_reporting(REPORTING_STATUS_RATE_PER_MINUTE="1")
    code = reporting.sources.code("road")
    assert reporting.get("http_complaint_status", f"/api/complaints/{code}", code).status_code == 200
    refused = reporting.get("http_complaint_status", f"/api/complaints/{code}", code)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert json_of(refused)["retry_after_seconds"] >= 1
    other = reporting.get("http_complaint_status", f"/api/complaints/{code}", code, remote_addr="198.51.100.9")
    assert other.status_code == 200


@covers("http_monthly_report")
def test_api_monthly_report_as_json_and_as_csv(reporting):
    report = reporting.get("http_monthly_report", "/api/reports/monthly/2020/11", 2020, 11)
    assert report.status_code == 200 and json_of(report) == reporting.worker.monthly_summary(2020, 11)
    as_csv = reporting.get("http_monthly_report", "/api/reports/monthly/2020/11", 2020, 11, query={"format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["Content-Disposition"] == 'attachment; filename="ntbcare-2020-11.csv"'
    lines = list(csv.reader(io.StringIO(as_csv.get_data().decode("utf-8-sig"))))
    assert lines[0] == ["metric", "code", "label", "value"] and ["total", "", "Jumlah aduan", "4"] in lines
    assert any(line[:2] == ["by_agency", "dpupr"] and line[2] == "Dinas PUPR" for line in lines)
    invalid = reporting.get("http_monthly_report", "/api/reports/monthly/2020/13", 2020, 13)
    assert invalid.status_code == 400 and json_of(invalid)["error"] == "invalid month"
    assert "month" in json_of(invalid)["fields"]


@covers("http_monthly_narrative")
def test_api_monthly_narrative_as_json_and_as_text(reporting):
    answer = reporting.get("http_monthly_narrative", "/api/reports/monthly/2020/11/narrative", 2020, 11)
    body = json_of(answer)
    assert answer.status_code == 200 and body == reporting.worker.monthly_narrative(2020, 11)
    text = reporting.get("http_monthly_narrative", "/api/reports/monthly/2020/11/narrative", 2020, 11,
                         query={"format": "text"})
    assert text.status_code == 200 and text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text_of(text) == body["text"]
    assert reporting.get("http_monthly_narrative", "/api/reports/monthly/1999/11/narrative",
                         1999, 11).status_code == 400


@covers("http_dashboard")
def test_the_dashboard_shows_a_month_and_refuses_a_malformed_one(reporting):
    page = reporting.get("http_dashboard", "/dashboard", query={"month": "2020-11"})
    html = text_of(page)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-store"
    assert dashboard.month_title("2020-11") in html and "Dinas PUPR" in html and "<svg" in html
    for secret in reporting.sources.seeder.secrets:
        assert secret not in html
    this_month = reporting.get("http_dashboard", "/dashboard")
    assert this_month.status_code == 200 and "Dinas PUPR" not in text_of(this_month)
    bad = reporting.get("http_dashboard", "/dashboard", query={"month": "2020-13"})
    assert bad.status_code == 400 and json_of(bad)["error"] == "month must look like 2020-11"


@covers("http_dashboard_static")
def test_the_dashboard_s_stylesheet_and_nothing_else(reporting):
    css = reporting.get("http_dashboard_static", "/dashboard/static/dashboard.css", "dashboard.css")
    assert css.status_code == 200 and css.headers["Content-Type"] == "text/css; charset=utf-8"
    assert css.get_data() == (dashboard.STATIC_DIR / "dashboard.css").read_bytes()
    for name in ("missing.css", "../templates/dashboard.html", "dashboard.html"):
        assert reporting.get("http_dashboard_static", f"/dashboard/static/{name}", name).status_code == 404


# --- RPC: the log and the quarantine ------------------------------------------------------------------

@covers("events_since")
def test_reporting_emits_no_events(reporting):
    assert reporting.worker.events_since(0) == [] and reporting.worker.events_since(10, 5) == []


@covers("event_ids_since")
def test_reporting_lists_no_event_ids(reporting):
    assert reporting.worker.event_ids_since(0) == []


@covers("on_complaint_filed", "quarantined", "replay_quarantined")
def test_a_quarantined_event_is_listed_and_replayed(make_reporting):
    reporting = make_reporting(pushed=False)
    filing = reporting.sources.events("intake")[0]
    broken = dict(filing, data={"tracking_code": filing["data"]["tracking_code"]})
    reporting.worker.on_complaint_filed(broken)
    [invalid] = reporting.worker.quarantined()
    assert (invalid["kind"], invalid["source"], invalid["position"]) == ("event", "intake", 1)
    assert "Missing data for required field" in invalid["reason"] and "payload" not in invalid
    assert reporting.worker.replay_quarantined(invalid["item_id"], "ops:ani")["outcome"] == "still_quarantined"
    with pytest.raises(ValidationFailed):
        reporting.worker.replay_quarantined(invalid["item_id"], "")
    with pytest.raises(NotFound):
        reporting.worker.replay_quarantined(invalid["item_id"] + 100, "ops:ani")

    with reporting.store.database.transaction() as tx:  # as the consumer quarantines a handler that kept failing
        reporting.store.quarantine.put(tx.connection, "event", "handler failed: OperationalError", filing,
                                       source="intake", position=filing["position"])
    [kept] = [item for item in reporting.worker.quarantined() if item["reason"].startswith("handler failed")]
    assert reporting.worker.replay_quarantined(kept["item_id"], "ops:ani")["outcome"] == "replayed"
    assert reporting.status("road")["status"] == "diterima"
    assert reporting.worker.replay_quarantined(kept["item_id"], "ops:ani")["outcome"] == "already_replayed"


# --- timers -----------------------------------------------------------------------------------------

@covers("catch_up")
def test_catch_up_pulls_every_source_unless_the_shape_changed(make_reporting):
    reporting = make_reporting(pushed=False)
    reporting.set_fingerprint("an-older-shape")  # a shape rebuild is due: the live path waits
    reporting.worker.catch_up()
    assert reporting.worker.consumer.checkpoint("intake") == 0
    reporting.set_fingerprint(repository.shape_fingerprint())
    reporting.worker.catch_up()
    assert {source: reporting.worker.consumer.checkpoint(source)
            for source in ("intake", "routing", "notification")} == reporting.sources.last
    assert reporting.worker.monthly_summary(2020, 11)["total"] == 4
    assert reporting.status("road")["status"] == "selesai"


@covers("rebuild_when_shape_changed")
def test_a_changed_shape_is_rebuilt_by_the_timer_and_a_missing_source_retried(make_reporting, sources):
    def source_down(source, position, limit):
        raise ConnectionError(f"{source} is not up yet")

    reporting = make_reporting(fetch=source_down)
    before = reporting.status("road")
    reporting.set_fingerprint("an-older-shape")
    reporting.worker.rebuild_when_shape_changed()  # fails quietly; the next tick tries again
    assert not repository.shape_is_current(reporting.store.database)
    assert reporting.worker.rebuild_progress()["running"] is False

    reporting.logs.fetch = sources.fetch  # the sources are up
    reporting.worker.rebuild_when_shape_changed()
    assert repository.shape_is_current(reporting.store.database)
    assert reporting.worker.rebuild_progress()["phase"] == "done" and reporting.status("road") == before
    reporting.worker.rebuild_when_shape_changed()  # nothing to do
    assert reporting.worker.rebuild_progress()["events"] == sum(sources.last.values())


# --- operations --------------------------------------------------------------------------------------

@covers("health")
def test_health_follows_the_database_and_the_broker(reporting, monkeypatch):
    from shared.glue import health
    from tests.interface.harness import BrokerAnswers, BrokerRefuses

    monkeypatch.setattr(health, "Connection", BrokerAnswers)
    ok = reporting.get("health", "/health")
    assert (ok.status_code, json_of(ok)) == (200, {"service": "reporting", "status": "ok"})
    monkeypatch.setattr(health, "Connection", BrokerRefuses)
    down = reporting.get("health", "/health")
    assert down.status_code == 503 and json_of(down)["reason"] == "broker: ConnectionRefusedError"


@covers("metrics")
def test_metrics_show_reporting_s_consumer_and_quarantine(reporting):
    response = reporting.get("metrics", "/metrics")
    text = text_of(response)
    assert response.status_code == 200
    assert 'ntbcare_quarantined_items{service="reporting"} 0.0' in text
    for source in ("intake", "routing", "notification"):
        assert f'ntbcare_consumer_lag_events{{service="reporting",source="{source}"}} 0.0' in text
    assert "ntbcare_outbox_pending_events{service=\"reporting\"}" not in text  # it records no events
