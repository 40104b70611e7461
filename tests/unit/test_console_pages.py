"""The console's pages over a real routing ``Workflow`` on SQLite (no broker): every other page
redirects to sign-in without a session; the cookie's flags; a POST without the session's CSRF
token is refused with a plain message and records nothing; sign-in rotates the session; the desk
routes from its queue and the agency sees only its complaints (another agency gets 403); a
preview records nothing; errors come back in plain words; revoking a token ends its sessions."""
from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie

import pytest
from werkzeug.test import EnvironBuilder

from shared.core.consumer import EventConsumer
from shared.core.events import isoformat_utc, utc_now
from services.routing.adapters import repository
from services.routing.adapters.console.pages import Console
from services.routing.adapters.console.session import COOKIE_NAME, SessionCodec
from services.routing.service import RoutingHandlers, build_store, workflow_for

DESK = "diskominfotik"
TOKENS = {DESK: "desk-token-123", "dpupr": "dpupr-token-123", "pemkab-loteng": "loteng-token-123",
          "inspektorat": "inspektorat-token-123"}


@pytest.fixture
def routing(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTING_TOKENS", ",".join(f"{c}:{t}" for c, t in TOKENS.items()))
    for name in ("ROUTING_SLA_SECONDS", "ROUTING_AGENCIES_FILE", "ROUTING_RULES_FILE"):
        monkeypatch.delenv(name, raising=False)
    store = build_store(f"sqlite:///{tmp_path / 'routing.db'}")
    store.database.create_all()
    workflow = workflow_for(store)
    consumer = EventConsumer(store.database, store.quarantine, RoutingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    return workflow, consumer, Console(workflow, SessionCodec(b"k" * 32))


_positions = iter(range(1, 1_000_000))


def file(consumer, text, category="lainnya", region=None, attachments=(), confidential=False) -> str:
    complaint_id = str(uuid.uuid4())
    now = isoformat_utc(utc_now())
    assert consumer.handle({
        "event_id": str(uuid.uuid4()), "event_type": "ComplaintFiled", "schema_version": 1,
        "source": "intake", "position": next(_positions), "complaint_id": complaint_id, "version": 1,
        "occurred_at": now, "data": {
            "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "api", "filed_at": now,
            "text": text, "attachments": list(attachments), "category": category, "region_code": region,
            "priority": "normal", "reasons": {"category": ["ijazah"], "region": [], "priority": []},
            "confidential": confidential, "reply_to": None, "last_citizen_message_at": None,
            "external_ref": None}}, "intake") == "handled"
    return complaint_id


class Browser:
    """Calls the console's handlers the way the @http entrypoints do, keeping the cookie."""

    def __init__(self, console: Console):
        self.console = console
        self.cookie: str | None = None
        self.last_set_cookie = ""

    def call(self, handler: str, method: str, path: str, *args, data=None, headers=None, query=None):
        all_headers = dict(headers or {})
        if self.cookie:
            all_headers["Cookie"] = f"{COOKIE_NAME}={self.cookie}"
        request = EnvironBuilder(method=method, path=path, data=data, headers=all_headers,
                                 query_string=query).get_request()
        response = getattr(self.console, handler)(request, *args)
        for header in response.headers.getlist("Set-Cookie"):
            self.last_set_cookie = header
            self.cookie = SimpleCookie(header)[COOKIE_NAME].value
        return response

    def csrf(self, response) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)

    def sign_in(self, agency: str, name: str = "Petugas Uji"):
        form = self.call("login_form", "GET", "/console/login")
        return self.call("login", "POST", "/console/login",
                         data={"csrf_token": self.csrf(form), "token": TOKENS[agency], "nama": name})


def text(response) -> str:
    return response.get_data(as_text=True)


def test_pages_redirect_to_sign_in_without_a_session(routing):
    _workflow, consumer, console = routing
    complaint_id = file(consumer, "Ijazah saya ditahan sekolah")
    browser = Browser(console)
    for handler, path, args in [("home", "/console/", ()), ("queue", "/console/antrian", ()),
                                ("inbox", "/console/kotak-masuk", ()), ("search", "/console/cari", ()),
                                ("complaint", f"/console/aduan/{complaint_id}", (complaint_id,))]:
        response = browser.call(handler, "GET", path, *args)
        assert (response.status_code, response.headers["Location"]) == (303, "/console/login"), handler


def test_cookie_flags_and_the_secure_setting(routing):
    workflow, _consumer, console = routing
    browser = Browser(console)
    browser.call("login_form", "GET", "/console/login")
    flags = browser.last_set_cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/console" in flags
    assert "secure" not in flags
    browser = Browser(console)
    browser.call("login_form", "GET", "/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "; secure" in browser.last_set_cookie.lower()
    always = Browser(Console(workflow, SessionCodec(b"k" * 32), secure_mode="true"))
    always.call("login_form", "GET", "/console/login")
    assert "; secure" in always.last_set_cookie.lower()


def test_sign_in_needs_the_csrf_token_a_known_token_and_a_name(routing):
    _workflow, _consumer, console = routing
    browser = Browser(console)
    form = browser.call("login_form", "GET", "/console/login")
    anonymous_cookie = browser.cookie
    refused = browser.call("login", "POST", "/console/login", data={"token": TOKENS[DESK], "nama": "Sari"})
    assert refused.status_code == 403 and "token keamanan (CSRF)" in text(refused)
    wrong = browser.call("login", "POST", "/console/login",
                         data={"csrf_token": browser.csrf(form), "token": "not-a-token", "nama": "Sari"})
    assert wrong.status_code == 401 and "Token tidak dikenal" in text(wrong)
    nameless = browser.call("login", "POST", "/console/login",
                            data={"csrf_token": browser.csrf(form), "token": TOKENS[DESK], "nama": ""})
    assert nameless.status_code == 400
    signed_in = browser.call("login", "POST", "/console/login",
                             data={"csrf_token": browser.csrf(form), "token": TOKENS[DESK], "nama": "Sari"})
    assert (signed_in.status_code, signed_in.headers["Location"]) == (303, "/console/")
    assert browser.cookie != anonymous_cookie
    assert TOKENS[DESK] not in browser.cookie
    assert browser.call("home", "GET", "/console/").headers["Location"] == "/console/antrian"


def test_desk_routes_from_its_queue_and_agencies_see_only_their_complaints(routing):
    workflow, consumer, console = routing
    complaint_id = file(consumer, "Ijazah saya ditahan sekolah, mohon dibantu",
                        attachments=[{"type": "image", "url": "https://example.org/foto.jpg"},
                                     {"type": "file", "url": "javascript:alert(1)"}])
    desk = Browser(console)
    desk.sign_in(DESK, "Sari")
    queue = desk.call("queue", "GET", "/console/antrian")
    tracking_code = workflow.get_complaint(complaint_id)["tracking_code"]
    assert queue.status_code == 200 and tracking_code in text(queue) and "Belum ditriase" in text(queue)
    page = desk.call("complaint", "GET", f"/console/aduan/{complaint_id}", complaint_id)
    assert 'href="https://example.org/foto.jpg"' in text(page) and "ijazah" in text(page)
    assert 'href="javascript:' not in text(page)

    # Without the CSRF token: refused, nothing recorded.
    refused = desk.call("act", "POST", "/x", complaint_id, "teruskan", None,
                        data={"utama": "dpupr", "catatan": "Ruas jalan provinsi"})
    assert refused.status_code == 403 and "CSRF" in text(refused)
    assert workflow.get_complaint(complaint_id)["status"] == "triage"

    # A blank note comes back in plain words.
    blank = desk.call("act", "POST", "/x", complaint_id, "teruskan", None,
                      data={"csrf_token": desk.csrf(page), "utama": "dpupr", "catatan": " "})
    assert blank.status_code == 400 and "Catatan: tidak boleh kosong" in text(blank)

    routed = desk.call("act", "POST", "/x", complaint_id, "teruskan", None,
                       data={"csrf_token": desk.csrf(page), "utama": "dpupr",
                             "koordinasi": ["pemkab-loteng", "dpupr"], "catatan": "Urusan sekolah"})
    assert routed.status_code == 303
    complaint = workflow.get_complaint(complaint_id)
    assert (complaint["lead_agencies"], complaint["coordinating_agencies"]) == (["dpupr"], ["pemkab-loteng"])
    assert complaint["decided_by"] == "operator:diskominfotik:Sari"

    agency = Browser(console)
    agency.sign_in("dpupr", "Budi")
    inbox = agency.call("inbox", "GET", "/console/kotak-masuk")
    assert tracking_code in text(inbox)
    page = agency.call("complaint", "GET", f"/console/aduan/{complaint_id}", complaint_id)
    preview = agency.call("act", "POST", "/x", complaint_id, "jawab", None,
                          data={"csrf_token": agency.csrf(page), "jawaban": "Sudah kami hubungi sekolahnya.",
                                "aksi": "pratinjau"})
    assert preview.status_code == 200 and "Jawaban dari Dinas" in text(preview)
    assert workflow.get_complaint(complaint_id)["progress"]["dpupr"]["answered"] is False
    # Acknowledge, then answer and resolve; resolving twice is refused in plain words.
    for action, data in [("terima", {}), ("jawab", {"jawaban": "Selesai.", "aksi": "selesai"})]:
        assert agency.call("act", "POST", "/x", complaint_id, action, None,
                           data={"csrf_token": agency.csrf(page), **data}).status_code == 303
    again = agency.call("act", "POST", "/x", complaint_id, "jawab", None,
                        data={"csrf_token": agency.csrf(page), "jawaban": "Lagi.", "aksi": "selesai"})
    assert again.status_code == 409 and "tidak ada yang dicatat" in text(again)

    other = Browser(console)
    other.sign_in("pemkab-loteng")  # coordinating: may see it
    assert other.call("complaint", "GET", "/", complaint_id).status_code == 200
    desk_only = other.call("act", "POST", "/x", complaint_id, "teruskan", None,
                           data={"csrf_token": other.csrf(other.call("inbox", "GET", "/")),
                                 "utama": "pemkab-loteng", "catatan": "x"})
    assert desk_only.status_code == 403
    contact = other.call("act", "POST", "/x", complaint_id, "kontak", None,
                         data={"csrf_token": other.csrf(other.call("inbox", "GET", "/")),
                               "alasan": "Ingin menghubungi pelapor"})
    assert contact.status_code == 403  # the reporter's contact is for the desk only
    stranger = file(consumer, "Ijazah adik saya juga ditahan")
    assert other.call("complaint", "GET", "/", stranger).status_code == 404   # not its own: as unknown
    assert agency.call("search", "GET", "/", query={"kode": workflow.get_complaint(stranger)["tracking_code"]}
                       ).headers["Location"].startswith("/console/kotak-masuk?kode=")


def test_agencies_see_no_attachment_of_a_confidential_complaint(routing):
    workflow, consumer, console = routing
    complaint_id = file(consumer, "Diminta bayar untuk surat keterangan di kantor desa", "pungli", "5203",
                        attachments=[{"type": "image", "url": "https://example.org/kuitansi.jpg"}],
                        confidential=True)
    complaint = workflow.get_complaint(complaint_id)
    assert "inspektorat" in complaint["lead_agencies"], complaint
    agency = Browser(console)
    agency.sign_in("inspektorat")
    page = text(agency.call("complaint", "GET", "/", complaint_id))
    assert "Rahasia" in page and "kuitansi.jpg" not in page and "Kontak pelapor" not in page
    desk = Browser(console)
    desk.sign_in(DESK)
    page = text(desk.call("complaint", "GET", "/", complaint_id))
    assert "kuitansi.jpg" in page and "Kontak pelapor" in page


def test_revoking_a_token_ends_its_sessions(routing):
    workflow, _consumer, console = routing
    browser = Browser(console)
    browser.sign_in("dpupr")
    assert browser.call("inbox", "GET", "/console/kotak-masuk").status_code == 200
    with workflow.database.transaction() as tx:
        repository.sync_env_tokens(tx.connection, [(DESK, TOKENS[DESK])], utc_now())
    response = browser.call("inbox", "GET", "/console/kotak-masuk")
    assert (response.status_code, response.headers["Location"]) == (303, "/console/login")


def test_static_files_are_served_from_the_console_folder_only(routing):
    _workflow, _consumer, console = routing
    browser = Browser(console)
    css = browser.call("static", "GET", "/", "console.css")
    assert css.status_code == 200 and css.content_type.startswith("text/css")
    assert browser.call("static", "GET", "/", "../../service.py").status_code == 404


def test_the_desk_marks_and_unmarks_confidentiality_with_a_reason(routing):
    workflow, consumer, console = routing
    complaint_id = file(consumer, "Ada pungutan di kantor desa untuk surat keterangan")
    desk = Browser(console)
    desk.sign_in(DESK, "Sari")
    page = desk.call("complaint", "GET", f"/console/aduan/{complaint_id}", complaint_id)
    assert "Jadikan rahasia" in text(page)
    reasonless = desk.call("act", "POST", "/x", complaint_id, "rahasia", None,
                           data={"csrf_token": desk.csrf(page), "rahasia": "ya", "alasan": " "})
    assert reasonless.status_code == 400 and workflow.get_complaint(complaint_id)["confidential"] is False
    marked = desk.call("act", "POST", "/x", complaint_id, "rahasia", None,
                       data={"csrf_token": desk.csrf(page), "rahasia": "ya",
                             "alasan": "Menyebut pungutan oleh petugas"})
    assert marked.status_code == 303
    complaint = workflow.get_complaint(complaint_id)
    assert complaint["confidential"] is True and complaint["lifecycle"]["confidential"] is True
    page = desk.call("complaint", "GET", f"/console/aduan/{complaint_id}", complaint_id)
    assert "Cabut status rahasia" in text(page) and "Dijadikan rahasia" in text(page)
    agency = Browser(console)
    agency.sign_in("dpupr", "Budi")
    refused = agency.call("act", "POST", "/x", complaint_id, "rahasia", None,
                          data={"csrf_token": agency.csrf(agency.call("inbox", "GET", "/")),
                                "rahasia": "tidak", "alasan": "x"})
    assert refused.status_code == 403 and workflow.get_complaint(complaint_id)["confidential"] is True
    unmarked = desk.call("act", "POST", "/x", complaint_id, "rahasia", None,
                         data={"csrf_token": desk.csrf(page), "rahasia": "tidak",
                               "alasan": "Biaya resmi sesuai perdes"})
    assert unmarked.status_code == 303 and workflow.get_complaint(complaint_id)["confidential"] is False
    timeline = [entry["event_type"] for entry in workflow.timeline(complaint_id)]
    assert timeline.count("ComplaintConfidentialityChanged") == 2
