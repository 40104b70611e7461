"""Conversation rules for Messenger: what one citizen message does to that citizen's complaint.
Pure code (no nameko, no database): the caller reads the conversation, asks ``decide`` and
records what it says.

* the first message files a complaint at once;
* further messages within ``INTAKE_BUBBLE_SECONDS`` of the previous one (Meta's timestamps),
  while the complaint is still its first burst, extend it (``ComplaintAmended``, why
  ``more_messages``) — people type in several bubbles;
* a later message while the complaint is open is ``CitizenMessageReceived`` on it;
* after the complaint is closed (resolved or dismissed) the next message files a new one;
* ``ADUAN BARU`` starts a new complaint (with the rest of the message, or with the next one);
* ``CEK <tracking code>`` (or ``CEK`` alone, for the citizen's current complaint) asks for status.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.intake.domain.tracking import ALPHABET, normalise

FILE = "file"
AMEND = "amend"
MESSAGE = "message"
STATUS = "status"
AWAIT_NEW = "await_new"        # "ADUAN BARU" alone: the next message files a new complaint

_NEW_COMPLAINT = re.compile(r"^\s*aduan\s*baru\b[\s:.,!\-]*", re.IGNORECASE)
_STATUS = re.compile(r"^\s*(?:cek\s+status|cek|status)\b[\s:.,\-]*(.*)$", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(rf"^NTB-[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")
_STATUS_WORDS = {"", "status", "aduan", "aduan saya", "status aduan", "status aduan saya", "laporan",
                 "laporan saya", "status laporan", "status laporan saya"}


@dataclass(frozen=True)
class Conversation:
    """What intake remembers about one (Page, PSID)."""
    complaint_id: str | None
    tracking_code: str | None
    complaint_open: bool
    in_first_burst: bool                 # still typing the complaint's first bubbles
    last_message_at: datetime | None     # Meta's time of the citizen's latest message


@dataclass(frozen=True)
class Decision:
    action: str
    text: str = ""                       # the text to file/record (command words removed)
    tracking_code: str | None = None     # for STATUS: the code asked about (may be unknown)


def status_query(text: str) -> str | None:
    """The code a ``CEK …`` message asks about ('' for "my complaint"), or None when the message is
    not a status query ("cek jalan rusak di Praya" is a complaint, not a query)."""
    match = _STATUS.match(text or "")
    if not match:
        return None
    rest = match.group(1).strip().rstrip(".!?")
    if rest.lower() in _STATUS_WORDS:
        return ""
    words = rest.split()
    # the code may be typed with spaces ("ntb abcde 12345") and followed by other words
    for count in range(min(len(words), 3), 0, -1):
        code = normalise("".join(words[:count]))
        if _CODE.match(code):
            return code
    return None


def decide(text: str, has_attachments: bool, sent_at: datetime, conversation: Conversation | None,
           bubble_seconds: float) -> Decision:
    code = status_query(text)
    if code is not None and not has_attachments:
        if code == "" and conversation is not None and conversation.tracking_code:
            code = conversation.tracking_code
        return Decision(STATUS, text, code)
    new = _NEW_COMPLAINT.match(text or "")
    if new:
        rest = text[new.end():].strip()
        return Decision(FILE, rest) if rest or has_attachments else Decision(AWAIT_NEW)
    if conversation is None or conversation.complaint_id is None or not conversation.complaint_open:
        return Decision(FILE, text)
    if conversation.in_first_burst and conversation.last_message_at is not None:
        gap = abs((sent_at - conversation.last_message_at).total_seconds())
        if gap <= bubble_seconds:
            return Decision(AMEND, text)
    return Decision(MESSAGE, text)


def extended_text(previous: str, addition: str) -> str:
    """The complaint's full text after one more bubble."""
    addition = addition.strip()
    if not addition:
        return previous
    return f"{previous}\n{addition}" if previous else addition


def attachment_text(attachments: list[dict[str, Any]]) -> str:
    """Stands in for the text of a message that is only photos/files (events need a text)."""
    kinds = ", ".join(dict.fromkeys(a.get("type", "file") for a in attachments)) or "file"
    return f"[lampiran: {kinds}]"
