"""Personal data stays where it belongs, shown on a full run of all four services (each its own
process, the Graph API sandbox, the real broker): seeded reporter names, phones, emails, PSIDs
and comment ids go in through every channel (web form, RPC, Messenger, a Page comment), the
complaints are routed, answered and the citizens notified — then

* every event of every service holds no name, phone or email, and PSIDs / comment ids only inside
  ``reply_to`` and ``recipient_psid``;
* reporting's tables (its SQLite file, opened read-only) and routing's hold none of them;
* no public endpoint's answer shows any of them (reporting's status, reports and dashboard,
  Open311, the agency API and console pages an agency sees);
* the logs of the run (every process's output) hold none of them.
"""
from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
import requests

from sandbox.control import citizen_wrote, meta_saw
from services.reporting.service import ReportingService
from tests.security.routes import fill, http_routes, params
from tests.support import facebook as fb
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

TOKENS = {"diskominfotik": "pii-desk-token-1", "dpupr": "pii-dpupr-token-1"}
OPEN311_KEY = "pii-open311-key-1"
RUN = uuid.uuid4().hex[:6]
NAMES = [f"Siti Aminah Rahasia{RUN}", f"Baiq Komentar{RUN}", f"Lalu Rpc{RUN}"]
PHONES = ["+62 812 9988 7766", "081399887755"]
EMAILS = [f"siti.{RUN}@contoh.id", f"lalu.{RUN}@contoh.id"]
PSIDS = [f"79{RUN.encode().hex()[:12]}01", f"79{RUN.encode().hex()[:12]}02", f"79{RUN.encode().hex()[:12]}03"]
COMMENT_ID = f"{DEV_PAGE_ID}_88{RUN.encode().hex()[:10]}"
POST_ID = f"{DEV_PAGE_ID}_77{RUN.encode().hex()[:10]}"
NEVER_ANYWHERE = NAMES + PHONES + EMAILS + [p.replace(" ", "") for p in PHONES]
ONLY_IN_REPLY_TO = PSIDS + [COMMENT_ID]


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("pii"), extra_env={
        "ROUTING_TOKENS": ",".join(f"{c}:{t}" for c, t in TOKENS.items()),
        "OPEN311_API_KEYS": f"pii-client:{OPEN311_KEY}",
        "NTBCARE_LOG_LEVEL": "DEBUG"}).start_all()     # the chattiest logs are the ones to check
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def flow(platform):
    """File through every channel, route, answer, notify; returns the complaints."""
    filed = []
    web = requests.post(f"{platform.url('intake')}/api/complaints", timeout=15, json={
        "text": "Jalan provinsi rusak parah di Praya Lombok Tengah", "category": "infrastruktur",
        "location": {"region_code": "5202", "address": "Jl. Sudirman"},
        "reporter": {"name": NAMES[0], "phone": PHONES[0], "email": EMAILS[0]}})
    assert web.status_code == 201, web.text
    filed.append(web.json())
    # The sandbox, like Meta, answers only people who wrote to the Page.
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, PSIDS[2])
    with platform.rpc() as rpc:
        filed.append(rpc.intake.file_complaint({
            "text": "Jembatan rusak di Praya Lombok Tengah", "category": "infrastruktur",
            "location": {"region_code": "5202"}, "channel": "api",
            "reporter": {"name": NAMES[2], "phone": PHONES[1], "email": EMAILS[1]},
            "reply_to": {"page_id": DEV_PAGE_ID, "psid": PSIDS[2]}}))
    for psid in PSIDs_messenger():
        body = fb.page_body(fb.messaging_entry(
            DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, "Jalan rusak berlubang di Praya Lombok Tengah")))
        meta_saw(platform.sandbox_url, body)
        assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200
    body = fb.page_body(fb.changes_entry(
        DEV_PAGE_ID, fb.comment_change(DEV_PAGE_ID, "Jalan rusak di Praya Lombok Tengah tolong diperbaiki",
                                       comment_id=COMMENT_ID, post_id=POST_ID, author_id=PSIDS[1],
                                       author_name=NAMES[1])))
    meta_saw(platform.sandbox_url, body)
    assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200

    def all_filed():
        with platform.rpc() as rpc:
            events = [e for e in rpc.intake.events_since(0, 1000) if e["event_type"] == "ComplaintFiled"]
        return events if len(events) >= 4 else None
    complaints = wait_for(all_filed, 30, message="four complaints filed")

    def routed(complaint_id):
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(complaint_id)
        return complaint if complaint["decided_by"] else None
    headers = {"Authorization": f"Bearer {TOKENS['dpupr']}", "X-Actor": "Budi"}
    for event in complaints:
        complaint = wait_for(lambda: routed(event["complaint_id"]), 30, message="routing")
        if "dpupr" not in complaint["lead_agencies"]:
            answer = requests.post(f"{platform.url('routing')}/api/complaints/{event['complaint_id']}/assign",
                                   json={"agency_codes": ["dpupr"], "note": "Jalan provinsi."}, timeout=15,
                                   headers={"Authorization": f"Bearer {TOKENS['diskominfotik']}"})
            assert answer.status_code == 200, answer.text
        answer = requests.post(f"{platform.url('routing')}/api/complaints/{event['complaint_id']}/respond",
                               json={"text": "Jalan sudah ditambal.", "resolved": True}, headers=headers,
                               timeout=15)
        assert answer.status_code == 200, answer.text
    # The citizens on Facebook got their answers: both Messenger conversations the answer itself,
    # the comment a public "selesai" update.
    def answered():
        calls = platform.sandbox_calls(status=200)
        return (len([c for c in calls if "ditambal" in (c.get("text") or "")]) >= 2
                and any(c.get("kind") == "comment_reply" and "selesai" in (c.get("text") or "") for c in calls))
    wait_for(answered, 60, message="answers at the Graph API sandbox")
    # Reporting has projected them.
    first_code = complaints[0]["data"]["tracking_code"]
    wait_for(lambda: requests.get(f"{platform.url('reporting')}/api/complaints/{first_code}",
                                  timeout=10).status_code == 200, 60, message="reporting's status")
    return complaints


def PSIDs_messenger():
    return PSIDS[:1]


def scrub_reply_to(value):
    """The value without its ``reply_to`` and ``recipient_psid`` members (where PSIDs belong).
    ``graph_message_id`` is the id Meta gave the Page's *own* message or reply; the sandbox spells
    a reply's id as ``<parent comment id>_<n>``, so there the parent id may only appear as that
    prefix (the value must still not *be* a citizen's id)."""
    if isinstance(value, dict):
        return {k: (_page_message_id(v) if k == "graph_message_id" else scrub_reply_to(v))
                for k, v in value.items() if k not in ("reply_to", "recipient_psid")}
    if isinstance(value, list):
        return [scrub_reply_to(v) for v in value]
    return value


def _page_message_id(value):
    if value in ONLY_IN_REPLY_TO:
        return value          # the citizen's own id where the Page's should be: a leak
    return "page-message-id" if isinstance(value, str) and value.startswith(COMMENT_ID + "_") else value


def leaks(text: str, secrets) -> list[str]:
    return [secret for secret in secrets if secret in text]


def test_events_of_every_service_hold_no_personal_data(platform, flow):
    scanned = 0
    seen_in_reply_to = set()
    with platform.rpc() as rpc:
        for service in ("intake", "routing", "notification"):
            for event in rpc[service].events_since(0, 1000):
                scanned += 1
                whole = json.dumps(event, ensure_ascii=False)
                assert not leaks(whole, NEVER_ANYWHERE), (service, event["event_type"])
                assert not leaks(json.dumps(scrub_reply_to(event), ensure_ascii=False), ONLY_IN_REPLY_TO), \
                    (service, event["event_type"], "PSID or comment id outside reply_to")
                seen_in_reply_to.update(leaks(whole, ONLY_IN_REPLY_TO))
    print(f"scanned {scanned} events")
    assert scanned >= 12
    assert seen_in_reply_to >= {PSIDS[0], PSIDS[2], COMMENT_ID}, "the test must see the ids where they belong"


def dump_sqlite(path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(json.dumps(row, ensure_ascii=False, default=str)
                         for table in tables for row in db.execute(f"SELECT * FROM {table}"))


def test_reporting_and_routing_tables_hold_no_personal_data(platform, flow):
    for service in ("reporting", "routing"):
        dump = dump_sqlite(platform.data_dir / f"{service}.db")
        assert flow[0]["data"]["tracking_code"] in dump, f"{service}'s tables were read"
        assert not leaks(dump, NEVER_ANYWHERE + ONLY_IN_REPLY_TO), service
    # Intake is where the contact lives — the test's seeds are really there.
    assert NAMES[0] in dump_sqlite(platform.data_dir / "intake.db")


def public_urls(platform, flow) -> list[str]:
    code = flow[0]["data"]["tracking_code"]
    values = {"tracking_code": code, "year": flow[0]["data"]["filed_at"][:4],
              "month": str(int(flow[0]["data"]["filed_at"][5:7])), "name": "dashboard.css"}
    urls = [f"{platform.url('reporting')}{fill(url, **{p: values[p] for p in params(url)})}"
            for method, url, _name in http_routes(ReportingService) if method == "GET"]
    intake = platform.url("intake")
    # The lists need a key: with it they must still say nothing personal (without one, a 403
    # would show nothing at all).
    urls += [f"{intake}/open311/v2/requests.json?api_key={OPEN311_KEY}",
             f"{intake}/open311/v2/requests/{code}.json",
             f"{intake}/open311/v2/requests.xml?api_key={OPEN311_KEY}"]
    return urls


def test_public_endpoints_show_no_personal_data(platform, flow):
    answers = 0
    for url in public_urls(platform, flow):
        answer = requests.get(url, timeout=15)
        assert answer.status_code < 500, (url, answer.status_code)
        if "/open311/" in url:
            assert answer.status_code == 200, (url, answer.status_code)
        assert not leaks(answer.text, NEVER_ANYWHERE + ONLY_IN_REPLY_TO), url
        answers += 1
    # What an agency sees: the API and the console page of each complaint.
    headers = {"Authorization": f"Bearer {TOKENS['dpupr']}"}
    for event in flow:
        for path in (f"/api/complaints/{event['complaint_id']}", f"/api/complaints/{event['complaint_id']}/timeline",
                     "/api/agencies/dpupr/complaints"):
            answer = requests.get(f"{platform.url('routing')}{path}", headers=headers, timeout=15)
            assert answer.status_code == 200 and not leaks(answer.text, NEVER_ANYWHERE + ONLY_IN_REPLY_TO), path
            answers += 1
    print(f"scanned {answers} public answers")


def test_logs_of_the_run_hold_no_personal_data(platform, flow):
    logs = sorted(platform.logs_dir.glob("*.log"))
    assert {p.stem for p in logs} >= {"intake", "routing", "notification", "reporting"}
    for log in logs:
        if log.stem == "sandbox":
            continue  # the sandbox plays Meta: it necessarily sees PSIDs
        text = log.read_text(errors="replace")
        assert not leaks(text, NEVER_ANYWHERE + ONLY_IN_REPLY_TO), log.name
