"""Which messages an event gives the citizen, with their texts: the bridge between the events
notification consumes and the templates in ``messages.py``.

Pure domain code (no nameko, no SQLAlchemy, no clock). The complaint's state is read, never worked
out: every routing event carries ``data.lifecycle``, the state routing decided after that event
(public status word, at the desk or not, lead and coordinating agencies with their names,
confidentiality). Channels and Meta's windows are decided later, at send time, by
``policy.plan_delivery``; a draft only says which channels it must not use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from shared.core import reference
from shared.core.events import types as ev
from services.notification.domain import messages
from services.notification.domain.policy import COMMENT_PRIVATE, COMMENT_PUBLIC, MESSENGER, MessageKind, platform_of

# Imports carry history, not a conversation: the design says they never notify anyone.
SILENT_CHANNELS = ("import",)

# What the citizen can see of the lifecycle: a change of any of these is an "update" in a status
# answer; an escalation or a change of confidentiality is not.
_VISIBLE = ("status", "lead_agencies", "coordinating_agencies", "parts")


@dataclass(frozen=True)
class ComplaintView:
    """What notification knows of a complaint when it composes a message."""

    tracking_code: str
    channel: str
    reply_to: Optional[dict[str, Any]]
    # Whether the complaint is confidential *now* (``current_confidentiality``), not as filed.
    confidential: bool

    @property
    def from_comment(self) -> bool:
        return bool(self.reply_to and self.reply_to.get("comment_id"))


@dataclass(frozen=True)
class Draft:
    """One message to record; ``text`` is split into Send API parts by the caller."""

    kind: str  # policy.MessageKind, used to plan the delivery
    text: str
    # What a public comment reply says instead (status words, never the content); None when a
    # public reply must not carry this message.
    public_text: Optional[str]
    excluded_channels: tuple[str, ...] = ()
    human_written: bool = False
    id_kind: Optional[str] = None  # the kind naming the message id, when not ``kind``

    @property
    def identity_kind(self) -> str:
        return self.id_kind or self.kind


# --- reading the complaint's recorded events -----------------------------------------------------
# ``history``: the complaint's events as notification recorded them, in order (ComplaintFiled,
# then routing's by version), each a mapping with ``event_type``, ``occurred_at`` and ``data``.

def latest_lifecycle(history: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The lifecycle on the complaint's latest routing event; None before routing has spoken."""
    for event in reversed(history):
        lifecycle: Optional[Mapping[str, Any]] = (event.get("data") or {}).get("lifecycle")
        if lifecycle is not None:
            return lifecycle
    return None


def current_confidentiality(history: Sequence[Mapping[str, Any]], filed_confidential: bool) -> bool:
    """Confidential now: as the latest routing event says (the desk or a later text may have
    changed it), else as ``ComplaintFiled`` said."""
    lifecycle = latest_lifecycle(history)
    return bool(lifecycle["confidential"]) if lifecycle is not None else bool(filed_confidential)


def last_update(history: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """When what the citizen can see last changed (the filing, else a routing event that changed
    the status or an agency's part)."""
    moment, seen = None, None
    for event in history:
        lifecycle = (event.get("data") or {}).get("lifecycle")
        if lifecycle is None:
            if event.get("event_type") == ev.COMPLAINT_FILED:
                moment = event.get("occurred_at")
            continue
        visible = {key: lifecycle.get(key) for key in _VISIBLE}
        if visible != seen:
            moment, seen = event.get("occurred_at"), visible
    return moment


def agency_names(lifecycle: Mapping[str, Any], codes: Optional[Iterable[str]]) -> list[str]:
    """Display names of ``codes`` as the event names them (the code when it does not)."""
    return messages.agency_names(codes or (), lifecycle.get("agency_names") or {})


# --- composing ----------------------------------------------------------------------------------

def notifies(view: ComplaintView) -> bool:
    return bool(view.reply_to) and view.channel not in SILENT_CHANNELS


def _update(view: ComplaintView, kind: str, text: str, status_word: str,
            human_written: bool = False) -> Draft:
    """A later update for the citizen. On a comment complaint its public fallback says only that
    there is an update, with the status word — and a confidential complaint gets no public reply
    at all: a stream of replies under the comment would show onlookers (the accused among them)
    that the report is being acted on. Its updates go privately or, failing that, to the desk."""
    if not view.from_comment:
        return Draft(kind, text, None, human_written=human_written)
    if view.confidential:
        return Draft(kind, text, None, excluded_channels=(COMMENT_PUBLIC,),
                     human_written=human_written)
    public = messages.render("comment_public_update", tracking_code=view.tracking_code,
                             status_word=status_word)
    return Draft(kind, text, public, human_written=human_written)


def drafts_for_event(view: ComplaintView, event_type: str, data: Mapping[str, Any]) -> list[Draft]:
    """The messages one complaint event gives its citizen (possibly none). ``data`` is the event's
    data as recorded; a routing event's ``lifecycle`` is the state after it."""
    if not notifies(view):
        return []
    code = view.tracking_code
    lifecycle = data.get("lifecycle") or {}
    status_word = lifecycle.get("status", reference.DITERIMA)
    if event_type == ev.COMPLAINT_FILED:
        # Generic even for a confidential complaint: the tracking code and where to look.
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
    if event_type == ev.COMPLAINT_ROUTED:
        if lifecycle.get("at_desk"):
            return []  # with the desk: the acknowledgment already said it is being verified
        if view.confidential:
            text = messages.render("routed_confidential", tracking_code=code)
        else:
            text = messages.render("routed", tracking_code=code,
                                   agencies=agency_names(lifecycle, lifecycle.get("lead_agencies")),
                                   coordinating=agency_names(lifecycle,
                                                             lifecycle.get("coordinating_agencies")))
        return [_update(view, MessageKind.ROUTED, text, status_word)]
    if event_type == ev.COMPLAINT_RESPONDED:
        # The citizen is the reporter: a confidential complaint's answer still reaches them,
        # privately, without naming the agency.
        if view.confidential:
            text = messages.render("responded_confidential", tracking_code=code, answer=data["text"])
        else:
            [agency] = agency_names(lifecycle, [data["agency_code"]])
            text = messages.render("responded", tracking_code=code, agency_name=agency,
                                   answer=data["text"])
        return [_update(view, MessageKind.ANSWER, text, status_word, human_written=True)]
    if event_type == ev.COMPLAINT_RESOLVED:
        context = {"tracking_code": code}
        leads = lifecycle.get("lead_agencies")
        if not view.confidential and leads:
            context["agency_name"] = messages.daftar(agency_names(lifecycle, leads))
        return [_update(view, MessageKind.RESOLVED, messages.render("resolved", **context),
                        status_word), *_follow_up_question(view)]
    if event_type == ev.COMPLAINT_DISMISSED:
        if data.get("duplicate_of"):
            text = messages.render("dismissed_duplicate", tracking_code=code,
                                   duplicate_of=data["duplicate_of"], reason=data.get("reason"))
        else:
            text = messages.render("dismissed", tracking_code=code, reason=data["reason"])
        return [_update(view, MessageKind.DISMISSED, text, status_word)]
    if event_type in _LOOP_EVENTS:
        return _loop_drafts(view, event_type, data, lifecycle)
    # Acknowledged, handed back, escalated, confidentiality changed: nothing to tell the citizen
    # (a status answer shows their effect).
    return []


# --- the loop with the citizen (issue 19) --------------------------------------------------------
# The questions and the replies to the citizen's answer are private: never under the public
# comment (they would invite a public "belum" thread); the questions never in the comment's one
# private reply either — asked only in a Messenger thread inside the 24-hour window (automated
# messages: RESPONSE only, HUMAN_AGENT is not for them), otherwise skipped and recorded.
_PRIVATE_ONLY = (COMMENT_PUBLIC,)
_MESSENGER_ONLY = (COMMENT_PUBLIC, COMMENT_PRIVATE)
_LOOP_EVENTS = (ev.COMPLAINT_REOPENED, ev.COMPLAINT_REOPEN_REFUSED, ev.CITIZEN_RATED,
                ev.CITIZEN_ANSWERED_FOLLOW_UP)


def _follow_up_question(view: ComplaintView) -> list[Draft]:
    """"Sudah selesai?" with Sudah/Belum quick replies, after the complaint became *selesai*."""
    text = messages.render("follow_up_question", tracking_code=view.tracking_code)
    return [Draft(MessageKind.FOLLOW_UP_QUESTION, text, None, excluded_channels=_MESSENGER_ONLY)]


def follow_up_reminder(view: ComplaintView) -> Draft:
    """"Sudah selesai?" once more (FixMyStreet's later question), as a second message of the
    same ``ComplaintResolved``; sent only where a window allows, like the first."""
    [draft] = _follow_up_question(view)
    return Draft(draft.kind, draft.text, None, excluded_channels=_MESSENGER_ONLY,
                 id_kind=MessageKind.FOLLOW_UP_REMINDER)


def follow_up_due(history: Sequence[Mapping[str, Any]], asked_before: str,
                  not_before: str) -> Optional[Mapping[str, Any]]:
    """The ``ComplaintResolved`` to ask about once more, or None: the complaint is *selesai* now,
    its latest resolution happened between ``not_before`` and ``asked_before`` (ISO UTC, the
    stores' one format), and the citizen has not answered since (no ``CitizenAnsweredFollowUp``,
    no rating, no reopen after it)."""
    lifecycle = latest_lifecycle(history)
    if lifecycle is None or lifecycle.get("status") != reference.SELESAI:
        return None
    resolved = [e for e in history if e.get("event_type") == ev.COMPLAINT_RESOLVED]
    if not resolved:
        return None
    last = resolved[-1]
    at = str(last.get("occurred_at") or "")
    if not (not_before <= at <= asked_before):
        return None
    answered = any(e.get("event_type") in (ev.CITIZEN_ANSWERED_FOLLOW_UP, ev.CITIZEN_RATED, ev.COMPLAINT_REOPENED)
                   and str(e.get("occurred_at") or "") >= at for e in history)
    return None if answered else last


def _loop_drafts(view: ComplaintView, event_type: str, data: Mapping[str, Any],
                 lifecycle: Mapping[str, Any]) -> list[Draft]:
    code = view.tracking_code
    if event_type == ev.COMPLAINT_REOPENED:
        if data.get("to_desk"):
            text = messages.render("reopened_desk", tracking_code=code)
        else:
            agencies = [] if view.confidential else agency_names(lifecycle, lifecycle.get("lead_agencies"))
            text = messages.render("reopened", tracking_code=code, agencies=agencies)
        return [Draft(MessageKind.LOOP_REPLY, text, None, excluded_channels=_PRIVATE_ONLY)]
    if event_type == ev.COMPLAINT_REOPEN_REFUSED:
        text = messages.render("reopen_refused", tracking_code=code, reason=data["reason"],
                               days=data.get("period_days", 14))
        return [Draft(MessageKind.LOOP_REPLY, text, None, excluded_channels=_PRIVATE_ONLY)]
    if event_type == ev.CITIZEN_RATED:
        text = messages.render("rated_thanks", tracking_code=code, score=data["score"])
        return [Draft(MessageKind.LOOP_REPLY, text, None, excluded_channels=_PRIVATE_ONLY)]
    # intake's CitizenAnsweredFollowUp: only what routing does not answer by its own events.
    answer = data.get("answer")
    if not (data.get("reply_to") or data.get("in_thread")):
        return []  # from the web: the status page shows the outcome
    if answer == "solved" and data.get("score") is None:
        text = messages.render("rating_question", tracking_code=code)
        return [Draft(MessageKind.RATING_QUESTION, text, None, excluded_channels=_MESSENGER_ONLY)]
    if answer == "unclear_rating":
        text = messages.render("rating_unclear", tracking_code=code)
        return [Draft(MessageKind.RATING_QUESTION, text, None, excluded_channels=_MESSENGER_ONLY)]
    if answer == "stale":
        text = messages.render("follow_up_stale", tracking_code=code,
                               status_word=data.get("status_word") or reference.DITERIMA)
        return [Draft(MessageKind.LOOP_REPLY, text, None, excluded_channels=_MESSENGER_ONLY)]
    return []


def is_filer(view: Optional[ComplaintView], known_psid: Optional[str], asker: Optional[Mapping[str, Any]]) -> bool:
    """Whether the person asking (their ``reply_to``) is the citizen who filed the complaint: the
    same Page, the same app (Messenger or Instagram Direct) and the complaint's PSID (or IGSID), or
    the PSID learnt after a comment complaint."""
    if view is None or not view.reply_to or not asker or not asker.get("psid"):
        return False
    if asker.get("page_id") != view.reply_to.get("page_id"):
        return False
    if platform_of(asker) != platform_of(view.reply_to):
        return False  # a PSID and an IGSID are ids in different apps, whatever their digits
    return asker["psid"] in {view.reply_to.get("psid"), known_psid} - {None}


def status_reply(tracking_code: str, view: Optional[ComplaintView], history: Sequence[Mapping[str, Any]],
                 full: bool, asked_from_comment: bool) -> Draft:
    """The answer to ``CEK <code>``, from the latest routing event's lifecycle (*diterima* before
    routing has one): the full status to the complaint's own citizen, the public status words
    alone to anyone else, a polite "not found" for a code we do not know.

    The status word may be answered in public even for a confidential complaint: it is what the
    public status page shows anyone with the code; agencies are never named for one."""
    if view is None or not history:
        text = messages.render("status_unknown", tracking_code=tracking_code)
        return Draft(MessageKind.STATUS_REPLY, text, text if asked_from_comment else None)
    code = view.tracking_code
    lifecycle = latest_lifecycle(history) or {}
    status_word = lifecycle.get("status", reference.DITERIMA)
    public = messages.render("status_public", tracking_code=code, status_word=status_word)
    if full:
        agencies = [] if view.confidential else agency_names(lifecycle, lifecycle.get("lead_agencies"))
        text = messages.render("status_full", tracking_code=code, status_word=status_word,
                               agencies=agencies, last_update=last_update(history))
    else:
        text = public
    return Draft(MessageKind.STATUS_REPLY, text, public if asked_from_comment else None)
