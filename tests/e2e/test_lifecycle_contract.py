"""One truth per complaint, across the real services over RabbitMQ: scripted histories, and after
every step the citizen (the status reply the Graph API sandbox receives for ``CEK <code>``, and
the messages sent so far), the public status page, Open311, the desk console,
``routing.get_complaint`` and ``reporting.monthly_summary`` agree on the status and on
confidentiality (see docs/lifecycle.md)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types
from sandbox.control import meta_saw
from shared.core.events import types as ev
from shared.core.reference import CLOSED_STATUSES, OPEN_STATUSES, PUBLIC_STATUSES, STATUS_LABELS, in_wita
from tests.support import facebook as fb
from tests.support.platform import DEV_PAGE_ID, ROOT, Platform, wait_for

DESK = "diskominfotik"
TOKENS = {DESK: "desk-lifecycle-token-1", "dpupr": "dpupr-lifecycle-token-1",
          "polda-ntb": "polda-lifecycle-token-1"}
TWO_LEADS_RULE = {
    "id": "jembatan-dan-pungutan", "when": {"keywords_any": ["jembatan gantung"]},
    "lead": ["dpupr", "polda-ntb"], "coordinating": ["kejati-ntb"],
    "reason": "Jembatan gantung dan pungutan penyeberangan: Dinas PUPR dan Polda NTB bersama.",
}


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("lifecycle")
    # One YAML edit away in production: a rule naming two lead agencies.
    shipped = yaml.safe_load((ROOT / "services/routing/data/rules.yaml").read_text(encoding="utf-8"))
    rules_file = Path(data_dir) / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"rules": [TWO_LEADS_RULE] + shipped["rules"]},
                                         allow_unicode=True), encoding="utf-8")
    running = Platform(amqp_uri, data_dir, extra_env={
        "ROUTING_TOKENS": ",".join(f"{code}:{token}" for code, token in TOKENS.items()),
        "ROUTING_RULES_FILE": str(rules_file),
        "ROUTING_SLA_SECONDS": "urgent=4,important=4,normal=4",
        "ROUTING_SLA_CHECK_SECONDS": "1",
        "INTAKE_BUBBLE_SECONDS": "120",
        "REPORTING_STATUS_RATE_PER_MINUTE": "0",
        "OPEN311_RATE_PER_MINUTE": "0",
    }).start_all()
    yield running
    running.stop_all()


class Citizen:
    """A citizen writing to the development Page on Messenger, and what they receive."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.psid = fb.new_psid()

    def says(self, text: str, at_ms: int | None = None) -> None:
        """``at_ms``: Meta's timestamp of the message (now when None)."""
        body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, self.psid, text, at_ms)))
        meta_saw(self.platform.sandbox_url, body)  # the sandbox, like Meta, knows who wrote
        response = fb.signed_post(f"{self.platform.url('intake')}/webhooks/facebook", body)
        assert response.status_code == 200

    def received(self) -> list[str]:
        return [call["text"] or "" for call in self.platform.sandbox_calls(status=200)
                if (call.get("recipient") or {}).get("id") == self.psid]

    def last_told(self) -> str | None:
        """The status word of the latest message that tells one."""
        return next((word for word in map(told, reversed(self.received())) if word), None)

    def asks_status(self, tracking_code: str) -> str:
        """``CEK <code>``: the word the platform answers with."""
        before = len(self.received())
        self.says(f"CEK {tracking_code}")
        reply = wait_for(lambda: next((text for text in self.received()[before:]
                                       if text.startswith(f"Status aduan {tracking_code}")), None),
                         30, message=f"status reply for {tracking_code}")
        return re.match(rf"Status aduan {tracking_code}: (\w+)\.", reply).group(1)


class Desk:
    """The desk's console session (real HTTP, CSRF and cookie)."""

    def __init__(self, platform: Platform):
        self.base = platform.url("routing")
        self.session = requests.Session()
        form = self.session.get(f"{self.base}/console/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = self.session.post(f"{self.base}/console/login", timeout=10, data={
            "csrf_token": token, "token": TOKENS[DESK], "nama": "Sari"})
        assert signed_in.status_code in (200, 303)

    def page(self, complaint_id: str) -> str:
        response = self.session.get(f"{self.base}/console/aduan/{complaint_id}", timeout=10)
        assert response.status_code == 200
        return response.text


@pytest.fixture(scope="module")
def desk(platform):
    return Desk(platform)


#: Every complaint this module's platform was given (its own fresh databases): the monthly
#: report must count exactly these, each under the status routing gives it.
FILED: dict[str, dict] = {}


def file_by_messenger(platform, text: str, at_ms: int | None = None) -> tuple[Citizen, dict]:
    citizen = Citizen(platform)
    citizen.says(text, at_ms)

    def filed():
        with platform.rpc() as rpc:
            for event in rpc.intake.events_since(0, 1000):
                if event["event_type"] == ev.COMPLAINT_FILED and \
                        (event["data"]["reply_to"] or {}).get("psid") == citizen.psid:
                    return rpc.routing.get_complaint(event["complaint_id"])
        return None
    complaint = wait_for(filed, 30, message="complaint filed and known to routing")
    FILED[complaint["complaint_id"]] = complaint
    return citizen, complaint


def routed(platform, complaint_id: str) -> dict:
    def ready():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(complaint_id)
        return complaint if complaint["decided_by"] else None
    return wait_for(ready, 30, message="routed")


def agree(platform, desk: Desk, citizen: Citizen, complaint_id: str, status: str,
          confidential: bool, answers_shown: bool | None = None, secret: str | None = None) -> dict:
    """Everyone says ``status`` and ``confidential``; returns the public status answer."""
    with platform.rpc() as rpc:
        complaint = rpc.routing.get_complaint(complaint_id)
    code = complaint["tracking_code"]
    assert (complaint["public_status"], complaint["confidential"]) == (status, confidential)
    assert complaint["lifecycle"]["status"] == status

    def public_status():
        answer = requests.get(f"{platform.url('reporting')}/api/complaints/{code}", timeout=10)
        body = answer.json() if answer.status_code == 200 else {}
        return body if (body.get("status"), body.get("confidential")) == (status, confidential) else None
    public = wait_for(public_status, 30, message=f"public status {status} for {code}")
    assert public["open"] is (status in OPEN_STATUSES)
    if answers_shown is not None:
        texts = [answer["text"] for answer in public["answers"]]
        assert texts and all((text is not None) is answers_shown for text in texts)

    open311 = requests.get(f"{platform.url('intake')}/open311/v2/requests/{code}.json", timeout=10)
    if confidential:  # in no Open311 answer: its code answers as an unknown one does
        unknown = requests.get(f"{platform.url('intake')}/open311/v2/requests/NTB-00000-00000.json", timeout=10)
        assert (open311.status_code, open311.content) == (404, unknown.content)
    else:
        assert open311.status_code == 200
        [request] = open311.json()
        assert request["status"] == ("open" if status in OPEN_STATUSES else "closed")
    if secret is not None:  # an answer's words, shown only when the complaint is not confidential
        assert (secret in open311.text) is not confidential
        assert (secret in str(public)) is not confidential

    page = desk.page(complaint_id)
    assert f"<dt>Status publik</dt><dd>{STATUS_LABELS[status]}</dd>" in page
    assert ('class="badge secret">Rahasia' in page) is confidential

    # The monthly report of the complaint's own WITA filing month counts it, under its status.
    wait_for(lambda: report_agrees(platform, complaint), 30,
             message=f"monthly_summary counts {code} as {status}")

    # The citizen: never told of a closure that has not happened, told of one that has, and the
    # status word they were last told (their latest message, after asking) is the public one.
    pushed = [told(text) for text in citizen.received()]
    closed_told = [word for word in pushed if word in CLOSED_STATUSES]
    if status in CLOSED_STATUSES:
        wait_for(lambda: status in [told(text) for text in citizen.received()], 30,
                 message=f"the citizen is told {status}")
    else:
        assert not closed_told, f"the citizen was told {closed_told[-1]} while {status}"
    assert citizen.asks_status(code) == status
    latest = wait_for(lambda: citizen.last_told(), 30, message="a status in the latest message")
    assert latest == status
    return public


#: What each message the citizen can receive tells them of the status (messages.yaml).
TOLD = [
    (re.compile(r"^Status aduan \S+: (\w+)\."), None),       # status_full / status_public
    (re.compile(r"\(status: (\w+)\)"), None),                 # dismissed, comment_public_update
    (re.compile(r"telah dinyatakan selesai"), "selesai"),     # resolved
    (re.compile(r"ditutup karena sama dengan aduan"), "ditolak"),  # dismissed_duplicate
    (re.compile(r"telah (diverifikasi dan )?diteruskan kepada"), "disetujui"),  # routed
    (re.compile(r"telah kami terima dengan kode"), "diterima"),  # filed_ack
]


def told(text: str) -> str | None:
    """The status word a message tells the citizen, or None for one that tells none."""
    for pattern, word in TOLD:
        found = pattern.search(text)
        if found:
            status = word or found.group(1)
            assert status in PUBLIC_STATUSES, text
            return status
    return None


def report_agrees(platform, complaint: dict) -> bool:
    """``reporting.monthly_summary`` of the complaint's WITA filing month counts every complaint
    filed that month, and as resolved exactly those routing calls *selesai*."""
    month = filing_month(complaint)
    mine = [cid for cid, filed in FILED.items() if filing_month(filed) == month]
    with platform.rpc() as rpc:
        statuses = [rpc.routing.get_complaint(cid)["public_status"] for cid in mine]
        summary = rpc.reporting.monthly_summary(*month)
    return (summary["total"], summary["resolved"]) == (len(mine), statuses.count("selesai"))


def filing_month(complaint: dict) -> tuple[int, int]:
    filed = in_wita(datetime.fromisoformat(complaint["filed_at"].replace("Z", "+00:00")))
    return filed.year, filed.month


def report_counts(platform, complaint: dict) -> tuple[int, int]:
    """The monthly report of the complaint's own filing month. The report's months are WITA
    months, so near midnight UTC's month is the wrong one (this failed in CI at 00:03 WITA on
    1 December)."""
    filed = in_wita(datetime.fromisoformat(complaint["filed_at"].replace("Z", "+00:00")))
    with platform.rpc() as rpc:
        summary = rpc.reporting.monthly_summary(filed.year, filed.month)
    return summary["total"], summary["resolved"]


# --- the scripted histories ------------------------------------------------------------------

def test_single_agency_cycle(platform, desk):
    citizen, complaint = file_by_messenger(
        platform, "Jalan kabupaten di Praya Lombok Tengah rusak parah, banyak lubang")
    cid = complaint["complaint_id"]
    complaint = routed(platform, cid)
    assert complaint["lead_agencies"] == ["pemkab-loteng"]
    agree(platform, desk, citizen, cid, "disetujui", False)
    with platform.rpc() as rpc:
        rpc.routing.acknowledge(cid, "pemkab-loteng", "eka")
    agree(platform, desk, citizen, cid, "diproses", False)
    with platform.rpc() as rpc:
        rpc.routing.respond(cid, "pemkab-loteng", "Jalan sudah ditambal kemarin.", True, "eka")
    agree(platform, desk, citizen, cid, "selesai", False, answers_shown=True,
          secret="Jalan sudah ditambal kemarin.")
    wait_for(lambda: any("telah dinyatakan selesai" in text for text in citizen.received()), 30,
             message="the resolved message")


def test_two_leads_stay_diproses_until_the_last_one_resolves(platform, desk):
    citizen, complaint = file_by_messenger(
        platform, "Jembatan gantung di desa kami putus, dan petugas minta uang untuk menyeberang")
    cid = complaint["complaint_id"]
    complaint = routed(platform, cid)
    assert (complaint["lead_agencies"], complaint["coordinating_agencies"]) == (
        ["dpupr", "polda-ntb"], ["kejati-ntb"])
    total_before, resolved_before = report_counts(platform, complaint)
    with platform.rpc() as rpc:
        rpc.routing.respond(cid, "dpupr", "Jembatan sedang kami perbaiki, selesai bagian kami.", True, "budi")
    agree(platform, desk, citizen, cid, "diproses", complaint["confidential"])
    assert not any("telah dinyatakan selesai" in text for text in citizen.received())
    assert report_counts(platform, complaint)[1] == resolved_before
    with platform.rpc() as rpc:
        rpc.routing.respond(cid, "polda-ntb", "Petugas yang meminta uang sudah ditindak.", True, "agus")
    agree(platform, desk, citizen, cid, "selesai", complaint["confidential"])
    wait_for(lambda: report_counts(platform, complaint)[1] == resolved_before + 1, 30, message="report counts it")
    wait_for(lambda: any("telah dinyatakan selesai" in text for text in citizen.received()), 30,
             message="the resolved message")


def test_hand_back_then_the_desk_reroutes(platform, desk):
    citizen, complaint = file_by_messenger(platform, "Jalan kabupaten di Praya Lombok Tengah ambles dekat pasar")
    cid = complaint["complaint_id"]
    routed(platform, cid)
    with platform.rpc() as rpc:
        rpc.routing.reject(cid, "pemkab-loteng", "Ruas ini jalan provinsi, bukan wewenang kami.", "eka")
    public = agree(platform, desk, citizen, cid, "diproses", False)
    assert public["agencies"] == []
    with platform.rpc() as rpc:
        assert rpc.routing.get_complaint(cid)["at_desk"] is True
        rpc.routing.assign(cid, ["dpupr"], "Jalan provinsi", "sari")
    agree(platform, desk, citizen, cid, "disetujui", False)


def test_escalation_after_a_breach_changes_no_status(platform, desk):
    citizen, complaint = file_by_messenger(
        platform, "Jalan kabupaten di Praya Lombok Tengah berlubang di depan sekolah")
    cid = complaint["complaint_id"]
    routed(platform, cid)

    def escalated():
        with platform.rpc() as rpc:
            return rpc.routing.get_complaint(cid)["escalated"] or None
    assert "first_response" in wait_for(escalated, 30, message="escalation")
    agree(platform, desk, citizen, cid, "disetujui", False)
    assert "Terlewati" in desk.page(cid)


def test_dismissal_as_a_duplicate(platform, desk):
    first, original = file_by_messenger(platform, "Sampah menumpuk di pasar Cakranegara Mataram tidak diangkut")
    citizen, complaint = file_by_messenger(platform, "Sampah di pasar Cakranegara Mataram belum diangkut juga")
    cid = complaint["complaint_id"]
    routed(platform, cid)
    with platform.rpc() as rpc:
        rpc.routing.dismiss(cid, "Sama dengan aduan sebelumnya", "sari", original["tracking_code"])
    agree(platform, desk, citizen, cid, "ditolak", False)
    wait_for(lambda: any(original["tracking_code"] in text and "ditutup" in text
                         for text in citizen.received()), 30, message="the duplicate message")
    del first


def test_a_later_bubble_makes_it_confidential_and_the_desk_unmarks_it(platform, desk):
    citizen, complaint = file_by_messenger(platform, "Selamat pagi, mau lapor")
    cid = complaint["complaint_id"]
    assert complaint["confidential"] is False
    citizen.says("petugas desa minta 300rb untuk KTP")

    def confidential():
        with platform.rpc() as rpc:
            found = rpc.routing.get_complaint(cid)
        return found if found["confidential"] else None
    wait_for(confidential, 30, message="confidential after the second bubble")
    routed(platform, cid)
    # Whichever way routing first sent it (the first bubble alone to the desk, or the levy to
    # Inspektorat by the pungli rule), the desk hands it to the task force's head, Polda NTB
    # (a routing no rule makes, so the re-route is never refused): the same history on every run.
    with platform.rpc() as rpc:
        rpc.routing.assign(cid, ["polda-ntb", "inspektorat"], "Pungli: Satgas Saber Pungli", "sari")
    agree(platform, desk, citizen, cid, "disetujui", True)
    with platform.rpc() as rpc:
        lifecycle = rpc.routing.get_complaint(cid)["lifecycle"]
        assert (lifecycle["lead_agencies"], lifecycle["coordinating_agencies"]) == (["polda-ntb"], ["inspektorat"])
        rpc.routing.respond(cid, "polda-ntb", "Kami telah memeriksa kantor desa tersebut.", False, "rini")
    status = "diproses"
    secret = "Kami telah memeriksa kantor desa tersebut."
    agree(platform, desk, citizen, cid, status, True, answers_shown=False, secret=secret)
    assert not any("Inspektorat" in text or "Polda" in text for text in citizen.received())

    with platform.rpc() as rpc:
        rpc.routing.set_confidential(cid, False, "Biaya resmi sesuai peraturan desa", "sari")
    agree(platform, desk, citizen, cid, status, False, answers_shown=True, secret=secret)
    with platform.rpc() as rpc:
        events = [e for e in rpc.routing.events_since(0, 1000) if e["complaint_id"] == cid]
    changes = [(e["data"]["confidential"], e["data"]["actor"]) for e in events
               if e["event_type"] == "ComplaintConfidentialityChanged"]
    assert changes == [(True, "intake:classifier"), (False, "sari")]


def test_a_levy_told_after_the_first_burst_makes_it_confidential(platform, desk):
    """Any text of the complaint counts: a message long after the first burst (intake's
    ``CitizenMessageReceived``, not an amendment) reporting a levy makes the complaint
    confidential everywhere, recorded by routing as the classifier's decision."""
    ten_minutes_ago = fb.now_ms() - 600_000   # the first burst ended long ago (INTAKE_BUBBLE_SECONDS=120)
    citizen, complaint = file_by_messenger(
        platform, "Jalan kabupaten di Praya Lombok Tengah rusak dekat kantor desa", ten_minutes_ago)
    cid = complaint["complaint_id"]
    assert routed(platform, cid)["confidential"] is False
    # (No CEK before it: a status question keeps the first burst's clock going.)
    citizen.says("Waktu saya urus KTP di kantor desa itu, petugas minta uang 300rb, katanya pungutan")

    def confidential():
        with platform.rpc() as rpc:
            found = rpc.routing.get_complaint(cid)
        return found if found["confidential"] else None
    wait_for(confidential, 30, message="confidential after a later message")
    with platform.rpc() as rpc:
        intake_events = [e for e in rpc.intake.events_since(0, 1000) if e["complaint_id"] == cid]
        routing_events = [e for e in rpc.routing.events_since(0, 1000) if e["complaint_id"] == cid]
    assert [e["data"]["levy_reported"] for e in intake_events
            if e["event_type"] == ev.CITIZEN_MESSAGE_RECEIVED] == [True]
    assert not [e for e in intake_events if e["event_type"] == ev.COMPLAINT_AMENDED]
    assert [(e["data"]["confidential"], e["data"]["actor"]) for e in routing_events
            if e["event_type"] == ev.COMPLAINT_CONFIDENTIALITY_CHANGED] == [(True, "intake:classifier")]
    agree(platform, desk, citizen, cid, "disetujui", True)
