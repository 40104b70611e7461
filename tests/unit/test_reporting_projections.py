"""Reporting's pure parts: facts drop personal data, derived rows do not depend on arrival order,
the public status mapping, WITA months, the summary's definitions, narrative and CSV."""
from __future__ import annotations

import csv
import io
import itertools
import uuid
from datetime import date, datetime, timezone

from services.reporting import reports
from services.reporting.narrative import monthly_narrative
from services.reporting.projections import derive, fact_from_event
from services.reporting.public import complaint_status, summary_csv
from shared.tracking import normalise as normalise_tracking_code

CID = "0b7b6f9e-3a0c-4d55-9a39-2f1f6a0f0001"


def event(source, event_type, version, occurred_at, **data):
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
            "source": source, "position": version, "complaint_id": CID, "version": version,
            "occurred_at": occurred_at, "data": data}


FILED = event("intake", "ComplaintFiled", 1, "2020-11-02T01:00:00Z",
              tracking_code="NTB-ABCDE-FGHJK", channel="facebook_messenger",
              filed_at="2020-11-02T01:00:00Z", text="Nama saya Siti, HP 081234567890, jalan rusak",
              attachments=[], category="infrastruktur", region_code="5202", priority="normal",
              reasons={"category": [], "region": [], "priority": []}, confidential=False,
              reply_to={"page_id": "1", "psid": "PSID-SECRET-1"},
              last_citizen_message_at="2020-11-02T01:00:00Z", external_ref=None)
ROUTED_DESK = event("routing", "ComplaintRouted", 1, "2020-11-02T01:00:05Z", lead_agencies=["diskominfotik"],
                    coordinating_agencies=[], decided_by="rule:desk", reason="x", priority="normal",
                    due_at={"triage": "2020-11-05T01:00:00Z"})
ROUTED = event("routing", "ComplaintRouted", 2, "2020-11-02T03:00:00Z", lead_agencies=["dpupr"],
               coordinating_agencies=["pemkab-loteng"], decided_by="operator:desk-1", reason="jalan",
               priority="normal", due_at={"first_response": "2020-11-04T03:00:00Z",
                                          "follow_up": "2020-11-09T03:00:00Z"})
ACK = event("routing", "ComplaintAcknowledged", 3, "2020-11-02T05:00:00Z", agency_code="dpupr", actor="officer:budi")
ANSWER = event("routing", "ComplaintResponded", 4, "2020-11-03T05:00:00Z", agency_code="dpupr",
               text="Perbaikan dijadwalkan minggu depan.", resolved=False, actor="officer:budi")
RESOLVED = event("routing", "ComplaintResolved", 5, "2020-11-10T05:00:00Z", actor="officer:budi")
NOTIFIED = event("notification", "CitizenNotified", 1, "2020-11-03T05:00:02Z",
                 trigger_event_id=str(uuid.uuid4()), channel="messenger", messaging_type="RESPONSE",
                 tag=None, graph_message_id="m_1", recipient_psid="PSID-SECRET-1")
HISTORY = [FILED, ROUTED_DESK, ROUTED, ACK, ANSWER, RESOLVED, NOTIFIED]


def derived(events):
    return derive(CID, [f for f in (fact_from_event(e) for e in events) if f])


def test_facts_keep_nothing_personal():
    text = repr([fact_from_event(e) for e in HISTORY])
    for secret in ("Siti", "081234567890", "PSID-SECRET-1", "officer:budi", "jalan rusak"):
        assert secret not in text
    assert fact_from_event(event("intake", "CitizenMessageReceived", 2, "2020-11-02T01:00:00Z",
                                 text="x", attachments=[], reply_to=None,
                                 message_at="2020-11-02T01:00:00Z")) is None


def test_any_arrival_order_gives_the_same_rows():
    expected = derived(HISTORY)
    for order in itertools.islice(itertools.permutations(HISTORY), 0, 5040, 97):
        assert derived(list(order)) == expected


def test_the_full_lifecycle():
    row = derived(HISTORY)["complaint"]
    assert row["public_status"] == "selesai" and row["resolved"] and row["followed_up"]
    assert row["month"] == "2020-11" and row["lead_agencies"] == ["dpupr"]
    assert row["first_response_at"] == "2020-11-02T05:00:00Z"
    assert row["first_response_due"] == "2020-11-04T03:00:00Z"
    assert row["notified"] == 1 and row["updated_at"] == "2020-11-10T05:00:00Z"
    assignments = {a["agency_code"]: a for a in derived(HISTORY)["assignments"]}
    assert assignments["dpupr"]["role"] == "lead" and assignments["dpupr"]["resolved"]
    assert assignments["pemkab-loteng"]["role"] == "coordinating"


def test_public_status_mapping():
    def status(events):
        return derived(events)["complaint"]["public_status"]
    assert status([FILED]) == "diterima"
    assert status([FILED, ROUTED_DESK]) == "diterima"
    assert status([FILED, ROUTED_DESK, ROUTED]) == "disetujui"
    assert status([FILED, ROUTED_DESK, ROUTED, ACK]) == "diproses"
    assert status([FILED, ROUTED_DESK, ROUTED, ACK, ANSWER]) == "diproses"
    assert status(HISTORY) == "selesai"
    rejected = event("routing", "ComplaintRejectedByAgency", 3, "2020-11-02T06:00:00Z",
                     agency_code="dpupr", reason="bukan wewenang", actor="officer:x")
    back_at_desk = dict(ROUTED_DESK, version=4, position=4, occurred_at="2020-11-02T06:00:01Z")
    assert status([FILED, ROUTED_DESK, ROUTED, rejected, back_at_desk]) == "diproses"
    dismissed = event("routing", "ComplaintDismissed", 2, "2020-11-02T06:00:00Z", reason="ganda",
                      duplicate_of=None, actor="desk")
    assert status([FILED, ROUTED_DESK, dismissed]) == "ditolak"


def test_month_is_wita_filing_time():
    late = dict(FILED, data=dict(FILED["data"], filed_at="2020-11-30T15:30:00Z"))   # 23:30 WITA
    early = dict(FILED, data=dict(FILED["data"], filed_at="2020-11-30T16:30:00Z"))  # 00:30 WITA
    assert derived([late])["complaint"]["month"] == "2020-11"
    assert derived([early])["complaint"]["month"] == "2020-12"


def test_summary_definitions():
    now = datetime(2020, 12, 15, tzinfo=timezone.utc)
    answered = derived(HISTORY)["complaint"]
    unanswered = derived([FILED, ROUTED_DESK, ROUTED])["complaint"]
    summary = reports.monthly_summary([answered, unanswered], 2020, 11, now)
    assert summary["total"] == 2 and summary["followed_up"] == 1 and summary["follow_up_rate"] == 0.5
    assert summary["by_category"]["infrastruktur"] == 2 and summary["by_category"]["pungli"] == 0
    assert summary["by_region"] == {"5202": 2} and summary["by_agency"] == {"dpupr": 2}
    assert summary["median_hours_to_first_response"] == 4.0
    assert summary["within_first_response_sla"] == 0.5  # the unanswered one is past its deadline
    early = reports.monthly_summary([answered, unanswered], 2020, 11, datetime(2020, 11, 3, tzinfo=timezone.utc))
    assert early["within_first_response_sla"] == 1.0    # not yet due: left out


def test_agency_performance():
    rows = [a for a in derived(HISTORY)["assignments"] if a["agency_code"] == "dpupr"]
    now = datetime(2020, 12, 1, tzinfo=timezone.utc)
    figures = reports.agency_performance(rows, "dpupr", date(2020, 11, 1), date(2020, 11, 30), now)
    assert (figures["assigned"], figures["acknowledged"], figures["answered"], figures["resolved"]) == (1, 1, 1, 1)
    assert figures["within_first_response_deadline"] == 1.0 and figures["within_follow_up_deadline"] == 1.0
    assert figures["median_hours_to_first_answer"] == 26.0
    assert reports.agency_performance(rows, "dpupr", date(2020, 12, 1), date(2020, 12, 31), now)["assigned"] == 0


def test_narrative_and_csv():
    summary = {"year": 2020, "month": 11, "total": 11,
               "by_category": {"koperasi_umkm": 4, "lingkungan_hidup": 3, "infrastruktur": 1, "pungli": 1,
                               "pelayanan_umum": 0, "sosial": 1, "kesehatan": 1, "lainnya": 0},
               "by_region": {"5271": 11}, "by_agency": {"diskop-ukm": 4}, "followed_up": 10,
               "follow_up_rate": 0.9091, "resolved": 6, "median_hours_to_first_response": 5.25,
               "within_first_response_sla": 0.8}
    text = monthly_narrative(summary)
    assert text.startswith("Selama bulan November 2020, NTBCare menerima 11 aduan masyarakat: 4 aduan koperasi dan UMKM")
    assert "hampir semua sudah ditindaklanjuti (10 dari 11 aduan, 91%)" in text
    assert "Dinas Koperasi dan UKM (4 aduan)" in text and "5,2 jam" in text
    body = summary_csv(summary)
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body and b"\n" not in body.replace(b"\r\n", b"")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["metric", "code", "label", "value"]
    assert ["by_category", "koperasi_umkm", "koperasi dan UMKM", "4"] in rows


def test_public_view_hides_confidential_answers():
    result = derived(HISTORY)
    view = complaint_status(result["complaint"], result["answers"])
    assert view["answers"][0]["text"] == "Perbaikan dijadwalkan minggu depan."
    secret = dict(result["complaint"], confidential=True)
    hidden = complaint_status(secret, result["answers"])
    assert hidden["answers"][0]["text"] is None and hidden["answer_texts_withheld"]
    assert normalise_tracking_code("ntb abcde fghjk") == "NTB-ABCDE-FGHJK"
