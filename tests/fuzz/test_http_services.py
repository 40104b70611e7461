"""Fuzzing the running services over real HTTP (intake and routing, each its own process, the
real broker): Meta's webhook with valid signatures over arbitrary bodies, the public web form with
arbitrary JSON, and every route of routing's agency API and console (read from its ``@http``
entrypoints) with arbitrary paths, tokens and bodies.

Properties: never a 5xx, never a hang (every request has a timeout), a refusal is a 4xx with a
message, and nothing is half-written — a refused request records nothing, a webhook body records
its inbox row plus exactly what its items' outcomes say."""
from __future__ import annotations

import json
import sqlite3
import string

import pytest
import requests
from hypothesis import given, settings, strategies as st

from services.routing.service import RoutingService
from tests.fuzz.strategies import HTTP, hostile_text, json_values, mostly_valid_bodies, webhook_bodies
from tests.security.routes import fill, http_routes, params
from tests.support import facebook as fb
from tests.support.platform import Platform, wait_for

TOKENS = {"diskominfotik": "fuzz-desk-token-1", "dpupr": "fuzz-dpupr-token-1",
          "pemkab-loteng": "fuzz-loteng-token-1"}
ONE_EVENT_OUTCOMES = {"filed", "amended", "message_received", "status_requested", "comment_removed",
                      "reaction_recorded"}
TIMEOUT = 10


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("fuzz-http"), services=("intake", "routing"),
                       with_sandbox=False, extra_env={
                           "ROUTING_TOKENS": ",".join(f"{c}:{t}" for c, t in TOKENS.items()),
                           "INTAKE_WEB_RATE_PER_MINUTE": "0",   # the limit has its own test
                           "ROUTING_TOKEN_FAILURES_PER_MINUTE": "0",   # so has the token-guess throttle
                           "NTBCARE_LOG_LEVEL": "WARNING"}).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def complaints(platform):
    """Two routed complaints: one at Dinas PUPR (a rule), one at the desk (no rule sure)."""
    with platform.rpc() as rpc:
        road = rpc.intake.file_complaint({"text": "Jalan provinsi rusak parah di Praya Lombok Tengah",
                                          "category": "infrastruktur", "location": {"region_code": "5202"}})
        vague = rpc.intake.file_complaint({"text": "Tolong dibantu pak, sudah lama menunggu"})

    def routed():
        with platform.rpc() as rpc:
            return all(rpc.routing.get_complaint(c["complaint_id"])["decided_by"] for c in (road, vague))
    wait_for(routed, 30, message="routing of the seed complaints")
    return {"road": road, "vague": vague}


def count(platform, service: str, table: str, where: str = "") -> int:
    with sqlite3.connect(f"file:{platform.data_dir / (service + '.db')}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]


def assert_clear_refusal(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.text.strip(), "a refusal says why"


# -- the webhook ------------------------------------------------------------------------------
def deliver(platform, raw: bytes):
    events_before = count(platform, "intake", "events")
    quarantined_before = count(platform, "intake", "quarantine")
    inbox_before = count(platform, "intake", "webhook_inbox")
    answer = requests.post(f"{platform.url('intake')}/webhooks/facebook", data=raw, timeout=TIMEOUT,
                           headers={"Content-Type": "application/json",
                                    "X-Hub-Signature-256": fb.signature(raw, fb.APP_SECRET)})
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    assert count(platform, "intake", "webhook_inbox") == inbox_before + 1

    def processed():  # the 200 comes once the body is stored; the inbox worker processes it behind
        with sqlite3.connect(f"file:{platform.data_dir / 'intake.db'}?mode=ro", uri=True, timeout=10) as db:
            state, outcome = db.execute(
                "SELECT state, outcome FROM webhook_inbox ORDER BY inbox_id DESC LIMIT 1").fetchone()
        return outcome if state == "processed" else None
    outcome = wait_for(processed, 10, message="the webhook body processed")
    outcomes = json.loads(outcome)
    assert count(platform, "intake", "events") - events_before == \
        sum(n for o, n in outcomes.items() if o in ONE_EVENT_OUTCOMES)
    assert count(platform, "intake", "quarantine") - quarantined_before == outcomes.get("quarantined", 0)


@HTTP
@given(body=st.one_of(mostly_valid_bodies, webhook_bodies))
def test_webhook_signed_arbitrary_bodies(tried, platform, body):
    tried["HTTP intake webhook: signed arbitrary bodies"] += 1
    deliver(platform, json.dumps(body).encode("utf-8"))


@HTTP
@given(raw=st.one_of(st.binary(max_size=300), st.integers(1, 50_000).map(lambda n: b"[" * n)))
def test_webhook_signed_arbitrary_bytes(tried, platform, raw):
    tried["HTTP intake webhook: signed arbitrary bytes"] += 1
    deliver(platform, raw)


# -- the web form ------------------------------------------------------------------------------
web_complaints = st.fixed_dictionaries(
    {"text": st.one_of(hostile_text, st.text(min_size=5, max_size=200), json_values)},
    optional={"reporter": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                  "name": st.one_of(hostile_text, json_values),
                  "phone": st.one_of(hostile_text, st.just("+62 812 3456 7890")),
                  "email": st.one_of(hostile_text, st.emails())})),
              "location": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                  "region_code": st.one_of(st.sampled_from(["5201", "5272", "9999"]), json_values),
                  "lat": json_values, "lon": json_values, "address": hostile_text})),
              "category": st.one_of(st.sampled_from(["pungli", "sosial", "nope"]), json_values),
              "confidential": json_values,
              "attachments": st.one_of(json_values, st.lists(st.fixed_dictionaries(
                  {"type": hostile_text, "url": hostile_text}), max_size=25))})


@HTTP
@given(body=st.one_of(web_complaints, json_values.map(json.dumps).map(str.encode) | st.binary(max_size=200)))
def test_web_form_arbitrary_json(tried, platform, body):
    tried["HTTP intake web form: arbitrary bodies"] += 1
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    complaints_before = count(platform, "intake", "complaints")
    events_before = count(platform, "intake", "events")
    answer = requests.post(f"{platform.url('intake')}/api/complaints", data=raw, timeout=TIMEOUT,
                           headers={"Content-Type": "application/json"})
    tried[f"  web form answered {answer.status_code}"] += 1
    if answer.status_code == 201:
        assert answer.json()["tracking_code"]
        assert count(platform, "intake", "complaints") == complaints_before + 1
        assert count(platform, "intake", "events") == events_before + 1
    else:
        assert answer.status_code == 400, (answer.status_code, answer.text[:300])
        assert answer.json()["error"]
        assert count(platform, "intake", "complaints") == complaints_before
        assert count(platform, "intake", "events") == events_before


# -- routing: every route, arbitrary paths, tokens and bodies ------------------------------------
ROUTES = [r for r in http_routes(RoutingService) if r[1] not in ("/health", "/metrics")]
path_values = st.one_of(st.sampled_from(["..", "%2e%2e", "NTB-00000-00000", "00000000-0000-0000-0000-000000000000",
                                         "x" * 2000, "dpupr", "diskominfotik", "console.css", "assign", "nope"]),
                        st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=40))
tokens = st.one_of(st.none(), st.sampled_from(sorted(TOKENS.values())), hostile_text.filter(lambda t: t.isprintable()))


@settings(HTTP, max_examples=400)
@given(route=st.sampled_from(ROUTES), data=st.data(), token=tokens,
       body=st.one_of(st.none(), json_values.map(json.dumps).map(str.encode), st.binary(max_size=200),
                      st.fixed_dictionaries({}, optional={
                          "agency_codes": json_values, "note": json_values, "reason": json_values,
                          "priority": json_values, "text": json_values, "resolved": json_values,
                          "duplicate_of": json_values}).map(json.dumps).map(str.encode)))
def test_routing_routes_arbitrary_requests(tried, platform, complaints, route, data, token, body):
    method, url, name = route
    tried["HTTP routing API and console: arbitrary requests"] += 1
    real = {"complaint_id": complaints[data.draw(st.sampled_from(["road", "vague"]))]["complaint_id"],
            "agency_code": "dpupr", "name": "console.css", "action": "teruskan"}
    values = {p: data.draw(st.one_of(st.just(real.get(p, "x")), path_values)) for p in params(url)}
    path = fill(url, **values)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}".encode("utf-8")  # any bytes, as a client may send
    events_before = count(platform, "routing", "events")
    answer = requests.request(method, f"{platform.url('routing')}{path}", data=body, headers=headers,
                              timeout=TIMEOUT, allow_redirects=False)
    tried[f"  routing answered {answer.status_code}"] += 1
    assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        assert_clear_refusal(answer)
        assert count(platform, "routing", "events") == events_before, "a refused request recorded events"
