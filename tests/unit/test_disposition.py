"""The disposition aggregate: the agency cycle, rejection back to the desk, dismissal, refused
actions that record nothing, multi-lead resolution, escalation exactly once, public statuses."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.routing.domain.directory import load_directory
from services.routing.domain.disposition import (
    AlreadyResolved, ComplaintClosed, Disposition, InvalidAction, NotAssigned, UnknownAgency,
)
from services.routing.domain.rules import Decision, decide, load_rules
from services.routing.domain.sla import SlaPolicy, WorkingCalendar, load_holidays
from shared.core.events.catalogue import LATEST_VERSION, validate_data
from shared.core.events.envelope import isoformat_utc, parse_iso

WITA = timezone(timedelta(hours=8))
DESK = "diskominfotik"
T0 = datetime(2026, 8, 11, 9, 0, tzinfo=WITA).astimezone(timezone.utc)  # Tuesday 09:00 WITA


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture(scope="module")
def directory():
    return load_directory()


@pytest.fixture(scope="module")
def policy():
    return SlaPolicy.from_env(None, WorkingCalendar(load_holidays()))


TO_DPUPR = Decision(["dpupr"], [], "rule:infrastruktur-provinsi", "Infrastruktur provinsi.")
TO_DESK = Decision([DESK], [], "rule:desk-fallback", "Tidak ada aturan.", at_desk=True)
TWO_LEADS = Decision(["inspektorat", "polda-ntb"], ["kejati-ntb"], "rule:bersama", "Bersama.")


class Complaint:
    """A disposition plus its event log, applying what commands return the way the service does,
    and checking that a replay of the log always rebuilds the same state."""

    def __init__(self, priority="normal", tracking_code="NTB-7K3Q9"):
        self.start = Disposition.new("c0ffee00-0000-4000-8000-000000000001", tracking_code,
                                     "infrastruktur", "5201", priority, False, T0, DESK)
        self.log: list[tuple[str, dict, datetime]] = []
        self.d = Disposition.replay([], start=self.start)

    def do(self, events, when=T0):
        stamped = self.d.stamped(events)
        for event_type, data in stamped:
            validate_data(event_type, LATEST_VERSION[event_type], data)  # lifecycle included
            self.log.append((event_type, data, when))
        self.d.apply_all(stamped, when)
        if stamped:
            assert stamped[-1][1]["lifecycle"] == self.d.lifecycle.snapshot()
        replayed = Disposition.replay(self.log, start=self.start)
        assert (replayed.status, replayed.lead_agencies, replayed.due_at, replayed.escalated) == \
            (self.d.status, self.d.lead_agencies, self.d.due_at, self.d.escalated)
        return events

    def types(self):
        return [event_type for event_type, _, _ in self.log]

    def refused(self, error, command, *args, **kwargs):
        before = (len(self.log), self.d.version, self.d.status)
        with pytest.raises(error) as caught:
            command(*args, **kwargs)
        assert (len(self.log), self.d.version, self.d.status) == before
        assert str(caught.value)
        return caught.value


def test_full_agency_cycle(policy):
    c = Complaint()
    assert (c.d.status, c.d.public_status, c.d.at_desk) == ("filed", "diterima", True)
    [(event_type, data)] = c.do(c.d.route(TO_DPUPR, T0, policy))
    assert event_type == "ComplaintRouted"
    assert data == {
        "lead_agencies": ["dpupr"], "coordinating_agencies": [],
        "decided_by": "rule:infrastruktur-provinsi", "reason": "Infrastruktur provinsi.",
        "priority": "normal",
        "due_at": {"first_response": isoformat_utc(at(48)),
                   "follow_up": isoformat_utc(datetime(2026, 8, 19, 9, 0, tzinfo=WITA))},
    }
    assert all(value.endswith("Z") for value in data["due_at"].values())
    assert (c.d.status, c.d.public_status, c.d.at_desk) == ("assigned", "disetujui", False)

    assert c.do(c.d.acknowledge("dpupr", "budi@dpupr"), at(1)) == [
        ("ComplaintAcknowledged", {"agency_code": "dpupr", "actor": "budi@dpupr"})]
    assert (c.d.status, c.d.public_status) == ("in_progress", "diproses")

    c.do(c.d.respond("dpupr", "Tim sedang menuju lokasi.", False, "budi@dpupr"), at(2))
    assert c.d.public_status == "diproses" and c.d.is_open

    events = c.do(c.d.respond("dpupr", " Jalan sudah ditambal. ", True, "budi@dpupr"), at(30))
    assert events == [
        ("ComplaintResponded", {"agency_code": "dpupr", "text": "Jalan sudah ditambal.",
                                "resolved": True, "actor": "budi@dpupr"}),
        ("ComplaintResolved", {"actor": "budi@dpupr"}),
    ]
    assert (c.d.status, c.d.public_status, c.d.is_open) == ("resolved", "selesai", False)
    assert c.d.breaches(at(10_000), load_directory()) == []


def test_rule_decision_to_the_desk_then_operator_assigns(policy, directory):
    rules = load_rules(directory=directory)
    c = Complaint()
    decision = decide(directory, rules, "lainnya", None, "mohon info", "normal")
    [(_, data)] = c.do(c.d.route(decision, T0, policy))
    assert data["lead_agencies"] == [DESK] and data["decided_by"] == "rule:desk-fallback"
    assert data["due_at"] == {"triage": isoformat_utc(datetime(2026, 8, 14, 9, 0, tzinfo=WITA))}
    assert (c.d.status, c.d.public_status, c.d.at_desk) == ("triage", "diterima", True)
    c.refused(NotAssigned, c.d.acknowledge, DESK, "op")

    [(_, data)] = c.do(c.d.assign(["pemkab-lobar", "dpupr"], "Jalan kabupaten di Gerung.",
                                  "sari", at(3), policy, directory), at(3))
    assert data["lead_agencies"] == ["pemkab-lobar"]
    assert data["coordinating_agencies"] == ["dpupr"]
    assert data["decided_by"] == "operator:sari"
    assert data["reason"] == "Jalan kabupaten di Gerung."
    assert set(data["due_at"]) == {"first_response", "follow_up"}
    assert parse_iso(data["due_at"]["first_response"]) == at(3 + 48)
    assert (c.d.public_status, c.d.at_desk) == ("disetujui", False)


def test_reject_returns_to_the_desk_and_re_routing_starts_again(policy, directory):
    c = Complaint()
    c.do(c.d.route(TO_DPUPR, T0, policy))
    c.do(c.d.acknowledge("dpupr", "budi"), at(1))
    [(event_type, data)] = c.do(
        c.d.reject("dpupr", "Bukan wewenang: jalan kabupaten.", "budi", at(2), policy), at(2))
    assert event_type == "ComplaintRejectedByAgency"
    assert {key: data[key] for key in ("agency_code", "reason", "actor")} == {
        "agency_code": "dpupr", "reason": "Bukan wewenang: jalan kabupaten.", "actor": "budi"}
    assert data["returned_to_desk"] is True
    assert data["due_at"] == {"triage": isoformat_utc(datetime(2026, 8, 14, 11, 0, tzinfo=WITA))}
    assert (c.d.status, c.d.public_status, c.d.at_desk) == ("returned", "diproses", True)
    assert c.d.lead_agencies == [DESK]
    assert not c.d.can_be_seen_by("dpupr") and c.d.can_be_seen_by(DESK)
    c.refused(NotAssigned, c.d.respond, "dpupr", "jawaban", False, "budi")

    c.do(c.d.assign(["pemkab-lobar"], "Jalan kabupaten.", "sari", at(5), policy, directory), at(5))
    assert (c.d.public_status, c.d.lead_agencies) == ("disetujui", ["pemkab-lobar"])
    c.do(c.d.respond("pemkab-lobar", "Diperbaiki minggu depan.", True, "ani"), at(6))
    assert c.d.public_status == "selesai"


def test_reject_by_a_coordinating_agency_keeps_the_lead(policy, directory):
    c = Complaint()
    c.do(c.d.assign(["dpupr", "bpjn-ntb"], "Ruas campuran.", "sari", T0, policy, directory))
    [(_, data)] = c.do(c.d.reject("bpjn-ntb", "Bukan jalan nasional.", "rudi", at(1), policy))
    assert "returned_to_desk" not in data
    assert (c.d.lead_agencies, c.d.coordinating_agencies, c.d.at_desk) == (["dpupr"], [], False)


def test_dismiss(policy):
    c = Complaint()
    c.do(c.d.route(TO_DESK, T0, policy))
    assert c.do(c.d.dismiss("Aduan ganda.", "sari", duplicate_of="NTB-AAAA1")) == [
        ("ComplaintDismissed", {"reason": "Aduan ganda.", "duplicate_of": "NTB-AAAA1",
                                "actor": "sari"})]
    assert (c.d.status, c.d.public_status, c.d.is_open, c.d.at_desk) == (
        "dismissed", "ditolak", False, False)
    c.refused(ComplaintClosed, c.d.dismiss, "lagi", "sari")
    c.refused(ComplaintClosed, c.d.acknowledge, DESK, "x")
    c.refused(ComplaintClosed, c.d.assign, ["dpupr"], "n", "sari", T0, policy, load_directory())
    c.refused(ComplaintClosed, c.d.set_priority, "urgent", "r", "sari", T0, policy)
    assert c.d.breaches(at(10_000), load_directory()) == []


def test_dismiss_without_duplicate_and_refused_forms(policy):
    c = Complaint()
    c.do(c.d.route(TO_DPUPR, T0, policy))
    c.refused(InvalidAction, c.d.dismiss, " ", "sari")
    c.refused(InvalidAction, c.d.dismiss, "ganda", "sari", duplicate_of="NTB-7K3Q9")
    [(_, data)] = c.do(c.d.dismiss("Bukan aduan.", "sari"))
    assert data["duplicate_of"] is None


def test_illegal_actions_record_nothing(policy, directory):
    c = Complaint()
    # before any routing
    c.refused(NotAssigned, c.d.respond, "dpupr", "jawaban", True, "budi")
    c.refused(InvalidAction, c.d.set_priority, "urgent", "r", "sari", T0, policy)
    c.do(c.d.route(TO_DPUPR, T0, policy))
    c.refused(InvalidAction, c.d.route, TO_DPUPR, T0, policy)
    # an agency acting on a complaint it is not assigned
    error = c.refused(NotAssigned, c.d.acknowledge, "dlhk", "x")
    assert "dlhk" in str(error) and "NTB-7K3Q9" in str(error)
    c.refused(NotAssigned, c.d.reject, "dlhk", "r", "x", T0, policy)
    # malformed requests
    c.refused(InvalidAction, c.d.respond, "dpupr", "   ", False, "budi")
    c.refused(InvalidAction, c.d.respond, "dpupr", "ok", "yes", "budi")
    c.refused(InvalidAction, c.d.reject, "dpupr", "", "budi", T0, policy)
    c.refused(UnknownAgency, c.d.assign, ["dinas-fiktif"], "n", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.assign, [], "n", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.assign, ["dlhk", "dlhk"], "n", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.assign, [DESK, "dlhk"], "n", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.assign, ["dlhk"], " ", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.assign, ["dpupr"], "sama", "sari", T0, policy, directory)
    c.refused(InvalidAction, c.d.set_priority, "normal", "sama", "sari", T0, policy)
    c.refused(InvalidAction, c.d.set_priority, "kritis", "r", "sari", T0, policy)
    # resolve twice
    c.do(c.d.acknowledge("dpupr", "budi"))
    c.refused(InvalidAction, c.d.acknowledge, "dpupr", "budi")
    c.do(c.d.respond("dpupr", "Selesai.", True, "budi"))
    c.refused(AlreadyResolved, c.d.respond, "dpupr", "Selesai lagi.", True, "budi")
    c.refused(ComplaintClosed, c.d.respond, "dpupr", "Tambahan.", False, "budi")
    c.refused(ComplaintClosed, c.d.reject, "dpupr", "r", "budi", T0, policy)
    assert c.types().count("ComplaintResolved") == 1


def test_multi_lead_resolution(policy):
    c = Complaint()
    c.do(c.d.route(TWO_LEADS, T0, policy))
    assert c.d.lead_agencies == ["inspektorat", "polda-ntb"]
    # coordinating agencies may acknowledge and answer, but not resolve
    c.do(c.d.acknowledge("kejati-ntb", "jaksa"), at(1))
    c.do(c.d.respond("kejati-ntb", "Kami pantau.", False, "jaksa"), at(1))
    c.refused(InvalidAction, c.d.respond, "kejati-ntb", "Selesai.", True, "jaksa")

    assert c.do(c.d.respond("inspektorat", "Sudah diperiksa.", True, "ira"), at(2)) == [
        ("ComplaintResponded", {"agency_code": "inspektorat", "text": "Sudah diperiksa.",
                                "resolved": True, "actor": "ira"})]
    assert (c.d.public_status, c.d.resolved_agencies) == ("diproses", ["inspektorat"])
    c.refused(AlreadyResolved, c.d.respond, "inspektorat", "Lagi.", True, "ira")
    c.refused(InvalidAction, c.d.reject, "inspektorat", "r", "ira", at(3), policy)
    c.do(c.d.respond("inspektorat", "Keterangan tambahan.", False, "ira"), at(3))

    events = c.do(c.d.respond("polda-ntb", "Pelaku ditangkap.", True, "bripka"), at(4))
    assert [event_type for event_type, _ in events] == ["ComplaintResponded", "ComplaintResolved"]
    assert events[1][1] == {"actor": "bripka"}
    assert c.d.public_status == "selesai"


def test_rejection_by_the_last_unresolved_lead_resolves(policy):
    c = Complaint()
    c.do(c.d.route(TWO_LEADS, T0, policy))
    c.do(c.d.respond("inspektorat", "Sudah diperiksa.", True, "ira"), at(1))
    events = c.do(c.d.reject("polda-ntb", "Bukan tindak pidana.", "bripka", at(2), policy), at(2))
    assert [event_type for event_type, _ in events] == [
        "ComplaintRejectedByAgency", "ComplaintResolved"]
    assert c.d.public_status == "selesai"


def test_breaches_exactly_once_and_re_routing_resets(policy, directory):
    c = Complaint()
    c.do(c.d.route(TO_DPUPR, T0, policy))
    assert c.d.breaches(at(48), directory) == []  # due, not yet past due
    [(event_type, data)] = c.do(c.d.breaches(at(49), directory), at(49))
    assert event_type == "ComplaintEscalated"
    assert data == {"breach": "first_response", "due_at": isoformat_utc(at(48)),
                    "notified": ["inspektorat", DESK]}
    assert c.d.breaches(at(50), directory) == []
    follow_up = datetime(2026, 8, 19, 9, 0, tzinfo=WITA)  # Monday 17 is a holiday
    assert c.d.breaches(follow_up, directory) == []
    [(_, data)] = c.do(c.d.breaches(follow_up + timedelta(minutes=1), directory))
    assert data["breach"] == "follow_up" and c.d.breaches(at(10_000), directory) == []
    assert c.d.escalated == {"first_response", "follow_up"}
    assert c.d.public_status == "disetujui"  # escalation changes no public status

    now = at(200)
    c.do(c.d.assign(["pemkab-lotim"], "Ternyata jalan kabupaten.", "sari", now, policy, directory),
         now)
    assert c.d.escalated == set()
    assert c.d.breaches(now + timedelta(hours=47), directory) == []
    [(_, data)] = c.do(c.d.breaches(now + timedelta(hours=49), directory))
    assert data["breach"] == "first_response"
    assert data["notified"] == ["biro-organisasi", DESK]


def test_acknowledgment_stops_first_response_and_an_answer_stops_follow_up(policy, directory):
    c = Complaint()
    c.do(c.d.assign(["dpupr", "bpjn-ntb"], "Ruas campuran.", "sari", T0, policy, directory))
    c.do(c.d.acknowledge("bpjn-ntb", "rudi"), at(1))  # a coordinating agency stops no clock
    assert [data["breach"] for _, data in c.d.breaches(at(49), directory)] == ["first_response"]
    c.do(c.d.acknowledge("dpupr", "budi"), at(2))
    assert [data["breach"] for _, data in c.d.breaches(at(10_000), directory)] == ["follow_up"]
    c.do(c.d.respond("dpupr", "Sedang disurvei.", False, "budi"), at(3))
    assert c.d.breaches(at(10_000), directory) == []


def test_triage_breach_notifies_the_desk(policy, directory):
    c = Complaint()
    c.do(c.d.route(TO_DESK, T0, policy))
    due = datetime(2026, 8, 14, 9, 0, tzinfo=WITA)
    assert c.d.breaches(due, directory) == []
    [(_, data)] = c.do(c.d.breaches(due + timedelta(seconds=1), directory))
    assert data == {"breach": "triage", "due_at": isoformat_utc(due), "notified": [DESK]}
    assert c.d.breaches(due + timedelta(days=30), directory) == []


def test_set_priority_restarts_only_the_first_response(policy, directory):
    c = Complaint()
    c.do(c.d.route(TO_DPUPR, T0, policy))
    follow_up = c.d.due_at["follow_up"]
    c.do(c.d.breaches(follow_up + timedelta(seconds=1), directory))
    assert c.d.escalated == {"first_response", "follow_up"}

    now = follow_up + timedelta(hours=1)
    [(event_type, data)] = c.do(
        c.d.set_priority("urgent", "Jalan putus total.", "sari", now, policy), now)
    assert event_type == "ComplaintRouted"
    assert data["priority"] == "urgent" and data["lead_agencies"] == ["dpupr"]
    assert data["decided_by"] == "operator:sari"
    assert parse_iso(data["due_at"]["first_response"]) == now + timedelta(hours=1)
    assert parse_iso(data["due_at"]["follow_up"]) == follow_up
    assert (c.d.priority, c.d.escalated) == ("urgent", {"follow_up"})
    [(_, data)] = c.d.breaches(now + timedelta(hours=2), directory)
    assert data["breach"] == "first_response"


def test_set_priority_at_the_desk_keeps_the_triage_clock(policy):
    c = Complaint()
    c.do(c.d.route(TO_DESK, T0, policy))
    triage = c.d.due_at
    c.do(c.d.set_priority("urgent", "Darurat.", "sari", at(5), policy), at(5))
    assert (c.d.due_at, c.d.at_desk, c.d.public_status) == (triage, True, "diterima")


@pytest.mark.parametrize("steps, status, public", [
    ([], "filed", "diterima"),
    (["desk"], "triage", "diterima"),
    (["route"], "assigned", "disetujui"),
    (["route", "ack"], "in_progress", "diproses"),
    (["route", "answer"], "in_progress", "diproses"),
    (["route", "reject"], "returned", "diproses"),
    (["route", "dismiss"], "dismissed", "ditolak"),
    (["desk", "dismiss"], "dismissed", "ditolak"),
    (["route", "resolve"], "resolved", "selesai"),
])
def test_public_status_for_every_state(policy, steps, status, public):
    c = Complaint()
    actions = {
        "desk": lambda: c.d.route(TO_DESK, T0, policy),
        "route": lambda: c.d.route(TO_DPUPR, T0, policy),
        "ack": lambda: c.d.acknowledge("dpupr", "budi"),
        "answer": lambda: c.d.respond("dpupr", "Dicek.", False, "budi"),
        "reject": lambda: c.d.reject("dpupr", "Bukan wewenang.", "budi", at(1), policy),
        "dismiss": lambda: c.d.dismiss("Spam.", "sari"),
        "resolve": lambda: c.d.respond("dpupr", "Beres.", True, "budi"),
    }
    for step in steps:
        c.do(actions[step]())
    assert (c.d.status, c.d.public_status) == (status, public)


def test_replay_from_the_complaint_filed_fact(policy):
    c = Complaint(priority="important")
    c.do(c.d.route(TO_DPUPR, T0, policy))
    c.do(c.d.acknowledge("dpupr", "budi"), at(1))
    filed = ("ComplaintFiled", {
        "complaint_id": c.d.complaint_id, "tracking_code": "NTB-7K3Q9",
        "category": "infrastruktur", "region_code": "5201", "priority": "important",
        "confidential": False, "filed_at": isoformat_utc(T0),
    }, isoformat_utc(T0))
    rebuilt = Disposition.replay([filed] + [(t, d, isoformat_utc(w)) for t, d, w in c.log],
                                 desk_code=DESK)
    assert (rebuilt.status, rebuilt.version, rebuilt.priority) == ("in_progress", 2, "important")
    assert rebuilt.due_at["first_response"] == at(24)
    with pytest.raises(ValueError, match="ComplaintFiled"):
        Disposition.replay([], desk_code=DESK)
    with pytest.raises(ValueError, match="no event"):
        rebuilt.apply("ComplaintTeleported", {}, T0)


def test_who_can_see_it(policy, directory):
    c = Complaint()
    c.do(c.d.assign(["dpupr", "bpjn-ntb"], "Ruas campuran.", "sari", T0, policy, directory))
    assert [c.d.can_be_seen_by(code) for code in ("dpupr", "bpjn-ntb", DESK, "dlhk")] == [
        True, True, True, False]
