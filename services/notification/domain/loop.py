"""The quick replies of the loop with the citizen ("Sudah selesai?", then a rating 1–5), as the
Send API takes them (``message.quick_replies``: ``content_type`` text, ``title`` ≤ 20 characters,
``payload`` ≤ 1,000 characters, at most 13 — Meta's "Quick Replies" reference).

The payloads are a contract with intake, which recognises the tap (``services/intake/domain/
followup.py``; docs/lifecycle.md): ``NTBCARE_DONE:<complaint_id>:YES|NO`` and
``NTBCARE_RATE:<complaint_id>:<1-5>``. The complaint id is not personal data; the titles are also
what the citizen's tap posts as text, and intake understands them as free text too.

Pure domain code.
"""
from __future__ import annotations

from services.notification.domain.policy import MessageKind

DONE_PAYLOAD = "NTBCARE_DONE"
RATE_PAYLOAD = "NTBCARE_RATE"
MAX_QUICK_REPLIES = 13
MAX_TITLE = 20
MAX_PAYLOAD = 1000


def _reply(title: str, payload: str) -> dict[str, str]:
    return {"content_type": "text", "title": title, "payload": payload}


def quick_replies_for(kind: str, complaint_id: str) -> tuple[dict[str, str], ...]:
    """The buttons a message of ``kind`` carries on Messenger (none for other kinds)."""
    if kind == MessageKind.FOLLOW_UP_QUESTION:
        return (_reply("Sudah", f"{DONE_PAYLOAD}:{complaint_id}:YES"),
                _reply("Belum", f"{DONE_PAYLOAD}:{complaint_id}:NO"))
    if kind == MessageKind.RATING_QUESTION:
        return tuple(_reply(str(score), f"{RATE_PAYLOAD}:{complaint_id}:{score}") for score in range(1, 6))
    return ()
