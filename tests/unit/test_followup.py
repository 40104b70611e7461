"""Issue 19, the pure rules: intake's recognition of the citizen's answer to "Sudah selesai?"
(quick-reply payloads, postbacks, free text) and its bad input; the payloads notification puts
on its buttons (the same contract, both sides); routing's reopen / refuse / rate commands and
the lifecycle they leave; the reports' satisfaction figures."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.intake.domain import followup
from services.intake.domain.webhook import MessengerMessage, parse_messaging
from services.notification.domain import loop
from services.notification.domain.policy import MessageKind
from services.reporting.domain.reports import satisfaction
from services.routing.domain.disposition import Disposition, InvalidAction
from services.routing.domain.rules import Decision
from services.routing.domain.sla import SlaPolicy, WorkingCalendar, load_holidays
from shared.core.events import types as ev
from shared.core.events.catalogue import InvalidEvent, validate_data
from tests.support import meta_payloads as meta

PAGE = "100000000000001"
CID = str(uuid.uuid4())
T0 = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


# --- recognising free text -------------------------------------------------------------------------

@pytest.mark.parametrize("text, answer, score", [
    ("belum pak", "not_solved", None),
    ("Belum", "not_solved", None),
    ("blm jalannya msh rusak", "not_solved", None),
    ("BELOM, lubangnya makin besar", "not_solved", None),
    ("pak, belum ada yang datang", "not_solved", None),
    ("masih", "not_solved", None),
    ("tidak", "not_solved", None),
    ("sdh, terima kasih", "solved", None),
    ("Sudah", "solved", None),
    ("udah beres min 👍", "solved", None),
    ("sudah, terima kasih 5", "solved", 5),
    ("iya", "solved", None),
    ("selesai", "solved", None),
    ("3", "rating", 3),
    (" 5 ", "rating", 5),
    ("4/5", "rating", 4),
    ("nilai 2", "rating", 2),
    ("5 bintang", "rating", 5),
    ("⭐⭐⭐⭐", "rating", 4),
])
def test_answers_are_recognised(text, answer, score):
    found = followup.recognise(text)
    assert found is not None and (found.answer, found.score) == (answer, score)
    assert found.words == text.strip()          # the citizen's words are kept as written


@pytest.mark.parametrize("text", [
    "0", "6", "10", "100", "nilai 9", "⭐⭐⭐⭐⭐⭐",
])
def test_a_number_outside_one_to_five_is_an_unclear_rating_never_a_score(text):
    found = followup.recognise(text)
    assert found is not None and (found.answer, found.score) == ("unclear_rating", None)


@pytest.mark.parametrize("text", [
    "", "   ", None,
    "Tidak ada air bersih di desa kami sejak seminggu, mohon bantuan",   # a new complaint
    "Jalan di Praya rusak lagi",
    "halo admin",
    "sudah tidak tahan dengan pungutan liar di pasar",                # "sudah tidak …": not an answer
    "ya ampun jembatan di desa kami putus total sejak kemarin malam",
    "belum " + "kata " * 60,                                          # too long to be an answer
    "CEK NTB-ABCDE-12345",
    "x" * 3000,
])
def test_text_that_does_not_look_like_an_answer_is_none(text):
    assert followup.recognise(text) is None


# --- payloads: notification writes them, intake reads them ----------------------------------------

def test_notifications_buttons_are_what_intake_understands():
    done = loop.quick_replies_for(MessageKind.FOLLOW_UP_QUESTION, CID)
    rate = loop.quick_replies_for(MessageKind.RATING_QUESTION, CID)
    assert [r["title"] for r in done] == ["Sudah", "Belum"] and [r["title"] for r in rate] == list("12345")
    understood = [followup.parse_payload(r["payload"], r["title"]) for r in done + rate]
    assert [(p.complaint_id, p.answer.answer, p.answer.score) for p in understood] == [
        (CID, "solved", None), (CID, "not_solved", None)] + [(CID, "rating", n) for n in range(1, 6)]
    # Meta's limits, which the sandbox enforces: text, title ≤ 20, payload ≤ 1000, at most 13.
    for reply in done + rate:
        assert reply["content_type"] == "text" and len(reply["title"]) <= 20 and len(reply["payload"]) <= 1000
    assert followup.done_payload(CID, True) == done[0]["payload"]
    assert followup.rate_payload(CID, 3) == rate[2]["payload"]
    assert loop.quick_replies_for(MessageKind.ANSWER, CID) == ()


@pytest.mark.parametrize("payload", [
    None, "", "GET_STARTED", "NTBCARE_DONE", f"NTBCARE_DONE:{CID}", "NTBCARE_DONE:not-a-uuid:YES",
    f"NTBCARE_DONE:{CID}:MAYBE", f"NTBCARE_RATE:{CID}:x", f"NTBCARE_OTHER:{CID}:1",
    f"NTBCARE_DONE:{CID}:YES:extra", "NTBCARE_" + "x" * 1200,
])
def test_payloads_that_are_not_ours_are_not_understood(payload):
    assert followup.parse_payload(payload, "Sudah") is None


def test_a_rating_button_of_another_scale_is_an_unclear_rating():
    payload = followup.parse_payload(f"NTBCARE_RATE:{CID}:7", "7")
    assert payload is not None and payload.answer.answer == "unclear_rating"


def test_meta_s_quick_reply_and_postback_shapes_carry_the_payload():
    tap = parse_messaging(PAGE, meta.quick_reply_tap(PAGE, "7001", "Belum", f"NTBCARE_DONE:{CID}:NO"))
    assert isinstance(tap, MessengerMessage)
    assert (tap.text, tap.payload, tap.postback) == ("Belum", f"NTBCARE_DONE:{CID}:NO", False)
    button = parse_messaging(PAGE, meta.button_postback(PAGE, "7001", "Sudah", f"NTBCARE_DONE:{CID}:YES"))
    assert isinstance(button, MessengerMessage) and (button.text, button.postback) == ("Sudah", True)
    # Other postbacks (Get Started) stay ignored by name, as before.
    assert parse_messaging(PAGE, meta.postback(PAGE, "7001")).why == "postback"


# --- the event's contract: bad input never becomes a recorded score -----------------------------

def _answer(**over):
    data = {"answer": "rating", "words": "3", "score": 3, "via": "text", "tracking_code": "NTB-ABCDE-12345",
            "reply_to": {"page_id": PAGE, "psid": "7001"}, "message_at": "2026-11-02T02:00:00Z"}
    return {**data, **over}


@pytest.mark.parametrize("over", [
    {"score": 0}, {"score": 6}, {"score": "3"}, {"score": None}, {"answer": "maybe"}, {"via": "email"},
])
def test_citizen_answered_follow_up_refuses_what_is_not_a_valid_answer(over):
    with pytest.raises(InvalidEvent):
        validate_data(ev.CITIZEN_ANSWERED_FOLLOW_UP, 1, _answer(**over))


def test_an_unclear_rating_is_recorded_without_a_score():
    validate_data(ev.CITIZEN_ANSWERED_FOLLOW_UP, 1, _answer(answer="unclear_rating", score=None, words="9"))


# --- routing: reopen, refuse, rate ------------------------------------------------------------------

@pytest.fixture
def policy():
    return SlaPolicy.from_env(None, WorkingCalendar(load_holidays()))


def resolved(policy, leads=("dpupr",)) -> Disposition:
    d = Disposition.new(CID, "NTB-ABCDE-12345", "infrastruktur", "5202", "normal", False, T0, "diskominfotik")
    apply(d, d.route(Decision(list(leads), [], "rule:x", "x"), T0, policy), T0)
    apply(d, d.acknowledge(leads[0], "o"), T0 + timedelta(hours=1))
    for code in leads:
        apply(d, d.respond(code, "Sudah diperbaiki.", True, "o"), T0 + timedelta(hours=2))
    assert d.public_status == "selesai"
    return d


def apply(d, events, now):
    d.apply_all(d.stamped(events), now)
    return events


def test_belum_reopens_to_the_leads_with_a_fresh_follow_up_clock_then_to_the_desk(policy):
    d = resolved(policy)
    now = T0 + timedelta(days=3)
    [(kind, data)] = apply(d, d.reopen("belum, masih rusak", now, policy, timedelta(days=14), "e1"), now)
    assert kind == ev.COMPLAINT_REOPENED and (data["reopen_count"], data["to_desk"]) == (1, False)
    assert set(data["due_at"]) == {"follow_up"} and d.lifecycle.snapshot()["deadlines"] == data["due_at"]
    snap = d.lifecycle.snapshot()
    assert (snap["status"], snap["open"], snap["lead_agencies"]) == ("diproses", True, ["dpupr"])
    assert snap["parts"]["dpupr"] == {"role": "lead", "acknowledged": True, "answered": False, "resolved": False}
    # The agency resolves it again; a second "belum" goes to the desk.
    apply(d, d.respond("dpupr", "Sudah diperbaiki ulang.", True, "o"), now + timedelta(days=1))
    later = now + timedelta(days=2)
    [(kind, data)] = apply(d, d.reopen("belum juga", later, policy, timedelta(days=14)), later)
    assert (data["reopen_count"], data["to_desk"], set(data["due_at"])) == (2, True, {"triage"})
    assert d.at_desk and d.public_status == "diproses" and d.lead_agencies == ["diskominfotik"]


@pytest.mark.parametrize("state, reason", [("period_over", "period_over"), ("open", "open"),
                                           ("dismissed", "dismissed")])
def test_belum_that_cannot_reopen_is_refused_with_its_reason(policy, state, reason):
    d = resolved(policy)
    now = T0 + timedelta(days=3)
    if state == "period_over":
        now = T0 + timedelta(days=15)
    elif state == "open":
        apply(d, d.reopen("belum", now, policy, timedelta(days=14)), now)
    else:
        d = Disposition.new(CID, "NTB-X", "infrastruktur", None, "normal", False, T0, "diskominfotik")
        apply(d, d.dismiss("spam", "desk"), now)
    [(kind, data)] = d.reopen("belum pak", now, policy, timedelta(days=14))
    assert (kind, data["reason"], data["words"], data["period_days"]) == (
        ev.COMPLAINT_REOPEN_REFUSED, reason, "belum pak", 14)


def test_a_rating_is_for_the_resolving_leads_once_per_resolution(policy):
    d = resolved(policy, leads=("dpupr", "polda-ntb"))
    [(kind, data)] = apply(d, d.rate(4, " mantap ", "e1"), T0 + timedelta(days=1))
    assert (kind, data["score"], data["words"], data["agencies"]) == (ev.CITIZEN_RATED, 4, "mantap",
                                                                     ["dpupr", "polda-ntb"])
    assert d.rate(5, "") == []                  # the second rating of the same resolution: nothing
    for bad in (0, 6, True, "4", None):
        with pytest.raises(InvalidAction):
            d.rate(bad, "")
    open_again = resolved(policy)
    apply(open_again, open_again.reopen("belum", T0 + timedelta(days=1), policy, timedelta(days=14)),
          T0 + timedelta(days=1))
    assert open_again.rate(3, "") == []         # open: nothing to rate


# --- reports ------------------------------------------------------------------------------------------

def test_satisfaction_counts_ratings_and_reopens_of_complaints_resolved_at_least_once():
    rows = [{"resolved": True, "reopens": 1, "rating": 4}, {"resolved": True, "reopens": 0, "rating": 2},
            {"resolved": False, "reopens": 1, "rating": None}, {"resolved": False, "reopens": 0, "rating": None}]
    assert satisfaction(rows) == {"rated": 2, "average_rating": 3.0, "rated_share": round(2 / 3, 4),
                                  "reopened": 2, "reopen_rate": round(2 / 3, 4)}
    assert satisfaction([]) == {"rated": 0, "average_rating": None, "rated_share": None, "reopened": 0,
                                "reopen_rate": None}


# --- the desk's console timeline -------------------------------------------------------------------

def test_the_console_timeline_tells_the_desk_what_the_citizen_said():
    from services.routing.adapters.console.present import timeline_entry
    at = "2026-11-02T02:00:00.000000Z"
    reopened = timeline_entry({"event_type": ev.COMPLAINT_REOPENED, "occurred_at": at, "data": {
        "words": "blm jalannya msh rusak", "actor": "citizen", "to_desk": False}}, {})
    assert reopened["label"] == "Dibuka kembali" and reopened["actor"] == "citizen"
    assert reopened["lines"] == ["Kembali ke instansi utama", "Kata warga: blm jalannya msh rusak"]
    refused = timeline_entry({"event_type": ev.COMPLAINT_REOPEN_REFUSED, "occurred_at": at,
                              "data": {"reason": "period_over", "words": "belum"}}, {})
    assert refused["lines"][0] == "Lewat batas waktu pembukaan kembali"
    rated = timeline_entry({"event_type": ev.CITIZEN_RATED, "occurred_at": at, "data": {"score": 4}}, {})
    assert (rated["label"], rated["lines"]) == ("Dinilai warga", ["Nilai 4 dari 5"])
