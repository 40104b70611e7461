"""The shapes of Meta's ids that end up in Graph API URL paths (``/{page-id}/messages``,
``/{comment-id}/comments``), checked where they enter the platform (intake's RPC) and again
where a URL is built from them (notification's Graph client).

Meta's ids are decimal numbers: Pages, PSIDs, Instagram accounts and IGSIDs are digits; a Page
post or a comment on it is ``<digits>_<digits>`` (Instagram comments and some posts are plain
digits). Anything else — a slash, a dot, ``?``, ``%``, letters — is not an id, and in a URL path
it would make the call reach another object (``../<page-id>/feed`` publishes on the Page's feed).
"""
from __future__ import annotations

import re

# Meta's ids are 64-bit numbers today (up to 20 digits); 30 leaves room without allowing junk.
_DIGITS = r"[0-9]{1,30}"
NUMERIC_ID = re.compile(rf"{_DIGITS}")
OBJECT_ID = re.compile(rf"{_DIGITS}(?:_{_DIGITS})?")   # a comment or a post: 123_456, or 123

# What each kind of id must look like.
SHAPES: dict[str, re.Pattern[str]] = {
    "page_id": NUMERIC_ID,
    "psid": NUMERIC_ID,               # a PSID, or an Instagram-scoped id (IGSID)
    "instagram_account_id": NUMERIC_ID,
    "comment_id": OBJECT_ID,
    "post_id": OBJECT_ID,
}

DESCRIPTIONS = {
    NUMERIC_ID.pattern: "digits only",
    OBJECT_ID.pattern: "digits, or <digits>_<digits>",
}


def is_valid(kind: str, value: object) -> bool:
    """Whether ``value`` is a string shaped like a Meta id of that kind (``SHAPES``)."""
    return isinstance(value, str) and SHAPES[kind].fullmatch(value) is not None


def problem(kind: str, value: object) -> str | None:
    """None for a valid id, else what is wrong (never quoting the value: it may be a PSID)."""
    if is_valid(kind, value):
        return None
    return f"not a Meta {kind.replace('_', ' ')} ({DESCRIPTIONS[SHAPES[kind].pattern]})"
