"""Meta's webhook understood without a server: signatures, time formats, every item kind, and
what is quarantined (with its reason) rather than guessed."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.intake.domain.webhook import (CommentChange, Ignored, MessengerMessage, NotUnderstood, Problem, meta_time,
                                     parse_body, sign, signature_valid)
from tests.support import facebook as fb

PAGE = "100000000000001"


def kinds(body, pages=None):
    return [item for item, _one in parse_body(body, pages).items]


def test_signature_is_over_the_raw_bytes():
    raw = b'{"object":"page","entry":[]}'
    assert signature_valid(raw, sign(raw, "s3cret"), "s3cret")
    assert signature_valid(raw, fb.signature(raw, "s3cret"), "s3cret")
    assert not signature_valid(raw + b" ", sign(raw, "s3cret"), "s3cret")
    assert not signature_valid(raw, sign(raw, "other"), "s3cret")
    assert not signature_valid(raw, None, "s3cret")
    assert not signature_valid(raw, "sha256=", "s3cret")
    assert not signature_valid(raw, "sha256=zzzz\u00e9", "s3cret")
    assert not signature_valid(raw, sign(raw, "s3cret"), None)          # no secret: nothing passes
    assert not signature_valid(raw, sign(raw, "s3cret").replace("sha256", "sha1"), "s3cret")


@pytest.mark.parametrize("value, expected", [
    (1714532645123, datetime(2024, 5, 1, 3, 4, 5, 123000, tzinfo=timezone.utc)),   # Messenger ms
    (1714532645, datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)),              # comment seconds
    ("1714532645", datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-05-01T03:04:05+0000", datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-05-01T11:04:05+08:00", datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)),
])
def test_meta_times(value, expected):
    assert meta_time(value) == expected


@pytest.mark.parametrize("value", [None, True, "kemarin", "2024-05-01T03:04:05", [1]])
def test_meta_times_not_understood(value):
    with pytest.raises(NotUnderstood):
        meta_time(value)


def test_every_messenger_item_kind():
    psid = "7000001"
    body = fb.page_body(fb.messaging_entry(
        PAGE,
        fb.text_message(PAGE, psid, "Jalan rusak", 1714532645123, mid="m_1"),
        fb.attachment_message(PAGE, psid, ["https://cdn/x.jpg"], mid="m_2"),
        fb.echo_message(PAGE, psid, "balasan"),
        fb.delivery(PAGE, psid),
        fb.read_receipt(PAGE, psid),
        {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": 1,
         "message": {"mid": "m_3", "attachments": [{"type": "image", "payload": {"sticker_id": 369239263222822}}],
                     "sticker_id": 369239263222822}},
    ))
    text, photo, echo, delivered, read, sticker = kinds(body)
    assert text == MessengerMessage(PAGE, psid, "m_1", "Jalan rusak", [],
                                    datetime(2024, 5, 1, 3, 4, 5, 123000, tzinfo=timezone.utc))
    assert photo.attachments == [{"type": "image", "url": "https://cdn/x.jpg"}] and photo.text == ""
    assert [echo.why, delivered.why, read.why, sticker.why] == ["echo", "delivery", "read", "sticker"]


def test_comment_changes():
    add = fb.comment_change(PAGE, "Sampah menumpuk", comment_id="11_22", post_id=f"{PAGE}_11",
                            created_time="2024-05-01T03:04:05+0000")
    own = fb.comment_change(PAGE, "Terima kasih", author_id=PAGE)
    remove = fb.comment_change(PAGE, "", verb="remove", comment_id="11_22", post_id=f"{PAGE}_11")
    like = {"field": "feed", "value": {"item": "reaction", "verb": "add", "reaction_type": "like"}}
    other_field = {"field": "mention", "value": {}}
    added, page_own, removed, reaction, mention = kinds(fb.page_body(fb.changes_entry(PAGE, add, own, remove, like,
                                                                                     other_field)))
    assert isinstance(added, CommentChange) and added.verb == "add" and added.comment_id == "11_22"
    assert added.post_id == f"{PAGE}_11" and added.created_at == datetime(2024, 5, 1, 3, 4, 5, tzinfo=timezone.utc)
    assert isinstance(page_own, Ignored) and page_own.why == "page_own_comment"
    assert removed.verb == "remove" and removed.text == ""
    assert isinstance(reaction, Ignored) and isinstance(mention, Ignored)


def test_problems_are_reported_per_item_with_a_replayable_body():
    good = fb.text_message(PAGE, "7000002", "Air mati")
    no_sender = {"recipient": {"id": PAGE}, "timestamp": 1, "message": {"mid": "m_9", "text": "x"}}
    no_mid = {"sender": {"id": "7"}, "recipient": {"id": PAGE}, "timestamp": 1, "message": {"text": "x"}}
    bad_time = {"sender": {"id": "7"}, "recipient": {"id": PAGE}, "timestamp": "besok",
                "message": {"mid": "m", "text": "x"}}
    unknown = {"sender": {"id": "7"}, "recipient": {"id": PAGE}, "timestamp": 1}
    parsed = parse_body(fb.page_body(fb.messaging_entry(PAGE, good, no_sender, no_mid, bad_time, unknown),
                                     {"time": 1, "messaging": []}, {"id": PAGE, "time": 1}))
    items = [item for item, _one in parsed.items]
    assert isinstance(items[0], MessengerMessage)
    assert [type(i) for i in items[1:]] == [Problem] * 6
    assert "sender.id" in items[1].reason and "mid" in items[2].reason and "time" in items[3].reason
    one_item_body = parsed.items[1][1]
    assert one_item_body["entry"][0]["messaging"] == [no_sender] and one_item_body["entry"][0]["id"] == PAGE
    assert isinstance(kinds({"object": "user", "entry": []})[0], Problem)
    assert isinstance(kinds(["not", "an", "object"])[0], Problem)


def test_only_configured_pages_are_accepted_when_pages_are_configured():
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, "7", "halo")),
                        fb.messaging_entry("999", fb.text_message("999", "8", "halo")))
    accepted, refused = kinds(body, {PAGE})
    assert isinstance(accepted, MessengerMessage)
    assert isinstance(refused, Problem) and "999" in refused.reason
    assert all(isinstance(item, MessengerMessage) for item in kinds(body, None))
