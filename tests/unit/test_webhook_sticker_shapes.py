"""Sticker messages in the shapes Meta sends them: the sticker id at the message level
(``message.sticker_id``) with an ``image`` attachment whose payload has only the picture's URL,
and — Meta's Messenger changelog of 2026-06-01, "Webhook change with sticker attachment type" —
during the 90-day transition both the old ``image`` attachment and the new ``sticker`` attachment
(with ``sticker_id``). Each is a reaction (👍 for 369239263222822), never a complaint with
"[lampiran: image]"; a real photo with text stays evidence."""
from __future__ import annotations

from services.intake.domain.webhook import CitizenReaction, MessengerMessage, parse_messaging

PAGE = "100000000000001"
PSID = "7000000000000101"
LIKE = 369239263222822
STICKER_URL = "https://scontent.xx.fbcdn.net/v/t39.1997-6/39178562_1505197616293642_n.png?_nc_oh=x&oe=6"


def event(message: dict) -> dict:
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1764500000000,
            "message": {"mid": "m_sticker_1", **message}}


def test_a_message_level_sticker_id_with_an_image_payload_that_lacks_it_is_the_like():
    parsed = parse_messaging(PAGE, event({"sticker_id": LIKE,
                                          "attachments": [{"type": "image", "payload": {"url": STICKER_URL}}]}))
    assert isinstance(parsed, CitizenReaction)
    assert (parsed.reaction, parsed.sticker_id) == ("like", str(LIKE))


def test_an_other_sticker_at_the_message_level_is_a_sticker_reaction():
    parsed = parse_messaging(PAGE, event({"sticker_id": 126362187548578,
                                          "attachments": [{"type": "image", "payload": {"url": STICKER_URL}}]}))
    assert isinstance(parsed, CitizenReaction)
    assert (parsed.reaction, parsed.sticker_id) == ("sticker", "126362187548578")


def test_the_transition_shape_with_both_image_and_sticker_attachments_is_one_reaction():
    parsed = parse_messaging(PAGE, event({
        "sticker_id": LIKE,
        "attachments": [{"type": "image", "payload": {"url": STICKER_URL}},
                        {"type": "sticker", "payload": {"url": STICKER_URL, "sticker_id": LIKE}}]}))
    assert isinstance(parsed, CitizenReaction) and parsed.reaction == "like"


def test_a_photo_without_a_sticker_id_is_still_evidence():
    parsed = parse_messaging(PAGE, event({"text": "Jalan rusak",
                                          "attachments": [{"type": "image", "payload": {"url": STICKER_URL}}]}))
    assert isinstance(parsed, MessengerMessage)
    assert parsed.attachments == [{"type": "image", "url": STICKER_URL}]
