"""The desk's correction of a complaint's category and region (issue 20, item 3): the event with
before → after and the actor, a re-route exactly when the rule that applies changes, refusals
that record nothing — decided with the real rules and directory."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import pytest

from services.routing.domain.directory import load_directory
from services.routing.domain.disposition import ComplaintClosed, Disposition, InvalidAction
from services.routing.domain.rules import decide, load_rules
from services.routing.domain.sla import SlaPolicy, WorkingCalendar, load_holidays
from shared.core.events import types as ev
from shared.core.events.catalogue import LATEST_VERSION, validate_data
from shared.core.reference import CONFIDENTIAL_CATEGORIES

DESK = "diskominfotik"
T0 = datetime(2026, 8, 11, 1, 0, tzinfo=timezone.utc)
TEXT = "Jalan di depan rumah saya berlubang besar sudah tiga bulan"


@pytest.fixture(scope="module")
def directory():
    return load_directory()


@pytest.fixture(scope="module")
def rules(directory):
    return load_rules(directory=directory)


@pytest.fixture(scope="module")
def policy():
    return SlaPolicy.from_env(None, WorkingCalendar(load_holidays()))


def routed(directory, rules, policy, category="infrastruktur", region="5201", text=TEXT):
    """A complaint filed with ``category``/``region`` and routed by the rules, as routing does."""
    d = Disposition.new("c0ffee00-0000-4000-8000-000000000020", "NTB-R20AA", category, region,
                        "normal", category in CONFIDENTIAL_CATEGORIES, T0, DESK)  # as intake files it
    record(d, d.route(decide(directory, rules, category, region, text, "normal"), T0, policy))
    return d


def record(d: Disposition, events):
    stamped = d.stamped(events)
    for event_type, data in stamped:
        validate_data(event_type, LATEST_VERSION[event_type], data)
    d.apply_all(stamped, T0 + timedelta(hours=1))
    return stamped


def deciding(directory, rules, text=TEXT):
    return lambda category, region: decide(directory, rules, category, region, text, "normal")


def test_a_wrong_region_corrected_reroutes_to_the_right_district(directory, rules, policy):
    d = routed(directory, rules, policy, region="5201")
    assert d.lead_agencies == ["pemkab-lobar"]
    events = record(d, d.reclassify(None, "5202", "Desa Sengkol ada di Lombok Tengah", "rina",
                                    T0, policy, deciding(directory, rules)))
    assert [t for t, _ in events] == [ev.COMPLAINT_RECLASSIFIED, ev.COMPLAINT_ROUTED]
    correction, route = events[0][1], events[1][1]
    assert (correction["category_before"], correction["category_after"]) == ("infrastruktur",) * 2
    assert (correction["region_before"], correction["region_after"]) == ("5201", "5202")
    assert (correction["actor"], correction["rerouted"]) == ("rina", True)
    assert route["lead_agencies"] == ["pemkab-loteng"]
    assert route["decided_by"].startswith("rule:")
    assert (d.region_code, d.category, d.lead_agencies) == ("5202", "infrastruktur", ["pemkab-loteng"])
    # The old district's part is gone; the new one starts fresh (disetujui).
    assert set(d.lifecycle.parts) == {"pemkab-loteng"} and d.public_status == "disetujui"


def test_an_unrouted_complaint_leaves_the_desk_when_its_region_is_set(directory, rules, policy):
    text = "Jalan desa di depan rumah saya berlubang besar"
    d = routed(directory, rules, policy, region=None, text=text)
    assert d.at_desk
    events = record(d, d.reclassify(None, "5271", "Pagutan, Kota Mataram", "rina", T0, policy,
                                    deciding(directory, rules, text)))
    assert [t for t, _ in events] == [ev.COMPLAINT_RECLASSIFIED, ev.COMPLAINT_ROUTED]
    assert events[0][1]["region_before"] is None
    assert not d.at_desk and d.lead_agencies == [directory.district_for("5271").code]


def test_a_correction_that_keeps_the_rule_changes_only_the_facts(directory, rules, policy):
    # An illegal levy goes to the inspectorate whatever the region: the region fixed, no re-route.
    text = "Ada pungutan liar di kantor desa untuk surat keterangan"
    d = routed(directory, rules, policy, category="pungli", region="5201", text=text)
    leads = d.lead_agencies
    events = record(d, d.reclassify(None, "5203", "Anjani ada di Lombok Timur", "rina", T0, policy,
                                    deciding(directory, rules, text)))
    assert [t for t, _ in events] == [ev.COMPLAINT_RECLASSIFIED]
    assert events[0][1]["rerouted"] is False
    assert d.lead_agencies == leads and d.region_code == "5203"


def test_a_correction_keeps_the_desks_own_reroute_when_the_rule_does_not_change(directory, rules, policy):
    text = "pungutan liar di pasar"
    d = routed(directory, rules, policy, category="pungli", region="5201", text=text)
    record(d, d.assign(["dpupr"], "dicoba dinas lain", "rina", T0, policy, directory))
    events = record(d, d.reclassify(None, "5202", "wilayah", "rina", T0, policy,
                                    deciding(directory, rules, text)))
    assert events[0][1]["rerouted"] is False and d.lead_agencies == ["dpupr"]


def test_refusals_record_nothing(directory, rules, policy):
    d = routed(directory, rules, policy)
    decide_ = deciding(directory, rules)
    correct = partial(d.reclassify, now=T0, sla_policy=policy, decide=decide_)
    with pytest.raises(InvalidAction, match="nothing to correct"):
        correct("infrastruktur", "5201", "sama", "rina")
    with pytest.raises(InvalidAction, match="unknown region code"):
        correct(None, "9999", "salah", "rina")
    with pytest.raises(InvalidAction, match="unknown category"):
        correct("jalan", None, "salah", "rina")
    with pytest.raises(InvalidAction, match="reason"):
        correct(None, "5202", "  ", "rina")
    record(d, d.dismiss("spam", "rina"))
    with pytest.raises(ComplaintClosed, match="dismissed"):
        correct(None, "5202", "wilayah", "rina")
    assert d.region_code == "5201"


def test_replay_rebuilds_the_corrected_facts(directory, rules, policy):
    d = routed(directory, rules, policy)
    log = []
    start = Disposition.new(d.complaint_id, d.tracking_code, "infrastruktur", "5201", "normal",
                            False, T0, DESK)
    first = start.stamped(start.route(decide(directory, rules, "infrastruktur", "5201", TEXT), T0, policy))
    start_copy = Disposition.replay([], start=start)
    for event_type, data in first:
        log.append((event_type, data, T0))
        start_copy.apply(event_type, data, T0)
    for event_type, data in record(start_copy, start_copy.reclassify(
            "lingkungan_hidup", "5202", "sampah", "rina", T0, policy, deciding(directory, rules))):
        log.append((event_type, data, T0))
    replayed = Disposition.replay(log, start=start)
    assert (replayed.category, replayed.region_code, replayed.lead_agencies) == \
        ("lingkungan_hidup", "5202", start_copy.lead_agencies)


def test_the_citizen_is_told_only_of_a_reroute_with_the_new_agency(directory, rules, policy):
    """Notification's composer: the correction itself says nothing to the citizen (a fact about
    the desk's classification); the re-route it causes is told by the existing routed message,
    naming the new district (the directory's names ride on routing's events)."""
    from services.notification.domain.composer import ComplaintView, drafts_for_event
    from services.notification.domain.policy import MessageKind

    view = ComplaintView("NTB-R20AA", "facebook_messenger", {"page_id": "1", "psid": "7"}, False)
    d = routed(directory, rules, policy, region="5201")
    events = d.stamped(d.reclassify(None, "5202", "Sengkol", "rina", T0, policy, deciding(directory, rules)))
    named = [(t, {**data, "lifecycle": {**data["lifecycle"], "agency_names": {
        code: directory.get(code).name for code in data["lifecycle"]["agency_names"]}}})
        for t, data in events]
    [(correction_type, correction), (route_type, route)] = named
    assert drafts_for_event(view, correction_type, correction) == []
    [draft] = drafts_for_event(view, route_type, route)
    assert draft.kind == MessageKind.ROUTED
    assert directory.get("pemkab-loteng").name in draft.text
    assert directory.get("pemkab-lobar").name not in draft.text
    # Not re-routed: nothing at all.
    d2 = routed(directory, rules, policy, category="pungli", region="5201", text="pungutan liar di pasar")
    [(t, data)] = d2.stamped(d2.reclassify(None, "5202", "wilayah", "rina", T0, policy,
                                           deciding(directory, rules, "pungutan liar di pasar")))
    assert drafts_for_event(view, t, data) == []


def test_a_correction_to_an_illegal_levy_makes_it_confidential_before_the_reroute(directory, rules, policy):
    text = "Diminta bayar untuk surat keterangan di kantor desa"
    d = routed(directory, rules, policy, category="pelayanan_umum", region="5203", text=text)
    assert not d.confidential
    events = record(d, d.reclassify("pungli", None, "ini pungutan liar", "rina", T0, policy,
                                    deciding(directory, rules, text)))
    assert [t for t, _ in events] == [ev.COMPLAINT_RECLASSIFIED, ev.COMPLAINT_CONFIDENTIALITY_CHANGED,
                                      ev.COMPLAINT_ROUTED]
    assert events[1][1]["actor"] == "rina" and events[2][1]["lifecycle"]["confidential"] is True
    assert d.confidential and d.lead_agencies == ["inspektorat"]
