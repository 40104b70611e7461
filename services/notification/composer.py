"""Which messages an event gives the citizen, with their texts: the bridge between the events
notification consumes and the templates in ``messages.py``.

Pure domain code (no nameko, no SQLAlchemy, no clock): the caller passes notification's record of
the complaint and the public status after the event. Channels and Meta's windows are decided
later, at send time, by ``policy.plan_delivery``; a draft only says which channels it must not use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from services.notification import messages
from services.notification.policy import COMMENT_PRIVATE, COMMENT_PUBLIC, MESSENGER, MessageKind

# Imports carry history, not a conversation: the design says they never notify anyone.
SILENT_CHANNELS = ("import",)


@dataclass(frozen=True)
class ComplaintView:
    """What notification knows of a complaint when it composes a message."""

    tracking_code: str
    channel: str
    reply_to: Optional[dict]
    confidential: bool
    agency_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def from_comment(self) -> bool:
        return bool(self.reply_to and self.reply_to.get("comment_id"))

    def names(self, codes) -> list[str]:
        return messages.agency_names(codes or (), self.agency_names)


@dataclass(frozen=True)
class Draft:
    """One message to record; ``text`` is split into Send API parts by the caller."""

    kind: str  # policy.MessageKind, used to plan the delivery
    text: str
    # What a public comment reply says instead (status words, never the content); None when a
    # public reply must not carry this message.
    public_text: Optional[str]
    excluded_channels: tuple = ()
    human_written: bool = False
    id_kind: Optional[str] = None  # the kind naming the message id, when not ``kind``

    @property
    def identity_kind(self) -> str:
        return self.id_kind or self.kind


def notifies(view: ComplaintView) -> bool:
    return bool(view.reply_to) and view.channel not in SILENT_CHANNELS


def routed_to_desk(data: Mapping) -> bool:
    # The contract marks a routing to the desk by a due_at holding only the triage clock.
    return set((data.get("due_at") or {})) == {"triage"}


def _public_update(view: ComplaintView, status_word: str) -> Optional[str]:
    if not view.from_comment:
        return None
    return messages.render("comment_public_update", tracking_code=view.tracking_code,
                           status_word=status_word)


def drafts_for_event(view: ComplaintView, event_type: str, data: Mapping,
                     status_word: str, lead_agencies=()) -> list[Draft]:
    """The messages one complaint event gives its citizen (possibly none).

    ``status_word`` is the public status after the event, ``lead_agencies`` the codes of the lead
    agencies at that point (for the outcome message).
    """
    if not notifies(view):
        return []
    code = view.tracking_code
    public = _public_update(view, status_word)
    if event_type == "ComplaintFiled":
        ack = messages.render("filed_ack", tracking_code=code)
        if not view.from_comment:
            return [Draft(MessageKind.ACKNOWLEDGMENT, ack, None)]
        public_ack = messages.render("comment_public", tracking_code=code)
        return [
            # The private reply; its own public fallback would repeat the public reply below.
            Draft(MessageKind.ACKNOWLEDGMENT, ack, None, excluded_channels=(COMMENT_PUBLIC,)),
            Draft(MessageKind.ACKNOWLEDGMENT, public_ack, public_ack,
                  excluded_channels=(MESSENGER, COMMENT_PRIVATE), id_kind=MessageKind.COMMENT_ACK),
        ]
    if event_type == "ComplaintRouted":
        if routed_to_desk(data):
            return []  # still "diterima": the acknowledgment already said it is being verified
        if view.confidential:
            text = messages.render("routed_confidential", tracking_code=code)
        else:
            text = messages.render("routed", tracking_code=code,
                                   agencies=view.names(data.get("lead_agencies")),
                                   coordinating=view.names(data.get("coordinating_agencies")))
        return [Draft(MessageKind.ROUTED, text, public)]
    if event_type == "ComplaintResponded":
        agency = data.get("agency_name") or view.names([data["agency_code"]])[0]
        text = messages.render("responded", tracking_code=code, agency_name=agency,
                               answer=data["text"])
        return [Draft(MessageKind.ANSWER, text, public, human_written=True)]
    if event_type == "ComplaintResolved":
        context = {"tracking_code": code}
        if not view.confidential and lead_agencies:
            context["agency_name"] = messages._daftar(view.names(lead_agencies))
        return [Draft(MessageKind.RESOLVED, messages.render("resolved", **context), public)]
    if event_type == "ComplaintDismissed":
        if data.get("duplicate_of"):
            text = messages.render("dismissed_duplicate", tracking_code=code,
                                   duplicate_of=data["duplicate_of"], reason=data.get("reason"))
        else:
            text = messages.render("dismissed", tracking_code=code, reason=data["reason"])
        return [Draft(MessageKind.DISMISSED, text, public)]
    return []


def is_filer(view: Optional[ComplaintView], known_psid: Optional[str], asker: Optional[Mapping]) -> bool:
    """Whether the person asking (their ``reply_to``) is the citizen who filed the complaint: the
    same Page and the complaint's PSID, or the PSID learnt after a comment complaint."""
    if view is None or not view.reply_to or not asker or not asker.get("psid"):
        return False
    if asker.get("page_id") != view.reply_to.get("page_id"):
        return False
    return asker["psid"] in {view.reply_to.get("psid"), known_psid} - {None}


def status_reply(tracking_code: str, view: Optional[ComplaintView],
                 status: Optional[messages.PublicStatus], full: bool,
                 asked_from_comment: bool) -> Draft:
    """The answer to ``CEK <code>``: the full status to the complaint's own citizen, the public
    status words alone to anyone else, a polite "not found" for a code we do not know."""
    if view is None or status is None:
        text = messages.render("status_unknown", tracking_code=tracking_code)
        return Draft(MessageKind.STATUS_REPLY, text, text if asked_from_comment else None)
    code = view.tracking_code
    public = messages.render("status_public", tracking_code=code, status_word=status.status)
    if full:
        agencies = [] if view.confidential else view.names(status.agency_codes)
        text = messages.render("status_full", tracking_code=code, status_word=status.status,
                               agencies=agencies, last_update=status.last_update)
    else:
        text = public
    return Draft(MessageKind.STATUS_REPLY, text, public if asked_from_comment else None)
