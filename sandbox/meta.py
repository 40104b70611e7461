"""What Meta answers, in one place: the error catalogue (code, subcode -> message, type,
transience), the message tags Meta still accepts, and the rate-limit usage headers.

Every entry names where it was read. Meta's pages move (``developers.facebook.com/docs/...``
now redirects to ``developers.facebook.com/documentation/...``); both spellings are the same
page. Where Meta documents only the code, the message text is the one Meta's API returns as
reported by the open-source clients cited next to it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

# -- sources ---------------------------------------------------------------------------------

#: Common error codes (example body {"error": {message, type, code, error_subcode,
#: fbtrace_id}}, 10/2018278 outside the window, 551/1545041, 4 and 613 rate limits, 1200).
ERROR_CODES_URL = "https://developers.facebook.com/docs/messenger-platform/error-codes"
SEND_API_ERRORS_URL = ("https://developers.facebook.com/docs/messenger-platform/reference/"
                       "send-api/error-codes")
#: Graph API error handling: code 10 "API Permission Denied", 200-299 "API Permission",
#: 4/17/32/613 throttling.
GRAPH_ERRORS_URL = "https://developers.facebook.com/docs/graph-api/guides/error-handling"
#: Standard messaging: RESPONSE/UPDATE only within 24 h of the person's last message.
POLICY_URL = "https://developers.facebook.com/docs/messenger-platform/policy/policy-overview"
#: Message tags: HUMAN_AGENT (7 days, human replies only), CUSTOMER_FEEDBACK (7 days),
#: CONFIRMED_EVENT_UPDATE / POST_PURCHASE_UPDATE / ACCOUNT_UPDATE (not for Instagram).
MESSAGE_TAGS_URL = "https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags/"
#: "Effective April 27th, 2026, all API requests containing the Message Tags
#: CONFIRMED_EVENT_UPDATE, ACCOUNT_UPDATE, and POST_PURCHASE_UPDATE will receive error code
#: 100." Subcode 1893061 as observed in https://github.com/chatwoot/chatwoot/issues/14669.
TAGS_RETIRED_URL = ("https://developers.facebook.com/documentation/business-messaging/"
                    "messenger-platform/send-messages#message-tags")
#: The tags retired on March 4, 2020 (APPLICATION_UPDATE, ISSUE_RESOLUTION, ...): Messenger
#: Platform changelog, https://developers.facebook.com/docs/messenger-platform/changelog/archive
LEGACY_TAGS_URL = "https://developers.facebook.com/docs/messenger-platform/changelog/archive"
#: Quick replies (Send API reference): ``message.quick_replies`` on a text (or attachment)
#: message, at most 13; each ``content_type`` text / user_phone_number / user_email; for text a
#: non-empty ``title`` (20 character limit) and a ``payload`` (string or number, 1000 character
#: limit; may be empty only with an ``image_url``). A tap arrives as a ``messages`` webhook with
#: ``message.text`` = the title and ``message.quick_reply.payload``.
QUICK_REPLIES_URL = "https://developers.facebook.com/docs/messenger-platform/reference/buttons/quick-replies"
QUICK_REPLY_CONTENT_TYPES = ("text", "user_phone_number", "user_email")
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_QUICK_REPLY_PAYLOAD = 1000
#: A postback (button, Get Started, persistent menu): ``messaging_postbacks`` webhook,
#: ``{sender, recipient, timestamp, postback: {mid, title, payload}}``.
POSTBACKS_URL = "https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messaging_postbacks"
#: Human Agent is a feature an app must be granted through App Review.
HUMAN_AGENT_URL = "https://developers.facebook.com/docs/features-reference/human-agent/"
#: Private replies: one message per post/comment, within 7 days of its creation; a comment
#: does not open the 24 h window; not to another Facebook Page.
PRIVATE_REPLIES_URL = "https://developers.facebook.com/docs/messenger-platform/discovery/private-replies/"
#: Instagram through the Page: same Send API, same windows; HUMAN_AGENT only tag.
INSTAGRAM_URL = "https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message/"
#: Rate limits: X-App-Usage {call_count, total_cputime, total_time} (percent);
#: X-Business-Use-Case-Usage {"<business-object-id>": [{type, call_count, total_cputime,
#: total_time, estimated_time_to_regain_access (minutes)}]}; Page tokens fall under BUC.
RATE_LIMITS_URL = "https://developers.facebook.com/docs/graph-api/overview/rate-limiting/"
#: Messenger's own limits (300 calls/s per Page for text, 750 private replies per hour...).
MESSENGER_RATE_LIMITS_URL = ("https://developers.facebook.com/documentation/business-messaging/"
                             "messenger-platform/overview/rate-limiting")
#: Page webhooks, field feed: comments with verb add / edited / remove.
FEED_WEBHOOK_URL = "https://developers.facebook.com/docs/graph-api/webhooks/reference/page/#feed"
#: Attachment payload.url points at Meta's CDN (scontent.xx.fbcdn.net, signed with oh/oe);
#: the link expires.
WEBHOOK_MESSAGES_URL = ("https://developers.facebook.com/docs/messenger-platform/reference/"
                        "webhook-events/messages")

# -- errors ----------------------------------------------------------------------------------

WINDOW_MESSAGE = (
    "(#10) This message is sent outside of allowed window. Learn more about the new policy "
    "here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
)
MESSENGER_WINDOW_SUBCODE = 2018278  # ERROR_CODES_URL
# Instagram's outside-window subcode; not in Meta's public table, taken from production
# clients that handle it (e.g. the Messenger/Instagram error maps indexed by code search).
INSTAGRAM_WINDOW_SUBCODE = 2534022
RETIRED_TAG_SUBCODE = 1893061  # TAGS_RETIRED_URL (observed subcode)
INVALID_COMMENT_SUBCODE = 2018292  # "(#100) Invalid comment_id parameter" (restfb/restfb#1165)
MISSING_OBJECT_SUBCODE = 33  # "Unsupported post request. Object with ID ... does not exist"

_BUC_LIMIT = ("There have been too many {what} to this {account}. Wait a bit and try again. "
              "For more info, please refer to "
              "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.")

# (code, subcode) -> (message, type, is_transient). Lookup falls back to (code, None).
ERROR_CATALOGUE: dict[tuple[int, int | None], tuple[str, str, bool]] = {
    # ERROR_CODES_URL
    (1, None): ("An unknown error has occurred.", "OAuthException", True),
    (2, None): ("An unexpected error has occurred. Please retry your request later.",
                "OAuthException", True),
    (2, 2018344): ("Service temporarily unavailable", "OAuthException", True),
    (1200, None): ("(#1200) Temporary send message failure. Please try again later",
                   "OAuthException", True),
    (551, None): ("(#551) This person isn't available right now.", "OAuthException", False),
    (551, 1545041): ("(#551) This person isn't available right now.", "OAuthException", False),
    (100, None): ("(#100) Invalid parameter", "OAuthException", False),
    (100, 2018001): ("(#100) No matching user found", "OAuthException", False),
    (100, RETIRED_TAG_SUBCODE): ("(#100) Invalid parameter", "OAuthException", False),
    (100, INVALID_COMMENT_SUBCODE): ("(#100) Invalid comment_id parameter", "OAuthException",
                                     False),
    (190, None): ("Invalid OAuth access token.", "OAuthException", False),
    (10, MESSENGER_WINDOW_SUBCODE): (WINDOW_MESSAGE, "OAuthException", False),
    (10, INSTAGRAM_WINDOW_SUBCODE): ("(#10) This message is sent outside of allowed window.",
                                     "OAuthException", False),
    # GRAPH_ERRORS_URL: "10 API Permission Denied", "200-299 API Permission"
    (10, None): ("(#10) Application does not have permission for this action",
                 "OAuthException", False),
    (200, None): ("(#200) Permissions error", "OAuthException", False),
    (368, None): ("(#368) The action attempted has been deemed abusive or is otherwise "
                  "disallowed", "OAuthException", False),
    # Rate limits: ERROR_CODES_URL (4, 613, 100/2018022), RATE_LIMITS_URL (17, 32, 800xx)
    (4, None): ("(#4) Application request limit reached", "OAuthException", True),
    (4, 2018022): ("(#4) Too many send requests to phone numbers", "OAuthException", True),
    (100, 2018022): ("(#100) Too many send requests to phone numbers", "OAuthException", True),
    (17, None): ("(#17) User request limit reached", "OAuthException", True),
    (32, None): ("(#32) Page request limit reached", "OAuthException", True),
    (613, None): ("(#613) Calls to this api have exceeded the rate limit.",
                  "OAuthException", True),
    (80001, None): ("(#80001) " + _BUC_LIMIT.format(what="calls", account="Page account"),
                    "OAuthException", True),
    (80002, None): ("(#80002) " + _BUC_LIMIT.format(what="calls", account="Instagram account"),
                    "OAuthException", True),
    (80006, None): ("(#80006) " + _BUC_LIMIT.format(what="messenger api calls",
                                                    account="Page account"),
                    "OAuthException", True),
    # Private replies: 10900 is Meta's "already replied"; 10902/10903 are the refusals of a
    # private reply for one activity (facebookarchive/php-graph-sdk#568 quotes 10902's text;
    # 10903's text is not published, the wording below follows it).
    (10900, None): ("(#10900) Activity already replied to", "OAuthException", False),
    (10902, None): ("(#10902) This is not a Replyable activity", "OAuthException", False),
    (10903, None): ("(#10903) This activity can't be replied to", "OAuthException", False),
}

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80001, 80002, 80006})

# -- message tags ----------------------------------------------------------------------------

#: Tags Meta accepts today (MESSAGE_TAGS_URL, TAGS_RETIRED_URL).
TAGS = ("HUMAN_AGENT", "CUSTOMER_FEEDBACK")
#: Tags honoured only within 7 days of the person's last message.
SEVEN_DAY_TAGS = ("HUMAN_AGENT", "CUSTOMER_FEEDBACK")
#: Tags the Instagram Messaging API accepts (MESSAGE_TAGS_URL: the others are "not available
#: for Instagram Messaging API").
INSTAGRAM_TAGS = ("HUMAN_AGENT",)
#: Retired on April 27, 2026: code 100 (TAGS_RETIRED_URL).
RETIRED_2026_TAGS = ("CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE")
#: Retired on March 4, 2020 (LEGACY_TAGS_URL): refused like any unknown tag.
RETIRED_2020_TAGS = (
    "APPLICATION_UPDATE", "APPOINTMENT_UPDATE", "COMMUNITY_ALERT", "CONFIRMED_EVENT_REMINDER",
    "FEATURE_FUNCTIONALITY_UPDATE", "GAME_EVENT", "ISSUE_RESOLUTION",
    "NON_PROMOTIONAL_SUBSCRIPTION", "PAIRING_UPDATE", "PAYMENT_UPDATE",
    "PERSONAL_FINANCE_UPDATE", "RESERVATION_UPDATE", "SHIPPING_UPDATE", "TICKET_UPDATE",
    "TRANSPORTATION_UPDATE",
)

# -- rate-limit usage headers ----------------------------------------------------------------

#: Which Business Use Case a throttling code belongs to (RATE_LIMITS_URL: 80001 Pages,
#: 80002 Instagram, 80006 Messenger). 32 is the Page-level limit; 613 the Send API's own.
BUC_TYPE_FOR_CODE = {32: "pages", 80001: "pages", 80002: "instagram", 80006: "messenger",
                     613: "messenger"}
#: Platform (app/user) limits are reported in X-App-Usage.
APP_USAGE_CODES = frozenset({4, 17})


def app_usage(call_count: int = 100, total_cputime: int = 0, total_time: int = 0) -> dict:
    """The X-App-Usage value (percentages of the app's hourly limit)."""
    return {"call_count": call_count, "total_cputime": total_cputime, "total_time": total_time}


def business_usage(object_id: str, use_case: str, call_count: int = 100, total_cputime: int = 0,
                   total_time: int = 0, regain_minutes: int = 0) -> dict:
    """The X-Business-Use-Case-Usage value: per business object (here the Page), a list of
    use cases with percentages and ``estimated_time_to_regain_access`` in minutes."""
    return {str(object_id): [{
        "type": use_case, "call_count": call_count, "total_cputime": total_cputime,
        "total_time": total_time, "estimated_time_to_regain_access": regain_minutes,
    }]}


def rate_limit_headers(code: int | None, page_id: str | None, spec: Mapping[str, Any]) -> dict:
    """Headers for a throttled answer: X-App-Usage for app/user limits, X-Business-Use-Case-
    Usage for the rest. ``spec`` may carry ``usage_type``, ``regain_minutes``, ``call_count``,
    ``total_cputime``, ``total_time`` and ``headers`` (sent as given, objects as JSON)."""
    headers: dict[str, str] = {}
    call_count = int(spec.get("call_count") or 100)
    cpu = int(spec.get("total_cputime") or 0)
    total = int(spec.get("total_time") or 0)
    if code in APP_USAGE_CODES and not spec.get("usage_type"):
        headers["X-App-Usage"] = json.dumps(app_usage(call_count, cpu, total))
    elif code in RATE_LIMIT_CODES or spec.get("usage_type") or spec.get("regain_minutes"):
        use_case = spec.get("usage_type") or BUC_TYPE_FOR_CODE.get(code or 0, "messenger")
        # 0 unless asked: Meta sends 0 when it gives no estimate, and a longer block is what a
        # test asks for explicitly (``regain_minutes``).
        regain = int(spec.get("regain_minutes") or 0)
        headers["X-Business-Use-Case-Usage"] = json.dumps(business_usage(
            page_id or "0", use_case, call_count, cpu, total, regain))
    for name, value in (spec.get("headers") or {}).items():
        headers[str(name)] = value if isinstance(value, str) else json.dumps(value)
    return headers
