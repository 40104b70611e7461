"""Issue 16, "survive abuse" on the HTTP side, shown without servers (units and in-process
workers on SQLite, as the interface tier does):

* behind a trusted TLS proxy each citizen has their own rate-limit bucket, and a client that is
  not a trusted proxy cannot pick one with ``X-Forwarded-For`` (``NTBCARE_TRUSTED_PROXIES``);
* JSON endpoints refuse bodies not declared ``application/json`` (415), so no other web page
  can make its visitors' browsers file complaints or act with an agency's session;
* routing's API answers a complaint the caller may not see exactly as an unknown one (404, same
  body, no internal id); wrong tokens are throttled per address on the API and the console's
  sign-in (429 with ``Retry-After``); signing out of the console kills every copy of the cookie;
* reporting's dashboard is built once per ``REPORTING_DASHBOARD_CACHE_SECONDS``;
* the web server's settings (timeouts, connection cap below the open-files limit).

The server under a flood of idle connections is tests/security/test_idle_connections.py.
"""
from __future__ import annotations

import json

import pytest
from nameko.testing.services import worker_factory

from shared.core.config import ConfigError
from shared.core.ratelimit import TokenBucketLimiter, TrustedProxies
from shared.glue import webserver
from services.intake.service import IntakeService
from services.reporting.adapters import dashboard
from services.reporting import service as reporting_service
from services.routing.adapters import web
from services.routing.adapters.console import config as console_config
from services.routing.adapters.console.pages import Console
from services.routing.adapters.console.session import SessionCodec
from services.routing.application.evidence import EvidenceAccess
from services.routing.service import RoutingHandlers, RoutingService, build_store, workflow_for
from tests.interface.harness import (FakeRelay, SourceLog, consumer_api, json_of, real_dependencies, request,
                                     text_of)
from tests.interface.test_routing_service import DESK, ROAD, TOKENS, Browser, FakeIntake, Routing

PROXY = "10.0.0.5"


# --- the client address behind a trusted proxy ---------------------------------------------------

@pytest.mark.parametrize("trusted, peer, forwarded, client", [
    ("", "10.0.0.5", ["198.51.100.1"], "10.0.0.5"),                       # default: the header is never read
    ("10.0.0.5", "203.0.113.9", ["198.51.100.1"], "203.0.113.9"),         # not from the proxy: ignored
    ("10.0.0.5", "10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", "10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own entry is ignored
    ("10.0.0.5", "10.0.0.5", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # several header lines
    ("10.0.0.0/8", "10.0.0.5", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two proxies in a row
    ("10.0.0.5", "10.0.0.5", [], "10.0.0.5"),                             # no header: the proxy itself
    ("10.0.0.5", "10.0.0.5", ["198.51.100.1, garbage"], "10.0.0.5"),      # malformed: stop at the proxy
    ("10.0.0.5", "10.0.0.5", ["198.51.100.1:40312"], "198.51.100.1"),     # a port is not part of it
    ("10.0.0.5, 2001:db8::/32", "2001:db8::7", ["[2001:db8:ffff::1]:443, 2001:db9::1"], "2001:db9::1"),
])
def test_trusted_proxies_decide_whose_bucket_a_request_is(trusted, peer, forwarded, client):
    assert TrustedProxies.parse(trusted).client_address(peer, forwarded) == client


def test_a_malformed_trusted_proxy_list_stops_the_service():
    with pytest.raises(ConfigError, match="NTBCARE_TRUSTED_PROXIES"):
        TrustedProxies.parse("10.0.0.5, proxy.example")


@pytest.fixture
def reporting(tmp_path, monkeypatch):
    """Reporting's HTTP side in-process on a fresh SQLite file (catch-up and the logs unused)."""
    monkeypatch.setenv("NTBCARE_AUTO_MIGRATE", "1")
    monkeypatch.delenv("REPORTING_DASHBOARD_CACHE_SECONDS", raising=False)
    store = reporting_service.build_store(f"sqlite:///{tmp_path / 'reporting.db'}")
    store.prepare()
    worker = real_dependencies(reporting_service.ReportingService, store=store, logs=object(),
                               consumer=object(), status_rate_limit=TokenBucketLimiter(2),
                               dashboard_pages=dashboard.PageCache.from_env())
    yield worker
    store.database.dispose()


def test_behind_the_trusted_proxy_each_citizen_has_their_own_bucket(reporting, monkeypatch):
    monkeypatch.setenv("NTBCARE_TRUSTED_PROXIES", PROXY)

    def lookup(peer: str, forwarded: str | None = None):
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return reporting.http_complaint_status(request("GET", "/api/complaints/NTB-00000-00000",
                                                       headers=headers, remote_addr=peer),
                                               "NTB-00000-00000").status_code

    assert [lookup(PROXY, "198.51.100.1") for _ in range(3)] == [404, 404, 429]
    assert lookup(PROXY, "198.51.100.2") == 404                 # another citizen through the same proxy
    # A client talking directly cannot choose a fresh bucket with the header.
    assert [lookup("203.0.113.9", f"192.0.2.{n}") for n in range(3)] == [404, 404, 429]


# --- JSON endpoints require application/json ---------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_the_web_form_refuses_bodies_not_declared_json(content_type):
    # What a cross-site <form> (or fetch without a preflight) can send; refused before anything
    # is read, limited or stored (every other dependency is a mock that must stay untouched).
    worker = worker_factory(IntakeService, web_rate_limit=None)
    body = json.dumps({"text": "Jalan rusak parah di Praya", "category": "infrastruktur"}).encode()
    answer = worker.web_complaint(request("POST", "/api/complaints", data=body, content_type=content_type))
    assert answer.status_code == 415 and "application/json" in json_of(answer)["error"]
    assert worker.store.mock_calls == []


# --- routing: the API and the console ----------------------------------------------------------

@pytest.fixture
def routing(tmp_path, monkeypatch) -> Routing:
    monkeypatch.setenv("NTBCARE_AUTO_MIGRATE", "1")
    monkeypatch.setenv("ROUTING_TOKENS", ",".join(f"{code}:{token}" for code, token in TOKENS.items()))
    monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "s" * 40)
    monkeypatch.setenv("ROUTING_TOKEN_FAILURES_PER_MINUTE", "10")
    monkeypatch.delenv("NTBCARE_TRUSTED_PROXIES", raising=False)
    store = build_store(f"sqlite:///{tmp_path / 'routing.db'}")
    store.prepare()
    workflow = workflow_for(store)
    console = Console(workflow, SessionCodec(console_config.console_secret()), console_config.secure_cookie_mode(),
                      evidence=EvidenceAccess(workflow), token_guesses=web.TokenGuesses.from_env())
    intake_log, intake = SourceLog("intake"), FakeIntake()
    worker = real_dependencies(RoutingService, store=store, relay=FakeRelay(), workflow=workflow, console=console,
                               intake=intake, consumer=consumer_api(store, RoutingHandlers, {"intake": intake_log}))
    yield Routing(worker, store, workflow, intake, intake_log)
    store.database.dispose()


def api(routing: Routing, entrypoint: str, path: str, *args, token: str | None = None, method: str = "GET",
        body: bytes | None = None, content_type: str | None = None, address: str = "203.0.113.7"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(routing.worker, entrypoint)(request(method, path, data=body, content_type=content_type,
                                                       headers=headers, remote_addr=address), *args)


def test_another_agencys_complaint_is_answered_as_an_unknown_one(routing):
    complaint_id = routing.filed(*ROAD)                        # Dinas PUPR's, not Dinas Kesehatan's
    code = routing.workflow.get_complaint(complaint_id)["tracking_code"]
    for entrypoint, suffix in (("http_complaint", ""), ("http_timeline", "/timeline"), ("http_evidence", "/evidence")):
        for key, unknown in ((code, "NTB-ZZZZZ-99999"), (complaint_id, "00000000-0000-0000-0000-000000000000")):
            hidden = api(routing, entrypoint, f"/api/complaints/{key}{suffix}", key, token=TOKENS["dikes"])
            missing = api(routing, entrypoint, f"/api/complaints/{unknown}{suffix}", unknown, token=TOKENS["dikes"])
            assert hidden.status_code == missing.status_code == 404, entrypoint
            assert json_of(hidden) == {"error": f"no complaint {key!r} in routing"}
            assert json_of(missing) == {"error": f"no complaint {unknown!r} in routing"}
            if key == code:
                assert complaint_id not in text_of(hidden)             # no internal id in the answer
    acting = api(routing, "http_acknowledge", "/", code, token=TOKENS["dikes"], method="POST")
    assert acting.status_code == 404 and complaint_id not in text_of(acting)
    assert api(routing, "http_complaint", "/", code, token=TOKENS["dpupr"]).status_code == 200


def test_api_bodies_must_be_declared_json(routing):
    complaint_id = routing.filed(*ROAD)
    body = json.dumps({"text": "Sudah kami perbaiki.", "resolved": False}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        refused = api(routing, "http_respond", "/", complaint_id, token=TOKENS["dpupr"], method="POST",
                      body=body, content_type=content_type)
        assert refused.status_code == 415, content_type
    assert [entry["event_type"] for entry in routing.workflow.timeline(complaint_id)] == [
        "ComplaintFiled", "ComplaintRouted"]                         # nothing recorded
    answered = api(routing, "http_respond", "/", complaint_id, token=TOKENS["dpupr"], method="POST",
                   body=body, content_type="application/json; charset=utf-8")
    assert answered.status_code == 200


def test_wrong_api_tokens_are_throttled_per_address(routing):
    guesses = [api(routing, "http_me", "/api/me", token=f"guess-{n}") for n in range(10)]
    assert [answer.status_code for answer in guesses] == [401] * 10
    refused = api(routing, "http_me", "/api/me", token=TOKENS["dpupr"])   # even a right one: no oracle
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # Other addresses, and agencies that never guess, are unaffected.
    assert api(routing, "http_me", "/api/me", token=TOKENS["dpupr"], address="198.51.100.20").status_code == 200
    for _ in range(30):
        assert api(routing, "http_me", "/api/me", token=TOKENS[DESK], address="198.51.100.21").status_code == 200
    assert api(routing, "http_me", "/api/me", address="198.51.100.22").status_code == 401   # no token: no guess


def test_wrong_tokens_at_the_console_sign_in_are_throttled(routing):
    browser = Browser(routing)
    form = browser.call("console_login_form", "GET", "/console/login")
    csrf = browser.page_csrf(form)
    answers = [browser.call("console_login", "POST", "/console/login",
                            data={"csrf_token": csrf, "token": f"guess-{n}", "nama": "Tamu"}) for n in range(11)]
    assert [answer.status_code for answer in answers] == [401] * 10 + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1 and "Terlalu banyak token" in text_of(answers[-1])
    # The API and the console count the same guesses.
    assert api(routing, "http_me", "/api/me", token=TOKENS["dpupr"]).status_code == 429


def test_signing_out_kills_every_copy_of_the_console_cookie(routing):
    officer = Browser(routing)
    officer.sign_in("dpupr", "Budi")
    copied = Browser(routing)
    copied.cookie = officer.cookie                             # e.g. taken from a shared computer
    assert copied.call("console_inbox", "GET", "/console/kotak-masuk").status_code == 200
    page = officer.call("console_inbox", "GET", "/console/kotak-masuk")
    signed_out = officer.call("console_logout", "POST", "/console/keluar",
                              data={"csrf_token": officer.page_csrf(page)})
    assert signed_out.headers["Location"] == "/console/login"
    after = copied.call("console_inbox", "GET", "/console/kotak-masuk")
    assert after.status_code == 303 and after.headers["Location"] == "/console/login"


# --- reporting's dashboard -----------------------------------------------------------------------

def test_the_dashboard_is_built_once_for_requests_in_a_row(reporting, monkeypatch):
    builds = []
    real = reporting_service.queries.dashboard

    def counted(database, month):
        builds.append(month)
        return real(database, month)

    monkeypatch.setattr(reporting_service.queries, "dashboard", counted)
    first = reporting.http_dashboard(request("GET", "/dashboard", query={"month": "2026-10"}))
    second = reporting.http_dashboard(request("GET", "/dashboard", query={"month": "2026-10"}))
    assert first.status_code == second.status_code == 200
    assert first.get_data() == second.get_data()
    assert builds == ["2026-10"]


def test_a_cached_dashboard_page_is_rebuilt_after_its_time():
    now = [1000.0]
    cache = dashboard.PageCache(30, max_pages=2, clock=lambda: now[0])
    pages = iter(f"page {n}" for n in range(10))
    assert [cache.get("2026-10", lambda: next(pages)) for _ in range(3)] == ["page 0"] * 3
    now[0] += 30
    assert cache.get("2026-10", lambda: next(pages)) == "page 1"
    for month in ("2026-08", "2026-09"):                        # only max_pages are kept
        cache.get(month, lambda: next(pages))
    assert cache.get("2026-10", lambda: next(pages)) == "page 4"
    assert dashboard.PageCache(0).get("x", lambda: "fresh") == "fresh"


# --- the web server's settings -------------------------------------------------------------------

def test_the_connection_cap_stays_below_the_open_files_limit(monkeypatch):
    monkeypatch.delenv("NTBCARE_HTTP_MAX_CONNECTIONS", raising=False)
    monkeypatch.delenv("NTBCARE_HTTP_TIMEOUT_SECONDS", raising=False)
    assert webserver.WebServerSettings.from_env(1024) == webserver.WebServerSettings(30.0, 1024 - 128)
    assert webserver.WebServerSettings.from_env(65536) == webserver.WebServerSettings(30.0, 1000)
    monkeypatch.setenv("NTBCARE_HTTP_MAX_CONNECTIONS", "5000")
    monkeypatch.setenv("NTBCARE_HTTP_TIMEOUT_SECONDS", "10")
    assert webserver.WebServerSettings.from_env(65536) == webserver.WebServerSettings(10.0, 5000)
    for variable, value in (("NTBCARE_HTTP_MAX_CONNECTIONS", "0"), ("NTBCARE_HTTP_MAX_CONNECTIONS", "many"),
                            ("NTBCARE_HTTP_TIMEOUT_SECONDS", "-1")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError, match=variable):
            webserver.WebServerSettings.from_env(65536)
        monkeypatch.delenv(variable)


def test_the_hardened_server_serves_every_http_entrypoint(monkeypatch):
    from nameko.web.handlers import HttpRequestHandler
    monkeypatch.setattr(HttpRequestHandler, "server", HttpRequestHandler.server)   # restored after
    webserver.install()   # what shared.runner does before a service starts
    assert isinstance(HttpRequestHandler.server, webserver.HardenedWebServer)
