"""Reporting's pure parts: facts drop personal data, derived rows do not depend on arrival order,
the public status, desk, agencies, parts, confidentiality and deadlines are read from routing's
lifecycle (never recomputed), WITA months, the summary's definitions, narrative and CSV.

Routing's events are written here as routing records them (v2): each carries ``data.lifecycle``,
the complaint's state after the event, built by hand with ``lifecycle()`` and ``part()``."""
from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import date, datetime, timezone

from services.reporting.domain import reports
from services.reporting.domain.narrative import monthly_narrative
from services.reporting.domain.projections import derive, fact_from_event
from services.reporting.domain.public import complaint_status, summary_csv
from shared.core.events.catalogue import LATEST_VERSION, validate_data
from shared.core.tracking import normalise as normalise_tracking_code

CID = "0b7b6f9e-3a0c-4d55-9a39-2f1f6a0f0001"
STAGES = {"diterima": "triage", "disetujui": "assigned", "diproses": "in_progress",
          "ditolak": "dismissed", "selesai": "resolved"}
NAMES = {"dpupr": "Dinas Pekerjaan Umum dan Penataan Ruang", "pemkab-loteng": "Pemkab Lombok Tengah",
         "polda-ntb": "Polda NTB", "inspektorat": "Inspektorat"}


def part(role="lead", acknowledged=False, answered=False, resolved=False) -> dict:
    return {"role": role, "acknowledged": acknowledged, "answered": answered, "resolved": resolved}


def lifecycle(status, *, leads=(), coordinating=(), parts=None, deadlines=None, at_desk=False,
              confidential=False, stage=None) -> dict:
    """A snapshot as routing writes it into ``data.lifecycle``."""
    closed = status in ("ditolak", "selesai")
    parts = parts or {}
    return {"status": status, "stage": stage or STAGES[status], "open": not closed,
            "at_desk": at_desk, "confidential": confidential, "lead_agencies": list(leads),
            "coordinating_agencies": list(coordinating), "parts": parts,
            "deadlines": {} if closed else dict(deadlines or {}),
            "agency_names": {code: NAMES.get(code, code) for code in parts}}


def event(source, event_type, version, occurred_at, **data):
    envelope = {"event_id": str(uuid.uuid4()), "event_type": event_type,
                "schema_version": LATEST_VERSION[event_type], "source": source, "position": version,
                "complaint_id": CID, "version": version, "occurred_at": occurred_at, "data": data}
    validate_data(event_type, envelope["schema_version"], data)  # as the catalogue declares it
    return envelope


FIRST_RESPONSE_DUE, FOLLOW_UP_DUE = "2020-11-04T03:00:00Z", "2020-11-09T03:00:00Z"
TRIAGE_DUE = "2020-11-05T01:00:00Z"
ROUTED_PARTS = {"dpupr": part(), "pemkab-loteng": part("coordinating")}

FILED = event("intake", "ComplaintFiled", 1, "2020-11-02T01:00:00Z",
              tracking_code="NTB-ABCDE-FGHJK", channel="facebook_messenger",
              filed_at="2020-11-02T01:00:00Z", text="Nama saya Siti, HP 081234567890, jalan rusak",
              attachments=[], category="infrastruktur", region_code="5202", priority="normal",
              reasons={"category": [], "region": [], "priority": []}, confidential=False,
              reply_to={"page_id": "1", "psid": "PSID-SECRET-1"},
              last_citizen_message_at="2020-11-02T01:00:00Z", external_ref=None)
ROUTED_DESK = event("routing", "ComplaintRouted", 1, "2020-11-02T01:00:05Z", lead_agencies=["diskominfotik"],
                    coordinating_agencies=[], decided_by="rule:desk", reason="x", priority="normal",
                    due_at={"triage": TRIAGE_DUE},
                    lifecycle=lifecycle("diterima", at_desk=True, deadlines={"triage": TRIAGE_DUE}))
ROUTED = event("routing", "ComplaintRouted", 2, "2020-11-02T03:00:00Z", lead_agencies=["dpupr"],
               coordinating_agencies=["pemkab-loteng"], decided_by="operator:desk-1", reason="jalan",
               priority="normal", due_at={"first_response": FIRST_RESPONSE_DUE, "follow_up": FOLLOW_UP_DUE},
               lifecycle=lifecycle("disetujui", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                   parts=ROUTED_PARTS,
                                   deadlines={"first_response": FIRST_RESPONSE_DUE, "follow_up": FOLLOW_UP_DUE}))
ACK = event("routing", "ComplaintAcknowledged", 3, "2020-11-02T05:00:00Z", agency_code="dpupr", actor="officer:budi",
            lifecycle=lifecycle("diproses", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                parts={**ROUTED_PARTS, "dpupr": part(acknowledged=True)},
                                deadlines={"follow_up": FOLLOW_UP_DUE}))
ANSWER = event("routing", "ComplaintResponded", 4, "2020-11-03T05:00:00Z", agency_code="dpupr",
               text="Perbaikan dijadwalkan minggu depan.", resolved=False, actor="officer:budi",
               lifecycle=lifecycle("diproses", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                   parts={**ROUTED_PARTS, "dpupr": part(acknowledged=True, answered=True)}))
DONE_PARTS = {**ROUTED_PARTS, "dpupr": part(acknowledged=True, answered=True, resolved=True)}
FINAL_ANSWER = event("routing", "ComplaintResponded", 5, "2020-11-10T05:00:00Z", agency_code="dpupr",
                     text="Jalan sudah diperbaiki.", resolved=True, actor="officer:budi",
                     lifecycle=lifecycle("diproses", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                         parts=DONE_PARTS))
RESOLVED = event("routing", "ComplaintResolved", 6, "2020-11-10T05:00:00Z", actor="officer:budi",
                 lifecycle=lifecycle("selesai", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                     parts=DONE_PARTS))
NOTIFIED = event("notification", "CitizenNotified", 1, "2020-11-03T05:00:02Z",
                 trigger_event_id=str(uuid.uuid4()), channel="messenger", messaging_type="RESPONSE",
                 tag=None, graph_message_id="m_1", recipient_psid="PSID-SECRET-1")
HISTORY = [FILED, ROUTED_DESK, ROUTED, ACK, ANSWER, FINAL_ANSWER, RESOLVED, NOTIFIED]


def derived(events):
    return derive(CID, [f for f in (fact_from_event(e) for e in events) if f])


def row_of(events):
    return derived(events)["complaint"]


def status(events):
    return row_of(events)["public_status"]


def test_facts_keep_nothing_personal():
    changed = event("routing", "ComplaintConfidentialityChanged", 7, "2020-11-10T06:00:00Z",
                    confidential=True, reason="Siti menyebut petugas Budi", actor="operator:desk-ani",
                    lifecycle=lifecycle("selesai", leads=["dpupr"], parts=DONE_PARTS, confidential=True))
    text = repr([fact_from_event(e) for e in HISTORY + [changed]])
    for secret in ("Siti", "081234567890", "PSID-SECRET-1", "officer:budi", "jalan rusak", "desk-ani", "Budi"):
        assert secret not in text
    assert fact_from_event(event("intake", "CitizenMessageReceived", 2, "2020-11-02T01:00:00Z",
                                 text="x", attachments=[], reply_to=None,
                                 message_at="2020-11-02T01:00:00Z", levy_reported=False)) is None
    # Routing's finer stage is its own detail; the rest of the lifecycle is kept.
    kept = fact_from_event(ACK)["data"]["lifecycle"]
    assert "stage" not in kept and kept["status"] == "diproses" and kept["parts"]["dpupr"]["acknowledged"]


def test_any_arrival_order_gives_the_same_rows():
    expected = derived(HISTORY)
    rng = random.Random(13)
    for _ in range(300):
        order = list(HISTORY)
        rng.shuffle(order)
        assert derived(order) == expected


def test_the_full_lifecycle():
    result = derived(HISTORY)
    row = result["complaint"]
    assert row["public_status"] == "selesai" and row["resolved"] and row["followed_up"]
    assert row["resolved_at"] == "2020-11-10T05:00:00Z" and row["answers"] == 2
    assert row["month"] == "2020-11" and row["lead_agencies"] == ["dpupr"]
    assert row["coordinating_agencies"] == ["pemkab-loteng"] and not row["at_desk"]
    assert row["first_response_at"] == "2020-11-02T05:00:00Z"
    assert row["first_response_due"] == FIRST_RESPONSE_DUE and row["routed_at"] == "2020-11-02T03:00:00Z"
    assert row["notified"] == 1 and row["updated_at"] == "2020-11-10T05:00:00Z"
    assert (row["next_due_kind"], row["next_due_at"]) == (None, None)
    assignments = {a["agency_code"]: a for a in result["assignments"]}
    assert set(assignments) == {"dpupr", "pemkab-loteng"}  # the desk is no agency with a part
    assert assignments["dpupr"]["role"] == "lead" and assignments["dpupr"]["resolved"]
    assert assignments["pemkab-loteng"]["role"] == "coordinating" and not assignments["pemkab-loteng"]["resolved"]


def test_public_status_is_the_latest_routing_events_lifecycle():
    assert status([FILED]) == "diterima"
    assert status([FILED, ROUTED_DESK]) == "diterima"
    assert status([FILED, ROUTED_DESK, ROUTED]) == "disetujui"
    assert status([FILED, ROUTED_DESK, ROUTED, ACK]) == "diproses"
    assert status([FILED, ROUTED_DESK, ROUTED, ACK, ANSWER]) == "diproses"
    # A resolving answer is not the end: routing says selesai only with ComplaintResolved.
    assert status([FILED, ROUTED_DESK, ROUTED, ACK, ANSWER, FINAL_ANSWER]) == "diproses"
    assert status(HISTORY) == "selesai"
    # The latest is the highest version, whatever arrived last.
    assert status([RESOLVED, FILED, ACK]) == "selesai" and status([ACK, ROUTED]) == "diproses"
    dismissed = event("routing", "ComplaintDismissed", 2, "2020-11-02T06:00:00Z", reason="ganda",
                      duplicate_of=None, actor="desk", lifecycle=lifecycle("ditolak"))
    row = row_of([FILED, ROUTED_DESK, dismissed])
    assert row["public_status"] == "ditolak" and row["dismissed"] and not row["at_desk"]
    assert row["next_due_at"] is None


def test_two_leads_stay_diproses_until_the_last_lead_resolves():
    leads = ["dpupr", "polda-ntb"]
    due = {"first_response": FIRST_RESPONSE_DUE, "follow_up": FOLLOW_UP_DUE}
    routed = event("routing", "ComplaintRouted", 1, "2020-11-02T03:00:00Z", lead_agencies=leads,
                   coordinating_agencies=[], decided_by="rule:pungli-jalan", reason="x", priority="normal",
                   due_at=due, lifecycle=lifecycle("disetujui", leads=leads,
                                                   parts={code: part() for code in leads}, deadlines=due))
    first_done = {"dpupr": part(answered=True, resolved=True), "polda-ntb": part()}
    first = event("routing", "ComplaintResponded", 2, "2020-11-03T03:00:00Z", agency_code="dpupr",
                  text="Bagian kami selesai.", resolved=True, actor="officer:a",
                  lifecycle=lifecycle("diproses", leads=leads, parts=first_done))
    both_done = {code: part(answered=True, resolved=True) for code in leads}
    second = event("routing", "ComplaintResponded", 3, "2020-11-05T03:00:00Z", agency_code="polda-ntb",
                   text="Sudah ditindak.", resolved=True, actor="officer:b",
                   lifecycle=lifecycle("diproses", leads=leads, parts=both_done))
    resolved = event("routing", "ComplaintResolved", 4, "2020-11-05T03:00:00Z", actor="officer:b",
                     lifecycle=lifecycle("selesai", leads=leads, parts=both_done))

    after_first = derived([FILED, routed, first])
    row = after_first["complaint"]
    assert row["public_status"] == "diproses" and not row["resolved"] and row["resolved_at"] is None
    assert {a["agency_code"]: a["resolved"] for a in after_first["assignments"]} == {"dpupr": True, "polda-ntb": False}
    summary = reports.monthly_summary([row], 2020, 11, datetime(2020, 11, 4, tzinfo=timezone.utc))
    assert summary["resolved"] == 0 and summary["followed_up"] == 1
    assert summary["by_agency"] == {"dpupr": 1, "polda-ntb": 1}

    assert status([FILED, routed, first, second]) == "diproses"
    done = derived([FILED, routed, first, second, resolved])
    assert done["complaint"]["public_status"] == "selesai" and done["complaint"]["resolved"]
    assert done["complaint"]["resolved_at"] == "2020-11-05T03:00:00Z"
    assert all(a["resolved"] for a in done["assignments"])
    summary = reports.monthly_summary([done["complaint"]], 2020, 11, datetime(2020, 11, 6, tzinfo=timezone.utc))
    assert summary["resolved"] == 1


def test_desk_hand_back_and_re_routing():
    rejected = event("routing", "ComplaintRejectedByAgency", 3, "2020-11-02T06:00:00Z",
                     agency_code="dpupr", reason="bukan wewenang", actor="officer:x",
                     returned_to_desk=True, due_at={"triage": "2020-11-05T06:00:00Z"},
                     lifecycle=lifecycle("diproses", stage="returned", at_desk=True,
                                         parts={"dpupr": part("handed_back")},
                                         deadlines={"triage": "2020-11-05T06:00:00Z"}))
    back = derived([FILED, ROUTED_DESK, ROUTED, rejected])
    row = back["complaint"]
    assert row["public_status"] == "diproses" and row["at_desk"] and row["lead_agencies"] == []
    assert (row["next_due_kind"], row["next_due_at"]) == ("triage", "2020-11-05T06:00:00Z")
    assert row["rejections"] == 1
    dpupr = {a["agency_code"]: a for a in back["assignments"]}["dpupr"]
    assert dpupr["role"] == "lead" and dpupr["rejected_at"] == "2020-11-02T06:00:00Z" and not dpupr["resolved"]
    summary = reports.monthly_summary([row], 2020, 11, datetime(2020, 11, 3, tzinfo=timezone.utc))
    assert summary["by_agency"] == {}  # held at the desk: no agency counted

    due = {"first_response": "2020-11-04T09:00:00Z", "follow_up": "2020-11-09T09:00:00Z"}
    rerouted = event("routing", "ComplaintRouted", 4, "2020-11-02T09:00:00Z", lead_agencies=["inspektorat"],
                     coordinating_agencies=[], decided_by="operator:desk-1", reason="x", priority="important",
                     due_at=due, lifecycle=lifecycle("disetujui", leads=["inspektorat"], deadlines=due,
                                                     parts={"dpupr": part("handed_back"),
                                                            "inspektorat": part()}))
    again = derived([FILED, ROUTED_DESK, ROUTED, rejected, rerouted])
    row = again["complaint"]
    assert row["public_status"] == "disetujui" and not row["at_desk"] and row["lead_agencies"] == ["inspektorat"]
    assert row["priority"] == "important" and row["next_due_kind"] == "first_response"
    # The SLA figure keeps the first routing to agencies; the new lead has its own deadlines.
    assert row["first_response_due"] == FIRST_RESPONSE_DUE
    inspektorat = {a["agency_code"]: a for a in again["assignments"]}["inspektorat"]
    assert inspektorat["role"] == "lead" and inspektorat["first_response_due"] == "2020-11-04T09:00:00Z"


def test_next_deadline_is_the_earliest_running_clock():
    assert (row_of([FILED, ROUTED_DESK])["next_due_kind"], row_of([FILED, ROUTED_DESK])["next_due_at"]) == \
        ("triage", TRIAGE_DUE)
    row = row_of([FILED, ROUTED_DESK, ROUTED])
    assert (row["next_due_kind"], row["next_due_at"]) == ("first_response", FIRST_RESPONSE_DUE)
    row = row_of([FILED, ROUTED_DESK, ROUTED, ACK])   # routing stopped the first-response clock
    assert (row["next_due_kind"], row["next_due_at"]) == ("follow_up", FOLLOW_UP_DUE)
    row = row_of([FILED, ROUTED_DESK, ROUTED, ACK, ANSWER])
    assert (row["next_due_kind"], row["next_due_at"]) == (None, None)
    assert row_of([FILED])["next_due_at"] is None  # routing has not said anything yet


def test_escalations_count_against_the_leads_of_that_moment():
    escalated = event("routing", "ComplaintEscalated", 3, "2020-11-04T03:00:01Z", breach="first_response",
                      due_at=FIRST_RESPONSE_DUE, notified=["dpupr", "diskominfotik"],
                      lifecycle=ROUTED["data"]["lifecycle"])
    result = derived([FILED, ROUTED_DESK, ROUTED, escalated])
    assert result["complaint"]["escalations"] == 1
    assert {a["agency_code"]: a["escalations"] for a in result["assignments"]} == {"dpupr": 1, "pemkab-loteng": 0}
    # Internal: the public "updated" time stays at the routing.
    assert result["complaint"]["updated_at"] == "2020-11-02T03:00:00Z"


def test_confidentiality_follows_routings_latest_word():
    assert not row_of([FILED])["confidential"]
    levy_filed = dict(FILED, data=dict(FILED["data"], confidential=True))
    assert row_of([levy_filed])["confidential"]  # before routing's first event: as filed

    marked_lifecycle = lifecycle("diproses", leads=["dpupr"], coordinating=["pemkab-loteng"],
                                 parts=ANSWER["data"]["lifecycle"]["parts"], confidential=True)
    marked = event("routing", "ComplaintConfidentialityChanged", 5, "2020-11-03T07:00:00Z",
                   confidential=True, reason="pesan berikutnya menyebut pungutan", actor="intake:classifier",
                   lifecycle=marked_lifecycle)
    unmarked = event("routing", "ComplaintConfidentialityChanged", 6, "2020-11-04T07:00:00Z",
                     confidential=False, reason="bukan pungli", actor="operator:desk-ani",
                     lifecycle=dict(marked_lifecycle, confidential=False))
    history = [FILED, ROUTED_DESK, ROUTED, ACK, ANSWER]

    result = derived(history + [marked])
    assert result["complaint"]["confidential"] and result["complaint"]["updated_at"] == "2020-11-03T05:00:00Z"
    view = complaint_status(result["complaint"], result["answers"])
    assert view["confidential"] and view["answer_texts_withheld"] and view["answers"][0]["text"] is None
    assert view["answers"][0]["answered_at"] == "2020-11-03T05:00:00Z"

    result = derived(history + [marked, unmarked])
    view = complaint_status(result["complaint"], result["answers"])
    assert not view["confidential"] and view["answers"][0]["text"] == "Perbaikan dijadwalkan minggu depan."


def test_agency_names_come_from_the_events():
    result = derived(HISTORY)
    assert result["complaint"]["agency_names"] == {"dpupr": NAMES["dpupr"], "pemkab-loteng": NAMES["pemkab-loteng"]}
    assert {a["agency_code"]: a["agency_name"] for a in result["assignments"]}["dpupr"] == NAMES["dpupr"]
    view = complaint_status(result["complaint"], result["answers"])
    assert view["agencies"] == [{"code": "dpupr", "name": NAMES["dpupr"]}]
    assert view["answers"][0]["agency_name"] == NAMES["dpupr"]
    # An event that knew no name: the code itself (reporting keeps no second list of names).
    unnamed = dict(result["complaint"], agency_names={})
    assert complaint_status(unnamed, [])["agencies"] == [{"code": "dpupr", "name": "dpupr"}]
    assert complaint_status(dict(unnamed, lead_agencies=["dinas-baru"]), [])["agencies"][0]["name"] == "dinas-baru"


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
    assert summary["resolved"] == 1
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
    table = reports.agency_table(derived(HISTORY)["assignments"], now)
    assert [line["agency_code"] for line in table] == ["dpupr"]


def test_narrative_and_csv():
    summary = {"year": 2020, "month": 11, "total": 11,
               "by_category": {"koperasi_umkm": 4, "lingkungan_hidup": 3, "infrastruktur": 1, "pungli": 1,
                               "pelayanan_umum": 0, "sosial": 1, "kesehatan": 1, "lainnya": 0},
               "by_region": {"5271": 10, "unknown": 1}, "by_agency": {"diskop-ukm": 4}, "followed_up": 10,
               "follow_up_rate": 0.9091, "resolved": 6, "median_hours_to_first_response": 5.25,
               "within_first_response_sla": 0.8}
    text = monthly_narrative(summary)
    assert text.startswith("Selama bulan November 2020, NTBCare menerima 11 aduan masyarakat: "
                           "4 aduan koperasi dan UMKM")
    assert "hampir semua sudah ditindaklanjuti (10 dari 11 aduan, 91%)" in text
    assert "diskop-ukm (4 aduan)" in text and "5,2 jam" in text  # no event named it: its code
    named = monthly_narrative(summary, {"diskop-ukm": "Dinas Koperasi, UKM dan Perdagangan"})
    assert "Dinas Koperasi, UKM dan Perdagangan (4 aduan)" in named
    body = summary_csv(summary)
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body and b"\n" not in body.replace(b"\r\n", b"")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["metric", "code", "label", "value"]
    assert ["by_category", "koperasi_umkm", "koperasi dan UMKM", "4"] in rows
    assert ["by_region", "unknown", "Tidak diketahui", "1"] in rows
    assert ["by_agency", "diskop-ukm", "diskop-ukm", "4"] in rows


def test_public_view_hides_confidential_answers():
    result = derived(HISTORY)
    view = complaint_status(result["complaint"], result["answers"])
    assert view["answers"][0]["text"] == "Perbaikan dijadwalkan minggu depan."
    assert view["status_label"] == "Selesai" and not view["open"] and view["expected_at"] is None
    secret = dict(result["complaint"], confidential=True)
    hidden = complaint_status(secret, result["answers"])
    assert hidden["answers"][0]["text"] is None and hidden["answer_texts_withheld"]
    assert normalise_tracking_code("ntb abcde fghjk") == "NTB-ABCDE-FGHJK"
