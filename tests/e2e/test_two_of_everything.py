"""Two of everything: two processes of each of the four services — intake, routing, notification
and reporting — on the real broker (the same queues) and PostgreSQL (the same database per
service, as replicas share them), each with a web port of its own, started at the same moment.

The whole journey for a batch of complaints — Meta's webhook to either intake, filing over RPC,
routing, the acknowledgment at the Graph API sandbox, the agency's acknowledgment and answer,
resolution, the public status from either reporting, the monthly summary — and what must stay
exactly-once with two of everything:

* migrations: both replicas of a service upgrade an empty database at once; one runs the
  revisions, the other waits for it and finds nothing to do;
* the outbox relay: every event reaches the exchange once, in position order per source (a plain
  queue bound to each ``<source>.events`` sees positions 1..head, each once, in order);
* consumers and catch-up: one routing per filing, one acknowledgment per complaint, every
  checkpoint at its source's head;
* the sender: every message Meta accepted is recorded once, none twice, and each citizen's
  messages arrive in the order of the events that caused them;
* the SLA checker: a breach is escalated once although both routings check every second;
* reporting's rebuild: started three times at once, it runs once (the others are refused) while
  both reportings keep answering the public status."""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import pika
import pytest
import requests
from nameko.exceptions import RemoteError

from sandbox.control import citizen_wrote
from shared.core.errors import Conflict
from shared.core.events import parse_iso
from shared.core import migrations
from tests.support import facebook, infra
from tests.support.audit import read_log
from tests.support.platform import DEV_PAGE_ID, SERVICES, Platform, wait_for

COMPLAINTS = 12          # half by webhook (alternately to each intake), half over RPC
DESK = "diskominfotik"
EMITTERS = ("intake", "routing", "notification")


@pytest.fixture(scope="module")
def databases():
    urls = {service: infra.create_postgres_database() for service in SERVICES}
    yield urls
    for url in urls.values():
        infra.drop_postgres_database(url)


@pytest.fixture(scope="module")
def exchanges(amqp_uri):
    """A plain queue per emitting service, bound to everything its exchange carries, declared
    before any service starts (so it sees every event the relays publish)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    queues = {}
    for source in EMITTERS:
        channel.exchange_declare(exchange=f"{source}.events", exchange_type="topic", durable=True)
        queues[source] = channel.queue_declare(queue=f"two-of-everything-{source}", exclusive=True).method.queue
        channel.queue_bind(queue=queues[source], exchange=f"{source}.events", routing_key="#")
    yield channel, queues
    connection.close()


@pytest.fixture(scope="module")
def platform(amqp_uri, databases, exchanges, tmp_path_factory):
    env = {f"{service.upper()}_DATABASE_URL": url for service, url in databases.items()}
    env.update({
        "NTBCARE_CATCHUP_SECONDS": "1",
        "NTBCARE_OUTBOX_POLL_SECONDS": "0.2",
        "NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        "NOTIFICATION_SEND_RATE": "0",
        "INTAKE_INBOX_RETRY_SECONDS": "2",
        "INTAKE_WEB_RATE_PER_MINUTE": "0",
        "ROUTING_SLA_SECONDS": "triage=2",   # the desk's triage clock only: 2 s
        "ROUTING_SLA_CHECK_SECONDS": "1",
    })
    running = Platform(amqp_uri, tmp_path_factory.mktemp("two-of-everything"), extra_env=env)
    try:
        running._spawn("sandbox", [sys.executable, "-m", "sandbox"])
        running._wait_http(f"{running.sandbox_url}/_sandbox/health", 60)
        # Both processes of every service at the same moment: they migrate one database together.
        running.replica_urls = {}
        for service in SERVICES:
            running.start(service, wait=False)
            running.replica_urls[service] = running.start_replica(service, wait=False)
        for service in SERVICES:
            running.wait_healthy(service, 120)
            running._wait_http(f"{running.replica_urls[service]}/health", 120, f"{service}-2")
        yield running
    finally:
        running.stop_all()


def by_type(events: list[dict], event_type: str) -> list[dict]:
    return [e for e in events if e["event_type"] == event_type]


def logged(platform: Platform, name: str, message: str) -> int:
    count = 0
    for line in platform.log(name).splitlines():
        if line.startswith("{"):
            try:
                count += json.loads(line).get("message", "").startswith(message)
            except ValueError:
                pass
        elif message in line:
            count += 1
    return count


def test_migrations_ran_once_per_database(platform, databases):
    from sqlalchemy import create_engine
    for service in SERVICES:
        engine = create_engine(databases[service])
        try:
            assert not migrations.missing(service, migrations.current(engine)), service
        finally:
            engine.dispose()
        # Every process of a service came up on the one database (two creating the same tables
        # would have failed one of them), and only one of them ran the revisions (Alembic logs
        # each revision it runs).
        assert platform.processes[service].poll() is None
        assert platform.processes[f"{service}-2"].poll() is None
        ran = sorted(platform.log(name).count("Running upgrade") for name in (service, f"{service}-2"))
        assert ran[0] == 0 and ran[1] > 0, (service, ran)


def test_the_whole_journey_with_two_of_everything(platform, databases, exchanges):
    channel, queues = exchanges
    intakes = [platform.url("intake"), platform.replica_urls["intake"]]
    psids, webhook_psids, rpc_ids = [], [], []
    for n in range(COMPLAINTS):
        psid = facebook.new_psid()
        psids.append(psid)
        text = f"Jalan provinsi di Desa Kuripan Lombok Barat rusak parah dan berlubang (aduan {n})."
        if n % 2 == 0:
            body = facebook.page_body(facebook.messaging_entry(
                DEV_PAGE_ID, facebook.text_message(DEV_PAGE_ID, psid, text, mid=facebook.new_mid())))
            requests.post(f"{platform.sandbox_url}/_sandbox/webhooks", json=body, timeout=10).raise_for_status()
            response = facebook.signed_post(f"{intakes[(n // 2) % 2]}/webhooks/facebook", body, timeout=10)
            assert response.status_code == 200
            webhook_psids.append(psid)
        else:
            citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid)
            with platform.rpc() as rpc:
                rpc_ids.append(rpc.intake.file_complaint({
                    "text": text, "channel": "api", "external_ref": f"two-{psid}",
                    "reply_to": {"page_id": DEV_PAGE_ID, "psid": psid}})["complaint_id"])
    # One complaint for the desk's triage clock: its breach must be escalated exactly once.
    with platform.rpc() as rpc:
        triage_id = rpc.intake.file_complaint({"text": "Mohon informasi umum tentang layanan provinsi.",
                                               "channel": "api", "category": "lainnya"})["complaint_id"]

    # Filed once each, and routed.
    def filed():
        events = by_type(read_log(platform, "intake"), "ComplaintFiled")
        found = {(e["data"].get("reply_to") or {}).get("psid"): e for e in events}
        return events if all(p in found for p in psids) else None
    filed_events = wait_for(filed, 60, message="every complaint filed")
    filed_by_psid = defaultdict(list)
    for event in filed_events:
        filed_by_psid[(event["data"].get("reply_to") or {}).get("psid")].append(event)
    assert all(len(filed_by_psid[p]) == 1 for p in psids), {p: len(filed_by_psid[p]) for p in psids}
    complaints = {p: filed_by_psid[p][0] for p in psids}
    assert {complaints[p]["complaint_id"] for p in psids if p not in webhook_psids} == set(rpc_ids)

    def routed():
        events = by_type(read_log(platform, "routing"), "ComplaintRouted")
        ids = {e["complaint_id"] for e in events}
        return events if all(c["complaint_id"] in ids for c in complaints.values()) else None
    routed_events = wait_for(routed, 60, message="every complaint routed")
    lead = {}
    for event in routed_events:
        lead[event["complaint_id"]] = event["data"]["lead_agencies"]

    # The acknowledgment at the sandbox, once per complaint.
    def acknowledged():
        calls = platform.sandbox_calls(status=200)
        found = {p: [c for c in calls if (c.get("recipient") or {}).get("id") == p
                     and complaints[p]["data"]["tracking_code"] in (c.get("text") or "")] for p in psids}
        return found if all(found.values()) else None
    wait_for(acknowledged, 60, message="every acknowledgment at the sandbox")

    # The agency takes each complaint up and answers, resolving it (over RPC: either routing).
    for psid in psids:
        cid = complaints[psid]["complaint_id"]
        with platform.rpc() as rpc:
            for agency in lead[cid]:
                rpc.routing.acknowledge(cid, agency, f"{agency}:petugas")
                rpc.routing.respond(cid, agency, f"Sudah diperbaiki, terima kasih ({psid}).", True,
                                    f"{agency}:petugas")

    # The public status, from either reporting: closed, with the answer.
    reportings = [platform.url("reporting"), platform.replica_urls["reporting"]]

    def resolved_everywhere():
        for psid in psids:
            code = complaints[psid]["data"]["tracking_code"]
            for url in reportings:
                answer = requests.get(f"{url}/api/complaints/{code}", timeout=10)
                if answer.status_code != 200 or answer.json()["open"] or not answer.json()["answers"]:
                    return None
        return True
    wait_for(resolved_everywhere, 60, interval=0.5, message="resolved in both reportings' public status")

    # Every answer reached its citizen.
    def answered():
        texts = [c.get("text") or "" for c in platform.sandbox_calls(status=200)]
        return all(any(f"({p})" in t for t in texts) for p in psids)
    wait_for(answered, 60, message="every answer at the sandbox")

    # The desk's triage breach: escalated once, although two routings check every second.
    def escalated():
        return [e for e in by_type(read_log(platform, "routing"), "ComplaintEscalated")
                if e["complaint_id"] == triage_id]
    wait_for(escalated, 30, message="the triage breach escalated")
    time.sleep(3)  # three more ticks of each routing's timer

    settle(platform, databases)
    logs = {source: read_log(platform, source) for source in EMITTERS}
    escalations = Counter((e["complaint_id"], e["data"]["breach"])
                          for e in by_type(logs["routing"], "ComplaintEscalated"))
    assert escalations[(triage_id, "triage")] == 1
    assert max(escalations.values()) == 1, escalations

    # Consumers: one routing per filing (also across both routings' catch-up), no gap.
    routed_ids = Counter(e["complaint_id"] for e in by_type(logs["routing"], "ComplaintRouted"))
    assert all(routed_ids[c["complaint_id"]] == 1 for c in complaints.values()), routed_ids

    # The sender: every call Meta accepted recorded once, none twice; one acknowledgment each.
    notified = by_type(logs["notification"], "CitizenNotified")
    delivered = platform.sandbox_calls(status=200)
    graph_ids = Counter(e["data"]["graph_message_id"] for e in notified)
    assert max(graph_ids.values()) == 1
    assert len(delivered) == len(notified), (len(delivered), len(notified))
    assert {(c.get("response") or {}).get("message_id", (c.get("response") or {}).get("id"))
            for c in delivered} == set(graph_ids)
    triggers = Counter(e["data"]["trigger_event_id"] for e in notified)
    for psid in psids:
        assert triggers[complaints[psid]["event_id"]] == 1, psid

    # Each citizen's messages in the order of the events that caused them.
    occurred = {e["event_id"]: (parse_iso(e["occurred_at"]), e["source"], e["position"])
                for source in EMITTERS for e in logs[source]}
    cause = {e["data"]["graph_message_id"]: e["data"]["trigger_event_id"] for e in notified}
    for psid in psids:
        calls = sorted((c for c in delivered if (c.get("recipient") or {}).get("id") == psid),
                       key=lambda c: c["seq"])
        times = [occurred[cause[(c.get("response") or {}).get("message_id")]][0] for c in calls]
        assert len(calls) >= 3 and times == sorted(times), (psid, times)

    # The relays: each source's events on its exchange once, in position order.
    for source in EMITTERS:
        positions = []
        while True:
            method, _properties, body = channel.basic_get(queues[source], auto_ack=True)
            if method is None:
                break
            positions.append(json.loads(body)["position"])
        head = logs[source][-1]["position"]
        assert positions == list(range(1, head + 1)), (source, positions[:20], head)

    # Both processes of each service did their part.
    assert logged(platform, "notification", "citizen notified") and \
        logged(platform, "notification-2", "citizen notified")

    # The monthly summary counts every filing once.
    local = parse_iso(complaints[psids[0]]["occurred_at"]).astimezone(ZoneInfo("Asia/Makassar"))
    with platform.rpc() as rpc:
        summary = rpc.reporting.monthly_summary(local.year, local.month)
    assert summary["total"] == len(filed_events), (summary["total"], len(filed_events))


def test_a_rebuild_runs_once_while_the_other_reporting_serves(platform):
    code = by_type(read_log(platform, "intake"), "ComplaintFiled")[0]["data"]["tracking_code"]
    reportings = [platform.url("reporting"), platform.replica_urls["reporting"]]
    outcomes: list = []
    lock = threading.Lock()
    ready = threading.Barrier(3)  # the three calls leave together, once their proxies are connected

    def rebuild():
        try:
            with platform.rpc(timeout=120) as rpc:
                ready.wait(30)
                result = rpc.reporting.rebuild()
        except RemoteError as error:
            result = error
        except Conflict as error:
            result = error
        with lock:
            outcomes.append(result)
    before = sum(logged(platform, name, "projections rebuilt") for name in ("reporting", "reporting-2"))
    threads = [threading.Thread(target=rebuild) for _ in range(3)]
    for thread in threads:
        thread.start()
    statuses = []
    while any(thread.is_alive() for thread in threads):
        for url in reportings:
            statuses.append(requests.get(f"{url}/api/complaints/{code}", timeout=10).status_code)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    done = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(done) == 1 and len(refused) == 2, outcomes
    assert all("already running" in str(o) for o in refused), refused
    assert statuses and set(statuses) == {200}, Counter(statuses)
    after = sum(logged(platform, name, "projections rebuilt") for name in ("reporting", "reporting-2"))
    assert after - before == 1
    for url in reportings:
        assert requests.get(f"{url}/api/complaints/{code}", timeout=10).json()["open"] is False


def settle(platform: Platform, databases: dict, timeout: float = 60) -> None:
    """Until no outbox row, no pending message or body, and every checkpoint at its source's head."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    def count(service: str, sql: str) -> list:
        engine = create_engine(databases[service], poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return list(connection.exec_driver_sql(sql))
        finally:
            engine.dispose()

    sources_of = {"intake": ("routing", "notification"), "routing": ("intake",),
                  "notification": ("intake", "routing"), "reporting": EMITTERS}

    def settled():
        heads = {source: (read_log(platform, source) or [{"position": 0}])[-1]["position"] for source in EMITTERS}
        if any(count(source, "SELECT count(*) FROM outbox")[0][0] for source in EMITTERS):
            return False
        if count("notification", "SELECT count(*) FROM outgoing_messages WHERE state = 'pending'")[0][0]:
            return False
        if count("intake", "SELECT count(*) FROM webhook_inbox WHERE state = 'pending'")[0][0]:
            return False
        for consumer, sources in sources_of.items():
            checkpoints = dict(count(consumer, "SELECT source, position FROM consumer_checkpoints"))
            if any(checkpoints.get(source, 0) < heads[source] for source in sources):
                return False
        return True
    wait_for(settled, timeout, interval=0.5, message="everything settled")
