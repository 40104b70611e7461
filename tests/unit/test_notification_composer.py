"""Which messages each event gives the citizen, and the status answers (pure composer)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.notification import messages
from services.notification.composer import ComplaintView, drafts_for_event, is_filer, status_reply
from services.notification.policy import COMMENT_PRIVATE, COMMENT_PUBLIC, MESSENGER, MessageKind, message_id_for

PAGE = "100000000000001"
MESSENGER_VIEW = ComplaintView("NTB-AB12C-DE34F", "facebook_messenger", {"page_id": PAGE, "psid": "777"},
                               False, {"dpupr": "Dinas PUPR Provinsi NTB"})
COMMENT_VIEW = ComplaintView("NTB-AB12C-DE34F", "facebook_comment",
                             {"page_id": PAGE, "comment_id": "1_2", "post_id": "1"}, False, {})
ROUTED = {"lead_agencies": ["dpupr"], "coordinating_agencies": ["bpjn-ntb"], "decided_by": "rule:road",
          "reason": "jalan", "priority": "normal",
          "due_at": {"first_response": "2024-01-02T00:00:00Z", "follow_up": "2024-01-09T00:00:00Z"}}


def test_messenger_acknowledgment_is_one_message_without_public_fallback():
    [draft] = drafts_for_event(MESSENGER_VIEW, "ComplaintFiled", {}, messages.DITERIMA)
    assert draft.kind == MessageKind.ACKNOWLEDGMENT and draft.public_text is None
    assert "NTB-AB12C-DE34F" in draft.text and not draft.human_written


def test_comment_acknowledgment_is_a_private_reply_and_a_public_reply_with_distinct_ids():
    private, public = drafts_for_event(COMMENT_VIEW, "ComplaintFiled", {}, messages.DITERIMA)
    assert COMMENT_PUBLIC in private.excluded_channels and private.public_text is None
    assert set(public.excluded_channels) == {MESSENGER, COMMENT_PRIVATE}
    assert "NTB-AB12C-DE34F" in public.public_text
    assert message_id_for("e1", private.identity_kind) != message_id_for("e1", public.identity_kind)


def test_routed_names_agencies_from_the_event_and_falls_back_to_codes():
    [draft] = drafts_for_event(MESSENGER_VIEW, "ComplaintRouted", ROUTED, messages.DISETUJUI)
    assert "Dinas PUPR Provinsi NTB" in draft.text and "bpjn-ntb" in draft.text


def test_routed_to_the_desk_sends_nothing():
    desk = dict(ROUTED, due_at={"triage": "2024-01-04T00:00:00Z"})
    assert drafts_for_event(MESSENGER_VIEW, "ComplaintRouted", desk, messages.DITERIMA) == []


def test_confidential_routing_names_no_agency():
    view = ComplaintView("NTB-AB12C-DE34F", "facebook_messenger", {"page_id": PAGE, "psid": "777"}, True,
                         {"dpupr": "Dinas PUPR Provinsi NTB", "inspektorat": "Inspektorat"})
    [draft] = drafts_for_event(view, "ComplaintRouted", dict(ROUTED, lead_agencies=["inspektorat"]),
                               messages.DISETUJUI)
    assert "Inspektorat" not in draft.text and "dpupr" not in draft.text.lower()


def test_answer_is_human_written_and_attributed_and_public_reply_carries_no_content():
    data = {"agency_code": "dpupr", "agency_name": "Dinas PUPR", "text": "Jalan diperbaiki besok.",
            "resolved": False, "actor": "dpupr:budi"}
    [draft] = drafts_for_event(COMMENT_VIEW, "ComplaintResponded", data, messages.DIPROSES)
    assert draft.human_written and draft.kind == MessageKind.ANSWER
    assert draft.text.startswith("Jawaban dari Dinas PUPR") and "Jalan diperbaiki besok." in draft.text
    assert "diperbaiki" not in draft.public_text and "diproses" in draft.public_text


def test_outcomes_and_silent_complaints():
    [resolved] = drafts_for_event(MESSENGER_VIEW, "ComplaintResolved", {"actor": "x"}, messages.SELESAI,
                                  ["dpupr"])
    assert "selesai" in resolved.text and "Dinas PUPR Provinsi NTB" in resolved.text
    [dup] = drafts_for_event(MESSENGER_VIEW, "ComplaintDismissed",
                             {"reason": "sama", "duplicate_of": "NTB-ZZZZZ-ZZZZZ", "actor": "x"}, messages.DITOLAK)
    assert "NTB-ZZZZZ-ZZZZZ" in dup.text
    imported = ComplaintView("NTB-AB12C-DE34F", "import", {"page_id": PAGE, "psid": "777"}, False)
    web = ComplaintView("NTB-AB12C-DE34F", "web", None, False)
    for view in (imported, web):
        assert drafts_for_event(view, "ComplaintFiled", {}, messages.DITERIMA) == []
    assert drafts_for_event(MESSENGER_VIEW, "ComplaintEscalated", {}, messages.DISETUJUI) == []


def test_status_answers():
    status = messages.PublicStatus("disetujui", ("dpupr",), datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc))
    full = status_reply("NTB-AB12C-DE34F", MESSENGER_VIEW, status, full=True, asked_from_comment=False)
    assert "Dinas PUPR Provinsi NTB" in full.text and "WITA" in full.text and full.public_text is None
    public = status_reply("NTB-AB12C-DE34F", MESSENGER_VIEW, status, full=False, asked_from_comment=True)
    assert public.text == "Status aduan NTB-AB12C-DE34F: disetujui." == public.public_text
    unknown = status_reply("NTB-00000-00000", None, None, full=False, asked_from_comment=False)
    assert "tidak ditemukan" in unknown.text


def test_filer_is_the_same_page_and_psid_or_the_psid_learnt_from_a_comment():
    assert is_filer(MESSENGER_VIEW, None, {"page_id": PAGE, "psid": "777"})
    assert not is_filer(MESSENGER_VIEW, None, {"page_id": PAGE, "psid": "778"})
    assert not is_filer(MESSENGER_VIEW, None, {"page_id": "other", "psid": "777"})
    assert is_filer(COMMENT_VIEW, "999", {"page_id": PAGE, "psid": "999"})
    assert not is_filer(COMMENT_VIEW, None, {"page_id": PAGE, "psid": "999"})
    assert not is_filer(None, None, {"page_id": PAGE, "psid": "777"})

