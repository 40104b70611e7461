"""Who gets in, and how much anyone may send — against intake and routing running as their own
processes on the real broker:

* Meta's signature cannot be bypassed (every malformed, forged or foreign signature → 403, and
  nothing is stored);
* every HTTP endpoint (read from the services' ``@http`` entrypoints) refuses an oversized body,
  URL or header with a 4xx — never a 5xx, never a hang — including a chunked body without length;
* the public web form is rate-limited per client IP (429 + Retry-After); the signed webhook is
  not (a burst of Meta deliveries all get 200);
* every routing endpoint is scoped: no token → 401, another agency's complaint or a desk-only
  action → 403 (the console: sign-in page, then 403);
* agency tokens are stored hashed: the plain tokens appear nowhere in routing's database files.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import sqlite3
import threading

import pytest
import requests

from services.intake.service import IntakeService
from services.routing.service import RoutingService
from tests.security.routes import fill, http_routes, params
from tests.support import facebook as fb
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

DESK = "diskominfotik"
TOKENS = {DESK: "sec-desk-token-1", "dpupr": "sec-dpupr-token-1", "pemkab-loteng": "sec-loteng-token-1",
          "dikes": "sec-dikes-token-1"}
WEB_RATE = 5
TIMEOUT = 15


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    # Reporting too: intake's Open311 status answers come from it.
    running = Platform(amqp_uri, tmp_path_factory.mktemp("security"), services=("intake", "routing", "reporting"),
                       with_sandbox=False, extra_env={
                           "ROUTING_TOKENS": ",".join(f"{c}:{t}" for c, t in TOKENS.items()),
                           "INTAKE_WEB_RATE_PER_MINUTE": str(WEB_RATE),
                           # Many wrong tokens from one address here; the throttle has its own test
                           # (tests/security/test_web_hardening.py).
                           "ROUTING_TOKEN_FAILURES_PER_MINUTE": "0"}).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def road(platform):
    """A complaint routed by rule to Dinas PUPR (lead) — not to Dinas Kesehatan (dikes)."""
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Jalan provinsi rusak parah di Praya Lombok Tengah",
                                           "category": "infrastruktur", "location": {"region_code": "5202"}})

    def routed():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(filed["complaint_id"])
        return complaint if complaint["decided_by"] else None
    complaint = wait_for(routed, 30, message="routing")
    assert "dpupr" in complaint["lead_agencies"] and "dikes" not in (
        complaint["lead_agencies"] + complaint["coordinating_agencies"]), complaint
    return complaint


def hook(platform) -> str:
    return f"{platform.url('intake')}/webhooks/facebook"


def count(platform, service: str, table: str) -> int:
    with sqlite3.connect(f"file:{platform.data_dir / (service + '.db')}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# -- signatures ------------------------------------------------------------------------------------
def message_body(text: str) -> bytes:
    return json.dumps(fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, fb.new_psid(), text))), separators=(",", ":")).encode()


def hmac_hex(raw: bytes, secret: str, algorithm=hashlib.sha256) -> str:
    import hmac
    return hmac.new(secret.encode(), raw, algorithm).hexdigest()


FORGED = {
    "missing header": lambda raw: None,
    "empty header": lambda raw: "",
    "scheme only": lambda raw: "sha256=",
    "no scheme prefix": lambda raw: hmac_hex(raw, fb.APP_SECRET),
    "wrong scheme prefix": lambda raw: "sha512=" + hmac_hex(raw, fb.APP_SECRET),
    "uppercase scheme": lambda raw: "SHA256=" + hmac_hex(raw, fb.APP_SECRET),
    "space instead of =": lambda raw: "sha256 " + hmac_hex(raw, fb.APP_SECRET),
    "sha1 (X-Hub-Signature style)": lambda raw: "sha1=" + hmac_hex(raw, fb.APP_SECRET, hashlib.sha1),
    "sha1 value under sha256=": lambda raw: "sha256=" + hmac_hex(raw, fb.APP_SECRET, hashlib.sha1),
    "signature of another body": lambda raw: fb.signature(raw + b" ", fb.APP_SECRET),
    "another secret": lambda raw: fb.signature(raw, "not-the-secret"),
    "empty secret": lambda raw: fb.signature(raw, ""),
    "truncated": lambda raw: fb.signature(raw, fb.APP_SECRET)[:-2],
    "extra characters": lambda raw: fb.signature(raw, fb.APP_SECRET) + "00",
    "two signatures": lambda raw: fb.signature(raw, fb.APP_SECRET) + "," + fb.signature(raw, fb.APP_SECRET),
    "uppercase hex of a wrong mac": lambda raw: fb.signature(raw, "other").upper().replace("SHA256", "sha256"),
    "plain sha256 of the body (no key)": lambda raw: "sha256=" + hashlib.sha256(raw).hexdigest(),
    "non-ascii": lambda raw: "sha256=" + "é" * 64,
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_or_malformed_signatures_are_refused_and_store_nothing(platform, case):
    raw = message_body(f"Jalan rusak di Dompu {case}")
    header = FORGED[case](raw)
    inbox_before, events_before = count(platform, "intake", "webhook_inbox"), count(platform, "intake", "events")
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header.encode("utf-8")
    answer = requests.post(hook(platform), data=raw, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 403, (case, answer.status_code)
    assert count(platform, "intake", "webhook_inbox") == inbox_before
    assert count(platform, "intake", "events") == events_before


def test_the_right_signature_passes_also_in_uppercase_hex(platform):
    """Hex is case-insensitive: the uppercase spelling of the right HMAC is the same MAC (not a
    bypass — it still needs the secret); Meta itself sends lowercase."""
    for spell in (str.lower, str.upper):
        raw = message_body(f"Lampu jalan mati di Selong {spell.__name__}")
        header = "sha256=" + spell(hmac_hex(raw, fb.APP_SECRET))
        inbox_before = count(platform, "intake", "webhook_inbox")
        answer = requests.post(hook(platform), data=raw, timeout=TIMEOUT,
                               headers={"X-Hub-Signature-256": header})
        assert answer.status_code == 200
        assert count(platform, "intake", "webhook_inbox") == inbox_before + 1


def test_signature_is_checked_over_the_raw_bytes_not_the_parsed_json(platform):
    raw = message_body("Sampah menumpuk di Bima")
    reformatted = json.dumps(json.loads(raw), indent=2).encode()    # same JSON, other bytes
    answer = requests.post(hook(platform), data=reformatted, timeout=TIMEOUT,
                           headers={"X-Hub-Signature-256": fb.signature(raw, fb.APP_SECRET)})
    assert answer.status_code == 403


# -- size limits on every endpoint --------------------------------------------------------------
BIG = 2 * 1024 * 1024 + 17


def route_list():
    values = {"complaint_id": "00000000-0000-0000-0000-000000000000", "agency_code": "dpupr",
              "name": "console.css", "action": "teruskan", "tracking_code": "NTB-00000-00000",
              "fmt": "json", "request_id": "NTB-00000-00000", "code": "infrastruktur", "digest": "0" * 64}
    for service_class, service in ((IntakeService, "intake"), (RoutingService, "routing")):
        for method, url, name in http_routes(service_class):
            yield pytest.param(service, method, fill(url, **{p: values[p] for p in params(url)}),
                               id=f"{service}-{method}-{url}")


def chunked_request(port: int, method: str, path: str, headers: dict, total: int) -> int:
    """Send ``total`` bytes with Transfer-Encoding: chunked (no Content-Length); the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    connection.putrequest(method, path)
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"a" * 65536
    sent = 0
    try:
        while sent < total:
            piece = chunk[:min(len(chunk), total - sent)]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may refuse before the end: fine, it must still answer
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.parametrize("service, method, path", list(route_list()))
def test_oversized_bodies_are_refused_on_every_endpoint(platform, service, method, path):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS[DESK]}",
               "X-Hub-Signature-256": "sha256=" + "0" * 64}
    answer = requests.request(method, f"{platform.url(service)}{path}", data=b"{" + b" " * BIG + b"}",
                              headers=headers, timeout=TIMEOUT, allow_redirects=False)
    assert answer.status_code < 500, answer.text[:300]
    if method == "POST":
        assert answer.status_code in (400, 403, 413, 429), answer.status_code
    else:
        assert answer.status_code in (200, 303, 400, 401, 403, 404, 413), answer.status_code
    # Chunked, without Content-Length: the server does not read such a body at all (it is
    # treated as empty), so it cannot fill memory; the answer is the empty body's.
    port = platform.ports[service]
    status = chunked_request(port, method, path, headers, BIG)
    assert status < 500


@pytest.mark.parametrize("service", ["intake", "routing"])
def test_oversized_url_and_headers_are_refused(platform, service):
    long_url = requests.get(f"{platform.url(service)}/health?" + "a" * 100_000, timeout=TIMEOUT)
    assert 400 <= long_url.status_code < 500
    long_header = requests.get(f"{platform.url(service)}/health", headers={"X-Big": "a" * 100_000},
                               timeout=TIMEOUT)
    assert 400 <= long_header.status_code < 500
    many_headers = requests.get(f"{platform.url(service)}/health", timeout=TIMEOUT,
                                headers={f"X-H{n}": "a" * 100 for n in range(500)})
    assert many_headers.status_code < 500


def test_a_slow_client_does_not_block_the_service(platform):
    """A client that opens a request and never finishes it (slowloris) ties up one green thread,
    not the service: other requests are answered meanwhile."""
    stalled = socket.create_connection(("127.0.0.1", platform.ports["intake"]), timeout=TIMEOUT)
    stalled.sendall(b"POST /api/complaints HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    try:
        assert requests.get(f"{platform.url('intake')}/health", timeout=5).status_code == 200
    finally:
        stalled.close()


# -- rate limits ----------------------------------------------------------------------------------
def post_web_form(port: int, body: dict, source: str = "127.0.0.1") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0))
    connection.request("POST", "/api/complaints", body=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.body = answer.read()
    connection.close()
    return answer


def test_web_form_is_rate_limited_per_client_ip(platform):
    port = platform.ports["intake"]
    source = "127.0.0.9"   # an address of its own, so the other tests' requests do not count
    answers = [post_web_form(port, {"text": f"Jalan rusak di Sumbawa nomor {n}"}, source) for n in range(WEB_RATE)]
    assert [a.status for a in answers] == [201] * WEB_RATE
    complaints_before = count(platform, "intake", "complaints")
    refused = post_web_form(port, {"text": "Satu aduan lagi dari alamat yang sama"}, source)
    assert refused.status == 429
    assert int(refused.getheader("Retry-After")) >= 1
    assert json.loads(refused.body)["error"]
    assert count(platform, "intake", "complaints") == complaints_before      # refused: nothing filed
    # Another client is not affected.
    assert post_web_form(port, {"text": "Aduan dari warga lain di Dompu"}, "127.0.0.10").status == 201


def test_signed_webhook_is_not_rate_limited(platform):
    """Meta retries what it cannot deliver; a limit here would only turn into duplicates later.
    60 signed deliveries at once (12× the web form's limit), all answered 200 and all filed."""
    marker = "burst" + re.sub(r"\W", "", str(threading.get_ident()))[-6:]
    bodies = [message_body(f"Banjir di Bima {marker} nomor {n}") for n in range(60)]
    statuses = []

    def send(raw):
        statuses.append(requests.post(hook(platform), data=raw, timeout=30,
                                      headers={"X-Hub-Signature-256": fb.signature(raw, fb.APP_SECRET)}).status_code)
    threads = [threading.Thread(target=send, args=(raw,)) for raw in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 60

    def filed():
        with platform.rpc() as rpc:
            found = [e for e in rpc.intake.events_since(0, 1000)
                     if e["event_type"] == "ComplaintFiled" and marker in e["data"]["text"]]
        return len(found) == 60
    wait_for(filed, 30, message="60 complaints filed from the burst")


# -- agency and desk tokens: every routing endpoint is scoped --------------------------------------
# Every routing route and who may use it. A route missing here fails the first test below.
API_SCOPE = {
    "http_me": "any", "http_agencies": "any", "http_desk_queue": "desk",
    "http_complaints_for": "own_agency", "http_complaint": "assigned", "http_timeline": "assigned",
    "http_assign": "desk", "http_dismiss": "desk", "http_priority": "desk",
    "http_confidentiality": "desk", "http_reclassify": "desk",
    # Clusters of duplicates (issue 19): suggestions and links are the desk's.
    "http_suggested_links": "desk", "http_link": "desk", "http_refuse_link": "desk",
    "http_acknowledge": "assigned", "http_reject": "assigned", "http_respond": "assigned",
    # Evidence: the desk, or an assigned agency unless the complaint is confidential (then the desk
    # only: tests/interface/test_routing_service.py and tests/e2e/test_evidence.py).
    "http_evidence": "assigned", "http_evidence_file": "evidence",
}
CONSOLE_SCOPE = {
    "console_home": "signed_in", "console_queue": "desk", "console_inbox": "signed_in",
    "console_search": "signed_in", "console_complaint": "assigned", "console_action": "assigned",
    "console_evidence": "assigned", "console_clusters": "desk",
}
PUBLIC = {"health", "metrics", "console_login_form", "console_login", "console_logout", "console_static"}
BODIES = {"http_assign": {"agency_codes": ["dikes"], "note": "Coba"},
          "http_dismiss": {"reason": "Coba"}, "http_priority": {"priority": "urgent", "reason": "Coba"},
          "http_confidentiality": {"confidential": True, "reason": "Coba"},
          "http_reclassify": {"category": "kesehatan", "region_code": "5202", "reason": "Coba"},
          "http_link": {"primary": "00000000-0000-0000-0000-000000000000", "reason": "Coba"},
          "http_refuse_link": {"primary": "00000000-0000-0000-0000-000000000000"},
          "http_reject": {"reason": "Coba"}, "http_respond": {"text": "Coba", "resolved": False}}


def test_every_routing_route_has_a_declared_scope():
    names = {name for _method, _url, name in http_routes(RoutingService)}
    assert names == set(API_SCOPE) | set(CONSOLE_SCOPE) | PUBLIC, \
        "a new routing endpoint needs its access rule here (and so a scoping test)"


def api_routes():
    return [pytest.param(m, u, n, id=n) for m, u, n in http_routes(RoutingService) if n in API_SCOPE]


def call(platform, method, url, complaint_id, token=None, agency_code="dpupr", name=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = fill(url, **{p: {"complaint_id": complaint_id, "agency_code": agency_code, "digest": "0" * 64}[p]
                        for p in params(url)})
    return requests.request(method, f"{platform.url('routing')}{path}", json=BODIES.get(name), headers=headers,
                            timeout=TIMEOUT)


@pytest.mark.parametrize("method, url, name", api_routes())
def test_api_without_a_valid_token_is_401(platform, road, method, url, name):
    events_before = count(platform, "routing", "events")
    for token in (None, "", "not-a-token", TOKENS["dpupr"] + "x", TOKENS["dpupr"].upper(),
                  hashlib.sha256(TOKENS["dpupr"].encode()).hexdigest()):   # the stored hash is no token
        answer = call(platform, method, url, road["complaint_id"], token, name=name)
        assert answer.status_code == 401, (token, answer.status_code)
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    path = fill(url, **{p: road["complaint_id"] if p == "complaint_id" else "dpupr" for p in params(url)})
    basic = requests.request(method, f"{platform.url('routing')}{path}",
                             auth=("dpupr", TOKENS["dpupr"]), timeout=TIMEOUT)
    assert basic.status_code == 401
    assert count(platform, "routing", "events") == events_before


@pytest.mark.parametrize("method, url, name", api_routes())
def test_api_scoping(platform, road, method, url, name):
    scope = API_SCOPE[name]
    events_before = count(platform, "routing", "events")
    outsider = call(platform, method, url, road["complaint_id"], TOKENS["dikes"], agency_code="dpupr", name=name)
    if scope == "any":
        assert outsider.status_code == 200
        return
    # Another agency (Dinas Kesehatan) on Dinas PUPR's complaint or list, or a desk-only action.
    # A complaint that is not its own is answered as an unknown one (404), a list or action it may
    # not use with 403.
    expected = 404 if scope in ("assigned", "evidence") else 403
    assert outsider.status_code == expected, (name, outsider.status_code, outsider.text[:200])
    assert count(platform, "routing", "events") == events_before
    if scope == "desk":
        assigned = call(platform, method, url, road["complaint_id"], TOKENS["dpupr"], name=name)
        assert assigned.status_code == 403, "an agency may not use a desk action, even on its own complaint"
    if scope == "evidence":
        # Past the access check for the agency and the desk: this complaint has no such evidence.
        for allowed in ("dpupr", DESK):
            assert call(platform, method, url, road["complaint_id"], TOKENS[allowed], name=name).status_code == 404
    if scope in ("assigned", "own_agency") and method == "GET":
        own = call(platform, method, url, road["complaint_id"], TOKENS["dpupr"], name=name)
        assert own.status_code == 200
        desk = call(platform, method, url, road["complaint_id"], TOKENS[DESK], name=name)
        assert desk.status_code == 200


def test_unknown_complaint_is_not_distinguishable_without_a_token(platform, road):
    known = requests.get(f"{platform.url('routing')}/api/complaints/{road['complaint_id']}", timeout=TIMEOUT)
    unknown = requests.get(f"{platform.url('routing')}/api/complaints/00000000-0000-0000-0000-000000000000",
                           timeout=TIMEOUT)
    assert known.status_code == unknown.status_code == 401 and known.text == unknown.text


def console_session(platform, agency: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    form = session.get(f"{platform.url('routing')}/console/login", timeout=TIMEOUT)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed_in = session.post(f"{platform.url('routing')}/console/login", timeout=TIMEOUT, allow_redirects=False,
                             data={"csrf_token": csrf, "nama": "Uji", "token": TOKENS[agency]})
    assert signed_in.status_code == 303, signed_in.text[:300]
    page = session.get(f"{platform.url('routing')}/console/", timeout=TIMEOUT)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return session, csrf


def console_routes():
    return [pytest.param(m, u, n, id=n) for m, u, n in http_routes(RoutingService) if n in CONSOLE_SCOPE]


@pytest.mark.parametrize("method, url, name", console_routes())
def test_console_scoping(platform, road, method, url, name):
    scope = CONSOLE_SCOPE[name]
    path = fill(url, **{p: {"complaint_id": road["complaint_id"], "action": "terima", "digest": "0" * 64}[p]
                        for p in params(url)})
    target = f"{platform.url('routing')}{path}"
    events_before = count(platform, "routing", "events")
    # Not signed in: the sign-in page (the console's 401), and nothing recorded.
    anonymous = requests.Session()
    anonymous.get(f"{platform.url('routing')}/console/login", timeout=TIMEOUT)
    answer = anonymous.request(method, target, timeout=TIMEOUT, allow_redirects=False, data={})
    assert answer.status_code in (303, 403), answer.status_code    # POST without a session's CSRF: 403
    if answer.status_code == 303:
        assert answer.headers["Location"].endswith("/console/login")
    outsider, csrf = console_session(platform, "dikes")
    answer = outsider.request(method, target, timeout=TIMEOUT, allow_redirects=False,
                              data={"csrf_token": csrf} if method == "POST" else None)
    if scope == "signed_in":
        assert answer.status_code in (200, 303)
    else:   # another agency's complaint: as an unknown one
        assert answer.status_code == (404 if scope == "assigned" else 403), (name, answer.status_code)
    assert count(platform, "routing", "events") == events_before


# -- tokens stored hashed ---------------------------------------------------------------------------
def test_tokens_are_stored_only_hashed(platform):
    with platform.rpc() as rpc:
        issued = rpc.routing.issue_token("dikes", "admin@diskominfotik")["token"]
    assert requests.get(f"{platform.url('routing')}/api/me", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {issued}"}).json()["agency_code"] == "dikes"
    files = [p for p in platform.data_dir.iterdir() if p.name.startswith("routing.db")]
    stored = b"".join(p.read_bytes() for p in files)
    for token in [*TOKENS.values(), issued]:
        assert token.encode() not in stored, "a plain token is in routing's database files"
        assert hashlib.sha256(token.encode()).hexdigest().encode() in stored   # its hash is what is kept
    # Nor in any log of the run.
    for log in platform.logs_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(token in text for token in [*TOKENS.values(), issued]), log.name
