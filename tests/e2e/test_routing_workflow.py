"""Routing against the real broker, intake and routing as separate processes: complaints filed
through intake are routed by rule (sample of categories and levels, desk fallback, cross-level
coordination); the agency cycle, reject / re-route and dismiss over RPC and over the HTTP API;
token scoping; refused actions that record nothing."""
from __future__ import annotations

import pytest
import requests

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types
from shared.core.errors import Forbidden, IllegalAction, NotFound, ValidationFailed
from tests.support.platform import Platform, wait_for

DESK = "diskominfotik"
TOKENS = {
    DESK: "desk-secret-token-1",
    "dpupr": "dpupr-secret-token-1",
    "pemkab-loteng": "loteng-secret-token-1",
    "bpjn-ntb": "bpjn-secret-token-1",
}


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("routing"), services=("intake", "routing"),
                       with_sandbox=False, extra_env={
                           "ROUTING_TOKENS": ",".join(f"{code}:{token}" for code, token in TOKENS.items()),
                       }).start_all()
    yield running
    running.stop_all()


def file_complaint(platform, text, category=None, region=None) -> dict:
    payload = {"text": text, "channel": "api"}
    if category:
        payload["category"] = category
    if region:
        payload["location"] = {"region_code": region}
    with platform.rpc() as rpc:
        return rpc.intake.file_complaint(payload)


def routed(platform, complaint_id) -> dict:
    def ready():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(complaint_id)
        return complaint if complaint["decided_by"] else None
    return wait_for(ready, 30, message=f"routing of {complaint_id}")


def routing_log(platform, complaint_id=None) -> list[dict]:
    with platform.rpc() as rpc:
        events = rpc.routing.events_since(0, 1000)
    return [e for e in events if complaint_id is None or e["complaint_id"] == complaint_id]


def api(platform, method, path, agency=None, json=None, token=None, actor=None):
    headers = {}
    if agency or token:
        headers["Authorization"] = f"Bearer {token or TOKENS[agency]}"
    if actor:
        headers["X-Actor"] = actor
    return requests.request(method, f"{platform.url('routing')}{path}", json=json, headers=headers,
                            timeout=10)


# --- routing by rule, end to end ---------------------------------------------------------------

# (text, category, region, lead, coordinating, rule id)
ROUTING_SAMPLE = [
    ("Jalan kabupaten di Praya rusak parah", "infrastruktur", "5202",
     ["pemkab-loteng"], [], "jalan-kabupaten"),
    ("Jalan nasional di Gerung berlubang besar", "infrastruktur", "5201",
     ["bpjn-ntb"], ["dpupr"], "jalan-nasional"),
    ("Tanggul sungai jebol saat banjir", "infrastruktur", "5206",
     ["bws-nt1"], ["dpupr", "pemkab-bima"], "sungai-wilayah"),
    ("Diminta bayar untuk surat keterangan di kantor desa", "pungli", "5203",
     ["inspektorat"], ["polda-ntb"], "pungli"),
    ("Sampah menumpuk di pasar tidak diangkut", "lingkungan_hidup", "5271",
     ["pemkot-mataram"], ["dlhk"], "lingkungan-wilayah"),
    ("Puskesmas tutup siang hari", "kesehatan", "5203",
     ["pemkab-lotim"], ["dikes"], "kesehatan-wilayah"),
    ("Bansos PKH tidak cair tiga bulan", "sosial", "5201",
     ["dinsos"], ["pemkab-lobar"], "bansos-wilayah"),
    ("Pelatihan UMKM dibatalkan tanpa kabar", "koperasi_umkm", None,
     ["diskop-ukm"], [], "koperasi-umkm-provinsi"),
    ("Sertifikat tanah tidak terbit dua tahun", "pelayanan_umum", "5204",
     ["bpn-ntb"], [], "pertanahan"),
    ("Mohon informasi jadwal kegiatan", "lainnya", None,
     [DESK], [], "desk-fallback"),
]


@pytest.fixture(scope="module")
def sample(platform):
    """File the whole sample first, then wait: routing works them concurrently."""
    filed = [file_complaint(platform, text, category, region)
             for text, category, region, *_ in ROUTING_SAMPLE]
    return [routed(platform, item["complaint_id"]) for item in filed]


@pytest.mark.parametrize("index", range(len(ROUTING_SAMPLE)),
                         ids=[case[-1] for case in ROUTING_SAMPLE])
def test_intake_complaint_is_routed_by_rule(platform, sample, index):
    _text, category, region, lead, coordinating, rule = ROUTING_SAMPLE[index]
    complaint = sample[index]
    assert (complaint["category"], complaint["region_code"]) == (category, region)
    assert complaint["lead_agencies"] == lead
    assert complaint["coordinating_agencies"] == coordinating
    assert complaint["decided_by"] == f"rule:{rule}"
    [event] = [e for e in routing_log(platform, complaint["complaint_id"])
               if e["event_type"] == "ComplaintRouted"]
    data = event["data"]
    assert data["reason"] and data["priority"] == complaint["priority"]
    assert set(data["agency_names"]) == set(lead + coordinating)
    assert all(name.strip() and name != code for code, name in data["agency_names"].items())
    if lead == [DESK]:
        assert set(data["due_at"]) == {"triage"}
        assert complaint["public_status"] == "diterima" and complaint["at_desk"]
    else:
        assert set(data["due_at"]) == {"first_response", "follow_up"}
        assert complaint["public_status"] == "disetujui"


def test_agencies_lists_the_directory(platform):
    with platform.rpc() as rpc:
        agencies = {a["code"]: a for a in rpc.routing.agencies()}
    assert agencies[DESK]["is_desk"] and agencies[DESK]["supervisor"] is None
    assert {a["level"] for a in agencies.values()} == {"provincial", "district", "vertical"}
    assert sum(1 for a in agencies.values() if a["level"] == "district") == 10
    assert agencies["pemkab-loteng"]["regions"] == ["5202"]
    assert {"polda-ntb", "bpn-ntb", "kejati-ntb", "bpjn-ntb", "bws-nt1"} <= set(agencies)


# --- the cycles over RPC ---------------------------------------------------------------------------

def test_agency_cycle_over_rpc(platform):
    complaint = routed(platform, file_complaint(
        platform, "Jalan provinsi menuju Sembalun longsor", "infrastruktur", "5203")["complaint_id"])
    cid = complaint["complaint_id"]
    assert complaint["lead_agencies"] == ["dpupr"]
    with platform.rpc() as rpc:
        assert cid in [c["complaint_id"] for c in rpc.routing.complaints_for("dpupr", "assigned")]
        after_ack = rpc.routing.acknowledge(cid, "dpupr", "budi@dpupr")
        assert after_ack["recorded"] == ["ComplaintAcknowledged"]
        assert (after_ack["status"], after_ack["public_status"]) == ("in_progress", "diproses")
        answer = rpc.routing.respond(cid, "dpupr", "Tim sedang menuju lokasi.", False, "budi@dpupr")
        assert answer["recorded"] == ["ComplaintResponded"] and answer["public_status"] == "diproses"
        done = rpc.routing.respond(cid, "dpupr", "Longsoran sudah dibersihkan.", True, "budi@dpupr")
        assert done["recorded"] == ["ComplaintResponded", "ComplaintResolved"]
        assert (done["status"], done["public_status"]) == ("resolved", "selesai")
        assert cid in [c["complaint_id"] for c in rpc.routing.complaints_for("dpupr", "selesai")]
        timeline = rpc.routing.timeline(cid)
    assert [e["event_type"] for e in timeline] == [
        "ComplaintFiled", "ComplaintRouted", "ComplaintAcknowledged", "ComplaintResponded",
        "ComplaintResponded", "ComplaintResolved"]
    acknowledged, responded = timeline[2]["data"], timeline[4]["data"]
    assert acknowledged["actor"] == "budi@dpupr" and acknowledged["agency_name"].startswith("Dinas Pekerjaan")
    assert responded["resolved"] is True and responded["agency_name"].startswith("Dinas Pekerjaan")
    assert timeline[5]["data"]["actor"] == "budi@dpupr"


def test_reject_returns_to_desk_then_reroute_over_rpc(platform):
    cid = file_complaint(platform, "Jalan kabupaten di Praya berlubang", "infrastruktur", "5202")["complaint_id"]
    assert routed(platform, cid)["lead_agencies"] == ["pemkab-loteng"]
    with platform.rpc() as rpc:
        back = rpc.routing.reject(cid, "pemkab-loteng", "Ruas ini jalan provinsi.", "ani@loteng")
        assert back["recorded"] == ["ComplaintRejectedByAgency"]
        assert (back["status"], back["public_status"], back["at_desk"]) == ("returned", "diproses", True)
        assert set(back["due_at"]) == {"triage"}
        queue = {item["complaint_id"]: item for item in rpc.routing.desk_queue()}
        assert queue[cid]["why"] == ["returned"]
        assert cid not in [c["complaint_id"] for c in rpc.routing.complaints_for("pemkab-loteng")]
        moved = rpc.routing.assign(cid, ["dpupr", "pemkab-loteng"], "Ruas provinsi; kabupaten membantu.", "sari")
        assert moved["lead_agencies"] == ["dpupr"] and moved["coordinating_agencies"] == ["pemkab-loteng"]
        assert moved["decided_by"] == "operator:sari" and moved["public_status"] == "disetujui"
        assert set(moved["due_at"]) == {"first_response", "follow_up"}
        assert cid not in {item["complaint_id"] for item in rpc.routing.desk_queue()}
        roles = {c["complaint_id"]: c["role"] for c in rpc.routing.complaints_for("pemkab-loteng")}
        assert roles[cid] == "coordinating"
        # A coordinating agency answers but cannot resolve.
        with pytest.raises(IllegalAction, match="only a lead"):
            rpc.routing.respond(cid, "pemkab-loteng", "Kami bantu.", True, "ani@loteng")
        rpc.routing.respond(cid, "dpupr", "Sudah diperbaiki.", True, "budi@dpupr")
    rejected = [e for e in routing_log(platform, cid) if e["event_type"] == "ComplaintRejectedByAgency"]
    assert rejected[0]["data"]["returned_to_desk"] is True
    assert rejected[0]["data"]["agency_name"] == "Pemerintah Kabupaten Lombok Tengah"


def test_dismiss_cycle_over_rpc(platform):
    original = file_complaint(platform, "Mohon info jadwal pameran", "lainnya")
    duplicate = file_complaint(platform, "Mohon info jadwal pameran lagi", "lainnya")
    routed(platform, original["complaint_id"])
    cid = routed(platform, duplicate["complaint_id"])["complaint_id"]
    with platform.rpc() as rpc:
        with pytest.raises(NotFound, match="duplicate_of"):
            rpc.routing.dismiss(cid, "Ganda.", "sari", "NTB-NOPE0")
        dismissed = rpc.routing.dismiss(cid, "Aduan ganda.", "sari", original["tracking_code"])
        assert dismissed["recorded"] == ["ComplaintDismissed"]
        assert (dismissed["status"], dismissed["public_status"]) == ("dismissed", "ditolak")
        assert dismissed["dismissal"]["duplicate_of"] == original["tracking_code"]
        assert cid not in {item["complaint_id"] for item in rpc.routing.desk_queue()}
        before = routing_log(platform, cid)
        with pytest.raises(IllegalAction, match="dismissed"):
            rpc.routing.assign(cid, ["dpupr"], "Coba lagi.", "sari")
        with pytest.raises(IllegalAction, match="dismissed"):
            rpc.routing.dismiss(cid, "Lagi.", "sari")
        with pytest.raises(IllegalAction, match="dismissed"):
            rpc.routing.set_priority(cid, "urgent", "Penting.", "sari")
    assert routing_log(platform, cid) == before


def test_refused_actions_record_nothing(platform):
    at_desk = routed(platform, file_complaint(platform, "Mohon info layanan umum", "lainnya")["complaint_id"])
    assigned = routed(platform, file_complaint(
        platform, "Jalan nasional Sumbawa amblas", "infrastruktur", "5204")["complaint_id"])
    assert at_desk["lead_agencies"] == [DESK] and assigned["lead_agencies"] == ["bpjn-ntb"]
    before = routing_log(platform)
    with platform.rpc() as rpc:
        with pytest.raises(IllegalAction, match="not assigned to any agency"):
            rpc.routing.respond(at_desk["complaint_id"], "dpupr", "Jawaban.", False, "budi")
        with pytest.raises(Forbidden, match="not assigned"):
            rpc.routing.acknowledge(assigned["complaint_id"], "pemkab-loteng", "ani")
        with pytest.raises(NotFound):
            rpc.routing.acknowledge("00000000-0000-4000-8000-000000000000", "dpupr", "budi")
        with pytest.raises(NotFound, match="no agency"):
            rpc.routing.complaints_for("dinas-tidak-ada")
        with pytest.raises(ValidationFailed):
            rpc.routing.assign(assigned["complaint_id"], ["dinas-tidak-ada"], "Catatan.", "sari")
        with pytest.raises(ValidationFailed):
            rpc.routing.respond(assigned["complaint_id"], "bpjn-ntb", "   ", False, "x")
        with pytest.raises(IllegalAction, match="already has priority"):
            rpc.routing.set_priority(assigned["complaint_id"], assigned["priority"], "Sama.", "sari")
        with pytest.raises(IllegalAction, match="cannot share"):
            rpc.routing.assign(assigned["complaint_id"], ["bpjn-ntb", DESK], "Bersama.", "sari")
        rpc.routing.respond(assigned["complaint_id"], "bpjn-ntb", "Sudah ditangani.", True, "joko")
        resolved_log = routing_log(platform)
        with pytest.raises(IllegalAction, match="already resolved"):
            rpc.routing.respond(assigned["complaint_id"], "bpjn-ntb", "Sekali lagi.", True, "joko")
        with pytest.raises(IllegalAction, match="resolved"):
            rpc.routing.reject(assigned["complaint_id"], "bpjn-ntb", "Bukan kami.", "joko")
    after = routing_log(platform)
    assert after == resolved_log
    assert len(after) == len(before) + 2  # only the accepted answer and its resolution


# --- the same over HTTP -----------------------------------------------------------------------------

def test_agency_cycle_over_http(platform):
    cid = file_complaint(platform, "Mohon info soal jalan rusak", "lainnya")["complaint_id"]
    assert routed(platform, cid)["lead_agencies"] == [DESK]
    queue = api(platform, "GET", "/api/desk/queue", DESK)
    assert queue.status_code == 200 and cid in {item["complaint_id"] for item in queue.json()}
    response = api(platform, "POST", f"/api/complaints/{cid}/assign", DESK, actor="Sari",
                   json={"agency_codes": ["dpupr"], "note": "Jalan provinsi."})
    assert response.status_code == 200, response.text
    assert response.json()["decided_by"] == f"operator:{DESK}:Sari"

    listed = api(platform, "GET", "/api/agencies/dpupr/complaints?status=disetujui", "dpupr")
    assert listed.status_code == 200 and cid in {c["complaint_id"] for c in listed.json()}
    seen = api(platform, "GET", f"/api/complaints/{cid}", "dpupr").json()
    assert seen["text"] == "Mohon info soal jalan rusak" and seen["lead_agencies"] == ["dpupr"]

    ack = api(platform, "POST", f"/api/complaints/{cid}/acknowledge", "dpupr", actor="Budi")
    assert ack.status_code == 200 and ack.json()["public_status"] == "diproses"
    again = api(platform, "POST", f"/api/complaints/{cid}/acknowledge", "dpupr", actor="Budi")
    assert again.status_code == 409 and "already acknowledged" in again.json()["error"]
    answer = api(platform, "POST", f"/api/complaints/{cid}/respond", "dpupr", actor="Budi",
                 json={"text": "Jalan sudah ditambal.", "resolved": True})
    assert answer.status_code == 200 and answer.json()["public_status"] == "selesai"
    bad = api(platform, "POST", f"/api/complaints/{cid}/respond", "dpupr", json={"resolved": True})
    assert bad.status_code == 400 and "text" in bad.json()["fields"]

    timeline = api(platform, "GET", f"/api/complaints/{cid}/timeline", "dpupr").json()
    actors = [e["data"].get("actor") for e in timeline if e["event_type"] != "ComplaintFiled"]
    assert actors == [None, None, "dpupr:Budi", "dpupr:Budi", "dpupr:Budi"]
    assert timeline[1]["data"]["decided_by"] == "rule:desk-fallback"
    assert timeline[2]["data"]["decided_by"] == f"operator:{DESK}:Sari"


def test_reject_reroute_and_dismiss_over_http(platform):
    cid = file_complaint(platform, "Jalan desa di Jonggat putus", "infrastruktur", "5202")["complaint_id"]
    assert routed(platform, cid)["lead_agencies"] == ["pemkab-loteng"]
    rejected = api(platform, "POST", f"/api/complaints/{cid}/reject", "pemkab-loteng",
                   json={"reason": "Bukan wewenang kami."})
    assert rejected.status_code == 200 and rejected.json()["status"] == "returned"
    # Handed back, the complaint is no longer the district's to see (answered as unknown).
    assert api(platform, "GET", f"/api/complaints/{cid}", "pemkab-loteng").status_code == 404
    rerouted = api(platform, "POST", f"/api/complaints/{cid}/assign", DESK,
                   json={"agency_codes": ["bpjn-ntb"], "note": "Ternyata jalan nasional."})
    assert rerouted.status_code == 200 and rerouted.json()["lead_agencies"] == ["bpjn-ntb"]
    new_priority = "normal" if rerouted.json()["priority"] == "urgent" else "urgent"
    priority = api(platform, "POST", f"/api/complaints/{cid}/priority", DESK,
                   json={"priority": new_priority, "reason": "Akses satu-satunya."})
    assert priority.status_code == 200 and priority.json()["priority"] == new_priority
    assert api(platform, "POST", f"/api/complaints/{cid}/acknowledge", "bpjn-ntb").status_code == 200

    other = file_complaint(platform, "Aduan percobaan saja", "lainnya")["complaint_id"]
    routed(platform, other)
    dismissed = api(platform, "POST", f"/api/complaints/{other}/dismiss", DESK,
                    json={"reason": "Bukan aduan."})
    assert dismissed.status_code == 200 and dismissed.json()["public_status"] == "ditolak"
    refused = api(platform, "POST", f"/api/complaints/{other}/assign", DESK,
                  json={"agency_codes": ["dpupr"], "note": "x"})
    assert refused.status_code == 409 and "dismissed" in refused.json()["error"]
    events = [e["event_type"] for e in routing_log(platform, other)]
    assert events == ["ComplaintRouted", "ComplaintDismissed"]


def test_token_scoping(platform):
    cid = file_complaint(platform, "Jalan provinsi di Kopang retak", "infrastruktur", "5202")["complaint_id"]
    assert routed(platform, cid)["lead_agencies"] == ["dpupr"]
    before = routing_log(platform, cid)
    # No token, or an unknown one: 401.
    assert api(platform, "GET", f"/api/complaints/{cid}").status_code == 401
    assert api(platform, "GET", "/api/desk/queue", token="not-a-real-token").status_code == 401
    assert api(platform, "POST", f"/api/complaints/{cid}/acknowledge", token="nope-nope").status_code == 401
    # Another agency can neither see nor act: to it the complaint does not exist (404).
    assert api(platform, "GET", f"/api/complaints/{cid}", "bpjn-ntb").status_code == 404
    assert api(platform, "GET", f"/api/complaints/{cid}/timeline", "bpjn-ntb").status_code == 404
    for action, body in (("acknowledge", None), ("reject", {"reason": "x"}),
                         ("respond", {"text": "x", "resolved": True})):
        response = api(platform, "POST", f"/api/complaints/{cid}/{action}", "bpjn-ntb", json=body)
        assert response.status_code == 404, (action, response.text)
    assert api(platform, "GET", "/api/agencies/dpupr/complaints", "bpjn-ntb").status_code == 403
    # Only the desk triages.
    assert api(platform, "GET", "/api/desk/queue", "dpupr").status_code == 403
    assert api(platform, "POST", f"/api/complaints/{cid}/assign", "dpupr",
               json={"agency_codes": ["bpjn-ntb"], "note": "x"}).status_code == 403
    assert api(platform, "POST", f"/api/complaints/{cid}/dismiss", "dpupr",
               json={"reason": "x"}).status_code == 403
    assert routing_log(platform, cid) == before
    # The desk sees everything; the assigned agency sees its own.
    assert api(platform, "GET", f"/api/complaints/{cid}", DESK).status_code == 200
    assert api(platform, "GET", f"/api/complaints/{cid}", "dpupr").status_code == 200

    # A token issued over RPC is returned once, works, and is stored only as a hash.
    with platform.rpc() as rpc:
        issued = rpc.routing.issue_token("bpjn-ntb", "admin")
    assert issued["agency_code"] == "bpjn-ntb" and len(issued["token"]) >= 32
    me = api(platform, "GET", "/api/me", token=issued["token"], actor="Joko")
    assert me.json() == {"agency_code": "bpjn-ntb", "actor": "bpjn-ntb:Joko", "is_desk": False}
    assert api(platform, "GET", f"/api/complaints/{cid}", token=issued["token"]).status_code == 404
    files = b"".join(path.read_bytes() for path in platform.data_dir.glob("routing.db*"))
    assert files and issued["token"].encode() not in files
    assert TOKENS["dpupr"].encode() not in files
