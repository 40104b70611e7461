"""Which messages each event gives the citizen, and the status answers (pure composer): the
status, agencies, names and confidentiality all come from the lifecycle routing's events carry."""
from __future__ import annotations

from services.notification.domain.composer import (ComplaintView, current_confidentiality, drafts_for_event,
                                            is_filer, last_update, latest_lifecycle, status_reply)
from services.notification.domain.policy import COMMENT_PRIVATE, COMMENT_PUBLIC, MESSENGER, MessageKind, message_id_for
from tests.support.lifecycle import snapshot

PAGE = "100000000000001"
CODE = "NTB-AB12C-DE34F"
MESSENGER_REPLY = {"page_id": PAGE, "psid": "777"}
COMMENT_REPLY = {"page_id": PAGE, "comment_id": "1_2", "post_id": "1"}
MESSENGER_VIEW = ComplaintView(CODE, "facebook_messenger", MESSENGER_REPLY, False)
COMMENT_VIEW = ComplaintView(CODE, "facebook_comment", COMMENT_REPLY, False)
CONFIDENTIAL_MESSENGER = ComplaintView(CODE, "facebook_messenger", MESSENGER_REPLY, True)
CONFIDENTIAL_COMMENT = ComplaintView(CODE, "facebook_comment", COMMENT_REPLY, True)
NAMES = {"dpupr": "Dinas PUPR Provinsi NTB", "bpjn-ntb": "BPJN NTB", "polda-ntb": "Polda NTB",
         "inspektorat": "Inspektorat Provinsi NTB", "diskominfotik": "Diskominfotik"}
DUE = {"first_response": "2024-01-02T00:00:00Z", "follow_up": "2024-01-09T00:00:00Z"}


def routed(lifecycle, leads=("dpupr",), coordinating=()):
    return {"lead_agencies": list(leads), "coordinating_agencies": list(coordinating),
            "decided_by": "rule:road", "reason": "jalan", "priority": "normal", "due_at": DUE,
            "lifecycle": lifecycle}


def part(role="lead", acknowledged=True, answered=False, resolved=False):
    return {"role": role, "acknowledged": acknowledged, "answered": answered, "resolved": resolved}


def answer(code, text, lifecycle, resolved=False):
    return {"agency_code": code, "text": text, "resolved": resolved, "actor": f"{code}:budi",
            "lifecycle": lifecycle}


def recorded(event_type, at, **data):
    """One event as notification records it (``handling.complaint_history``)."""
    return {"event_type": event_type, "occurred_at": at, "data": data}


TWO_LEADS = dict(leads=("dpupr", "polda-ntb"), names=NAMES)


# --- messages of each event ----------------------------------------------------------------------

def test_messenger_acknowledgment_is_one_message_without_public_fallback():
    [draft] = drafts_for_event(MESSENGER_VIEW, "ComplaintFiled", {"channel": "facebook_messenger"})
    assert draft.kind == MessageKind.ACKNOWLEDGMENT and draft.public_text is None
    assert CODE in draft.text and not draft.human_written


def test_comment_acknowledgment_is_a_private_reply_and_a_public_reply_with_distinct_ids():
    private, public = drafts_for_event(COMMENT_VIEW, "ComplaintFiled", {})
    assert COMMENT_PUBLIC in private.excluded_channels and private.public_text is None
    assert set(public.excluded_channels) == {MESSENGER, COMMENT_PRIVATE}
    assert CODE in public.public_text
    assert message_id_for("e1", private.identity_kind) != message_id_for("e1", public.identity_kind)


def test_routed_names_the_lifecycle_agencies_and_falls_back_to_codes():
    lifecycle = snapshot("disetujui", leads=["dpupr"], coordinating=["bpjn-ntb"],
                         names={"dpupr": NAMES["dpupr"]})
    [draft] = drafts_for_event(MESSENGER_VIEW, "ComplaintRouted", routed(lifecycle, coordinating=["bpjn-ntb"]))
    assert draft.kind == MessageKind.ROUTED
    assert "Dinas PUPR Provinsi NTB" in draft.text and "bpjn-ntb" in draft.text


def test_routed_names_the_lifecycle_leads_not_the_event_fields():
    # The lifecycle is the truth: a lead the event's own list names but the lifecycle does not
    # (routing decided otherwise) is not announced.
    lifecycle = snapshot("disetujui", leads=["polda-ntb"], names=NAMES)
    [draft] = drafts_for_event(MESSENGER_VIEW, "ComplaintRouted", routed(lifecycle, leads=["dpupr"]))
    assert "Polda NTB" in draft.text and "PUPR" not in draft.text


def test_routed_to_the_desk_sends_nothing():
    # Recognised by the lifecycle (at the desk), whatever the event's own fields look like.
    first_triage = snapshot("diterima", stage="triage", names=NAMES)
    handed_back = snapshot("diproses", stage="returned", names=NAMES,
                           parts={"dpupr": part("handed_back", acknowledged=False)})
    for lifecycle in (first_triage, handed_back):
        desk = routed(lifecycle, leads=["diskominfotik"])
        assert drafts_for_event(MESSENGER_VIEW, "ComplaintRouted", desk) == []


def test_confidential_routing_names_no_agency():
    lifecycle = snapshot("disetujui", leads=["inspektorat"], coordinating=["dpupr"], names=NAMES,
                         confidential=True)
    [draft] = drafts_for_event(CONFIDENTIAL_MESSENGER, "ComplaintRouted", routed(lifecycle))
    assert CODE in draft.text and "dirahasiakan" in draft.text
    assert "Inspektorat" not in draft.text and "PUPR" not in draft.text and "dpupr" not in draft.text


def test_answer_is_human_written_and_attributed_and_public_reply_carries_no_content():
    lifecycle = snapshot("diproses", names=NAMES, parts={"dpupr": part(answered=True)})
    [draft] = drafts_for_event(COMMENT_VIEW, "ComplaintResponded",
                               answer("dpupr", "Jalan diperbaiki besok.", lifecycle))
    assert draft.human_written and draft.kind == MessageKind.ANSWER
    assert draft.text.startswith("Jawaban dari Dinas PUPR Provinsi NTB")
    assert "Jalan diperbaiki besok." in draft.text
    assert "diperbaiki" not in draft.public_text and "diproses" in draft.public_text
    assert "Dinas" not in draft.public_text and COMMENT_PUBLIC not in draft.excluded_channels


def test_two_leads_first_resolving_answer_says_diproses_then_resolved_says_selesai():
    first = snapshot("diproses", **TWO_LEADS, parts={
        "dpupr": part(answered=True, resolved=True), "polda-ntb": part(acknowledged=False)})
    [answered] = drafts_for_event(COMMENT_VIEW, "ComplaintResponded",
                                  answer("dpupr", "Bagian kami sudah selesai.", first, resolved=True))
    assert "status: diproses" in answered.public_text and "selesai" not in answered.public_text

    last = snapshot("selesai", **TWO_LEADS, parts={
        "dpupr": part(answered=True, resolved=True), "polda-ntb": part(answered=True, resolved=True)})
    [second] = drafts_for_event(COMMENT_VIEW, "ComplaintResponded",
                                answer("polda-ntb", "Pelaku sudah ditindak.", last, resolved=True))
    assert second.text.startswith("Jawaban dari Polda NTB") and "status: selesai" in second.public_text
    # The outcome, then "Sudah selesai?" (issue 19: Messenger only, never under the comment).
    outcome, question = drafts_for_event(COMMENT_VIEW, "ComplaintResolved",
                                         {"actor": "polda-ntb:budi", "lifecycle": last})
    assert question.kind == MessageKind.FOLLOW_UP_QUESTION and question.public_text is None
    assert {COMMENT_PUBLIC, "comment_private"} <= set(question.excluded_channels)
    assert outcome.kind == MessageKind.RESOLVED and "dinyatakan selesai" in outcome.text
    assert "Dinas PUPR Provinsi NTB dan Polda NTB" in outcome.text  # every lead, by name
    assert "status: selesai" in outcome.public_text


def test_resolved_and_dismissed_outcomes():
    lifecycle = snapshot("selesai", names=NAMES, parts={"dpupr": part(answered=True, resolved=True)})
    resolved, question = drafts_for_event(MESSENGER_VIEW, "ComplaintResolved", {"actor": "x", "lifecycle": lifecycle})
    assert question.kind == MessageKind.FOLLOW_UP_QUESTION and CODE in question.text
    assert "selesai" in resolved.text and "Dinas PUPR Provinsi NTB" in resolved.text
    dismissed = snapshot("ditolak", leads=(), names=NAMES)
    [dup] = drafts_for_event(COMMENT_VIEW, "ComplaintDismissed",
                             {"reason": "sama", "duplicate_of": "NTB-ZZZZZ-ZZZZZ", "actor": "x",
                              "lifecycle": dismissed})
    assert "NTB-ZZZZZ-ZZZZZ" in dup.text and "status: ditolak" in dup.public_text


def test_events_that_tell_the_citizen_nothing():
    lifecycle = snapshot("diproses", names=NAMES)
    for event_type, data in (
            ("ComplaintAcknowledged", {"agency_code": "dpupr", "actor": "x"}),
            ("ComplaintEscalated", {"breach": "first_response", "due_at": DUE["first_response"],
                                    "notified": ["dpupr", "diskominfotik"]}),
            ("ComplaintConfidentialityChanged", {"confidential": True, "reason": "pungli",
                                                 "actor": "desk:ayu"})):
        for view in (MESSENGER_VIEW, COMMENT_VIEW):
            assert drafts_for_event(view, event_type, dict(data, lifecycle=lifecycle)) == []


def test_silent_complaints():
    imported = ComplaintView(CODE, "import", MESSENGER_REPLY, False)
    web = ComplaintView(CODE, "web", None, False)
    for view in (imported, web):
        assert drafts_for_event(view, "ComplaintFiled", {}) == []


# --- confidential complaints ---------------------------------------------------------------------

def test_confidential_answer_goes_privately_without_naming_the_agency():
    lifecycle = snapshot("diproses", leads=["polda-ntb"], names=NAMES, confidential=True,
                         parts={"polda-ntb": part(answered=True)})
    for view in (CONFIDENTIAL_MESSENGER, CONFIDENTIAL_COMMENT):
        [draft] = drafts_for_event(view, "ComplaintResponded",
                                   answer("polda-ntb", "Oknum sudah kami periksa.", lifecycle))
        assert draft.human_written and "Oknum sudah kami periksa." in draft.text
        assert "Polda" not in draft.text and "polda-ntb" not in draft.text
        assert draft.public_text is None


def test_confidential_comment_complaint_gets_no_public_update_at_all():
    leads = dict(leads=["polda-ntb"], names=NAMES, confidential=True)
    events = [
        ("ComplaintRouted", routed(snapshot("disetujui", **leads), leads=["polda-ntb"])),
        ("ComplaintResponded", answer("polda-ntb", "Sedang diselidiki.",
                                      snapshot("diproses", **leads, parts={"polda-ntb": part(answered=True)}))),
        ("ComplaintResolved", {"actor": "x", "lifecycle": snapshot("selesai", **leads)}),
        ("ComplaintDismissed", {"reason": "spam", "duplicate_of": None, "actor": "x",
                                "lifecycle": snapshot("ditolak", **leads)}),
    ]
    for event_type, data in events:
        draft, *question = drafts_for_event(CONFIDENTIAL_COMMENT, event_type, data)
        assert len(question) == (event_type == "ComplaintResolved"), event_type
        # Neither the status nor the agency under the comment: the public channel is closed to it,
        # so it goes by private reply / Messenger or is listed for the desk.
        assert draft.public_text is None and COMMENT_PUBLIC in draft.excluded_channels, event_type
        assert "Polda" not in draft.text, event_type
    # The acknowledgment's public reply is generic (the tracking code, where to look): it stays.
    private, public = drafts_for_event(CONFIDENTIAL_COMMENT, "ComplaintFiled", {})
    assert CODE in public.public_text and "Messenger" in public.public_text


def test_confidentiality_is_the_latest_routing_lifecycle_else_as_filed():
    filed = recorded("ComplaintFiled", "2024-01-01T00:00:00Z", channel="facebook_messenger")
    assert current_confidentiality([filed], False) is False
    assert current_confidentiality([filed], True) is True
    open_case = snapshot("disetujui", names=NAMES)
    history = [filed, recorded("ComplaintRouted", "2024-01-01T01:00:00Z", **routed(open_case))]
    assert current_confidentiality(history, False) is False
    # A later bubble reported an illegal levy: routing made it confidential.
    made_secret = dict(open_case, confidential=True)
    history.append(recorded("ComplaintConfidentialityChanged", "2024-01-01T02:00:00Z", confidential=True,
                            reason="pungli", actor="intake:classifier", lifecycle=made_secret))
    assert current_confidentiality(history, False) is True
    # The desk unmarks one filed as confidential: no longer confidential.
    unmarked = dict(open_case, confidential=False)
    assert current_confidentiality(history + [recorded(
        "ComplaintConfidentialityChanged", "2024-01-01T03:00:00Z", confidential=False,
        reason="bukan pungli", actor="desk:ayu", lifecycle=unmarked)], True) is False


def test_complaint_made_confidential_later_is_treated_as_confidential_from_then_on():
    filed = recorded("ComplaintFiled", "2024-01-01T00:00:00Z", channel="facebook_comment")
    before = snapshot("disetujui", names=NAMES)
    history = [filed, recorded("ComplaintRouted", "2024-01-01T01:00:00Z", **routed(before))]
    view = ComplaintView(CODE, "facebook_comment", COMMENT_REPLY,
                         current_confidentiality(history, filed_confidential=False))
    [announced] = drafts_for_event(view, "ComplaintRouted", history[-1]["data"])
    assert "Dinas PUPR Provinsi NTB" in announced.text and announced.public_text

    history.append(recorded("ComplaintConfidentialityChanged", "2024-01-01T02:00:00Z", confidential=True,
                            reason="pungli", actor="intake:classifier",
                            lifecycle=dict(before, confidential=True)))
    view = ComplaintView(CODE, "facebook_comment", COMMENT_REPLY,
                         current_confidentiality(history, filed_confidential=False))
    assert view.confidential
    after = snapshot("diproses", names=NAMES, confidential=True, parts={"dpupr": part(answered=True)})
    [reply] = drafts_for_event(view, "ComplaintResponded", answer("dpupr", "Kami tindak lanjuti.", after))
    assert "PUPR" not in reply.text and reply.public_text is None
    history.append(recorded("ComplaintResponded", "2024-01-02T00:00:00Z",
                            **answer("dpupr", "Kami tindak lanjuti.", after)))
    status = status_reply(CODE, view, history, full=True, asked_from_comment=False)
    assert "diproses" in status.text and "Ditangani oleh" not in status.text and "PUPR" not in status.text


# --- status answers ------------------------------------------------------------------------------

def test_status_answers_read_the_latest_lifecycle():
    lifecycle = snapshot("disetujui", names=NAMES)
    history = [recorded("ComplaintFiled", "2024-01-01T00:00:00Z", channel="facebook_messenger"),
               recorded("ComplaintRouted", "2024-01-02T03:04:00Z", **routed(lifecycle))]
    full = status_reply(CODE, MESSENGER_VIEW, history, full=True, asked_from_comment=False)
    assert "disetujui" in full.text and "Dinas PUPR Provinsi NTB" in full.text
    assert "2 Januari 2024 pukul 11.04 WITA" in full.text and full.public_text is None
    public = status_reply(CODE, MESSENGER_VIEW, history, full=False, asked_from_comment=True)
    assert public.text == f"Status aduan {CODE}: disetujui." == public.public_text
    unknown = status_reply("NTB-00000-00000", None, [], full=False, asked_from_comment=False)
    assert "tidak ditemukan" in unknown.text


def test_status_before_routing_is_diterima_since_the_filing():
    history = [recorded("ComplaintFiled", "2024-01-01T00:00:00Z", channel="facebook_messenger")]
    full = status_reply(CODE, MESSENGER_VIEW, history, full=True, asked_from_comment=False)
    assert f"Status aduan {CODE}: diterima." in full.text and "Ditangani oleh" not in full.text
    assert "1 Januari 2024 pukul 08.00 WITA" in full.text
    assert latest_lifecycle(history) is None


def test_status_of_two_leads_stays_diproses_until_the_last_resolves():
    first = snapshot("diproses", **TWO_LEADS, parts={
        "dpupr": part(answered=True, resolved=True), "polda-ntb": part(acknowledged=False)})
    history = [recorded("ComplaintFiled", "2024-01-01T00:00:00Z", channel="facebook_messenger"),
               recorded("ComplaintRouted", "2024-01-01T01:00:00Z",
                        **routed(snapshot("disetujui", **TWO_LEADS), leads=["dpupr", "polda-ntb"])),
               recorded("ComplaintResponded", "2024-01-02T01:00:00Z",
                        **answer("dpupr", "Selesai.", first, resolved=True))]
    full = status_reply(CODE, MESSENGER_VIEW, history, full=True, asked_from_comment=False)
    assert "diproses" in full.text and "selesai" not in full.text
    assert "Dinas PUPR Provinsi NTB dan Polda NTB" in full.text
    last = snapshot("selesai", **TWO_LEADS)
    history += [recorded("ComplaintResponded", "2024-01-03T01:00:00Z",
                         **answer("polda-ntb", "Selesai juga.", last, resolved=True)),
                recorded("ComplaintResolved", "2024-01-03T01:00:01Z", actor="x", lifecycle=last)]
    assert f"Status aduan {CODE}: selesai." in status_reply(CODE, MESSENGER_VIEW, history, full=False,
                                                             asked_from_comment=False).text


def test_last_update_ignores_escalations_and_confidentiality_changes():
    lifecycle = snapshot("disetujui", names=NAMES)
    history = [recorded("ComplaintFiled", "2024-01-01T00:00:00Z"),
               recorded("ComplaintRouted", "2024-01-01T01:00:00Z", **routed(lifecycle)),
               recorded("ComplaintEscalated", "2024-01-05T01:00:00Z", breach="first_response",
                        lifecycle=lifecycle),
               recorded("ComplaintConfidentialityChanged", "2024-01-06T01:00:00Z", confidential=True,
                        lifecycle=dict(lifecycle, confidential=True))]
    assert last_update(history) == "2024-01-01T01:00:00Z"
    acknowledged = snapshot("diproses", names=NAMES)
    history.append(recorded("ComplaintAcknowledged", "2024-01-07T01:00:00Z", agency_code="dpupr",
                            lifecycle=acknowledged))
    assert last_update(history) == "2024-01-07T01:00:00Z"


def test_filer_is_the_same_page_and_psid_or_the_psid_learnt_from_a_comment():
    assert is_filer(MESSENGER_VIEW, None, {"page_id": PAGE, "psid": "777"})
    assert not is_filer(MESSENGER_VIEW, None, {"page_id": PAGE, "psid": "778"})
    assert not is_filer(MESSENGER_VIEW, None, {"page_id": "other", "psid": "777"})
    assert is_filer(COMMENT_VIEW, "999", {"page_id": PAGE, "psid": "999"})
    assert not is_filer(COMMENT_VIEW, None, {"page_id": PAGE, "psid": "999"})
    assert not is_filer(None, None, {"page_id": PAGE, "psid": "777"})
