"""Operators' view of a running platform: Prometheus metrics on every service, structured JSON
logs, and the `ntbcare` command line (status, events tail, import, quarantine, report, rebuild)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest
import requests

from sandbox.control import citizen_wrote
from tests.support.platform import DEV_PAGE_ID, ROOT, Platform, wait_for


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("ops")).start_all()
    yield running
    running.stop_all()


def ntbcare(platform, *args, timeout=120, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=platform.env,
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def metric(platform, service, name, **labels) -> float:
    total = 0.0
    found = False
    for line in requests.get(f"{platform.url(service)}/metrics", timeout=5).text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        metric_name = line.split("{", 1)[0].split(" ", 1)[0]
        if metric_name != name:
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else float("nan")


def test_metrics_on_every_service(platform):
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, "7000000000000101")  # Meta answers only who wrote
    with platform.rpc() as rpc:
        rpc.intake.file_complaint({"text": "Sampah menumpuk di Ampenan berhari-hari.", "channel": "api",
                                   "reply_to": {"page_id": DEV_PAGE_ID, "psid": "7000000000000101"}})
    wait_for(lambda: metric(platform, "notification", "ntbcare_notifications_sent_total") >= 1, 30,
             message="a notification counted")
    assert metric(platform, "intake", "ntbcare_complaints_filed_total", channel="api") >= 1
    assert metric(platform, "intake", "ntbcare_events_appended_total", event_type="ComplaintFiled") >= 1
    wait_for(lambda: metric(platform, "intake", "ntbcare_events_published_total", event_type="ComplaintFiled") >= 1, 10,
             message="published counted")
    wait_for(lambda: metric(platform, "intake", "ntbcare_outbox_pending_events") == 0, 10, message="outbox drained")
    assert metric(platform, "routing", "ntbcare_handler_seconds_count", source="intake") >= 1
    assert metric(platform, "routing", "ntbcare_events_handled_total", source="intake", outcome="handled") >= 1
    assert metric(platform, "routing", "ntbcare_consumer_lag_events", source="intake") == 0
    for service in platform.services:
        text = requests.get(f"{platform.url(service)}/metrics", timeout=5).text
        assert "ntbcare_quarantined_items" in text
        assert "7000000000000101" not in text


def test_logs_are_json_lines_with_correlation_ids_and_no_texts(platform):
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Lampu jalan mati di Jalan Udayana Mataram.", "channel": "api"})
    time.sleep(1)
    records = []
    for line in platform.log("intake").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records and all({"at", "level", "service", "message"} <= set(r) for r in records)
    assert any(r.get("complaint_id") == filed["complaint_id"] for r in records)
    for service in platform.services:
        assert "Lampu jalan mati" not in platform.log(service)


def test_cli_status_lists_services_and_queues(platform):
    out = ntbcare(platform, "status").stdout
    for service in platform.services:
        assert service in out
    assert "evt-intake-ComplaintFiled" in out


def test_cli_events_tail_is_a_plain_pika_consumer(platform):
    tail = subprocess.Popen([sys.executable, "-m", "shared.cli", "events", "tail", "--data", "--count", "1",
                             "--routing-key", "ComplaintFiled"], cwd=ROOT, env=platform.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The tail's queue must be bound before the event is published: it says so on stderr.
    for line in iter(tail.stderr.readline, ""):
        if line.startswith("listening on"):
            break
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Jembatan di Sembalun retak.", "channel": "api"})
    out, _ = tail.communicate(timeout=30)
    assert filed["complaint_id"] in out and "ComplaintFiled" in out
    assert "Jembatan di Sembalun" not in out  # texts are hidden


def test_cli_import_is_idempotent_by_external_ref(platform, tmp_path):
    path = tmp_path / "history.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_ref", "received_at", "text", "category", "region_code", "reporter_name"])
        writer.writerow(["LAPOR-2020-0001", "2020-11-03T02:00:00Z", "Koperasi simpan pinjam di Dompu macet.",
                         "koperasi_umkm", "5205", "Ibu Sari"])
        writer.writerow(["LAPOR-2020-0002", "2020-11-04T03:00:00Z", "Limbah tambak mencemari pantai di Sekotong.",
                         "", "", ""])
    def imported_count():
        with platform.rpc() as rpc:
            return len([e for e in rpc.intake.events_since(0, 1000) if e["event_type"] == "ComplaintFiled"
                        and (e["data"].get("external_ref") or "").startswith("LAPOR-2020-")])
    first = json.loads(ntbcare(platform, "import", str(path)).stdout.strip().splitlines()[-1])
    second = json.loads(ntbcare(platform, "import", str(path)).stdout.strip().splitlines()[-1])
    assert first == second == {"rows_accepted": 2, "rows_refused": 0}
    assert imported_count() == 2
    with platform.rpc() as rpc:
        events = [e for e in rpc.intake.events_since(0, 1000) if e["data"].get("external_ref") == "LAPOR-2020-0001"]
    assert events[0]["data"]["channel"] == "import" and events[0]["data"]["filed_at"].startswith("2020-11-03T02:00")
    assert "Ibu Sari" not in json.dumps(events)


def test_cli_quarantine_list_and_replay(platform):
    import pika
    connection = pika.BlockingConnection(pika.URLParameters(platform.amqp_uri))
    connection.channel().basic_publish("intake.events", "ComplaintFiled", b'{"not": "an event"}',
                                       pika.BasicProperties(content_type="application/json"))
    connection.close()
    wait_for(lambda: "missing data" in ntbcare(platform, "quarantine", "list", "routing").stdout.lower(), 20,
             message="the poison message listed")
    line = [listed for listed in ntbcare(platform, "quarantine", "list", "routing").stdout.splitlines()
            if "missing data" in listed.lower()][0]
    item_id = int(line.split("#", 1)[1].split(" ", 1)[0])
    out = ntbcare(platform, "quarantine", "replay", "routing", str(item_id), "--actor", "ops-test").stdout
    assert json.loads(out)["outcome"] == "still_quarantined"  # it is still not an event


def test_cli_rebuild_and_report(platform):
    with platform.rpc() as rpc:
        rpc.intake.file_complaint({"text": "Koperasi di Praya tidak membagikan SHU.", "channel": "import",
                                   "received_at": "2020-11-20T01:00:00Z", "external_ref": "OPS-REPORT-1"})
    wait_for(lambda: ntbcare(platform, "report", "2020-11").stdout.count('"total": ') and
             json.loads(ntbcare(platform, "report", "2020-11").stdout.split("\n\n")[0])["total"] >= 1, 30,
             message="the import counted")
    before = ntbcare(platform, "report", "2020-11").stdout
    with platform.rpc() as rpc:
        logged = sum(len(getattr(rpc, source).events_since(0, 1000))
                     for source in ("intake", "routing", "notification"))
    result = ntbcare(platform, "rebuild")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["events"] == logged  # every event of every source's log, read once
    report = ntbcare(platform, "report", "2020-11").stdout
    assert report == before  # rebuilt from the logs: the same figures as the live projection
    summary = json.loads(report.split("\n\n")[0])
    assert summary["year"] == 2020 and summary["month"] == 11 and summary["by_category"]["koperasi_umkm"] >= 1
    assert "November 2020" in report  # the narrative
