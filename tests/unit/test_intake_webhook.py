"""Meta's webhook understood without a server: signatures, time formats, every item kind, and
what is quarantined (with its reason) rather than guessed."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.intake.domain.webhook import (MAX_WEBHOOK_BYTES, CitizenReaction, CommentChange, Ignored,
                                            MessengerMessage, NotUnderstood, Problem, StandbyMode, meta_time,
                                            parse_body, parse_standby_mode, sign, signature_valid)
from tests.support import facebook as fb
from tests.support import meta_payloads as meta

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
    assert [echo.why, delivered.why, read.why] == ["echo", "delivery", "read"]
    assert isinstance(sticker, CitizenReaction)
    assert (sticker.reaction, sticker.sticker_id) == ("like", "369239263222822")


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
    assert isinstance(kinds({"object": 7, "entry": []})[0], Problem)
    assert isinstance(kinds({"entry": []})[0], Problem)
    assert isinstance(kinds({"object": "page", "entry": {}})[0], Problem)
    assert isinstance(kinds(["not", "an", "object"])[0], Problem)


def test_only_configured_pages_are_accepted_when_pages_are_configured():
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, "7", "halo")),
                        fb.messaging_entry("999", fb.text_message("999", "8", "halo")))
    accepted, refused = kinds(body, {PAGE})
    assert isinstance(accepted, MessengerMessage)
    assert isinstance(refused, Problem) and "999" in refused.reason
    assert all(isinstance(item, MessengerMessage) for item in kinds(body, None))


# --- stickers and the like button ----------------------------------------------------------------

@pytest.mark.parametrize("size", [meta.LIKE_SMALL, meta.LIKE_MEDIUM, meta.LIKE_LARGE])
def test_the_like_button_in_every_size_is_a_reaction_never_a_message(size):
    """Meta sends the 👍 typed ``image`` with a URL *and* a sticker_id: not evidence, not text."""
    [like] = kinds(fb.page_body(fb.messaging_entry(PAGE, meta.like_button(PAGE, "7000001", size, mid="m_like"))))
    assert isinstance(like, CitizenReaction)
    assert (like.page_id, like.psid, like.mid, like.reaction, like.sticker_id, like.platform) == (
        PAGE, "7000001", "m_like", "like", str(size), "messenger")


def test_stickers_typed_image_and_sticker_during_the_transition_and_after_are_reactions():
    transition, after = kinds(fb.page_body(fb.messaging_entry(
        PAGE, meta.sticker_transition(PAGE, "7000002"), meta.sticker_only(PAGE, "7000002"))))
    for sticker in (transition, after):
        assert isinstance(sticker, CitizenReaction)
        assert (sticker.reaction, sticker.sticker_id) == ("sticker", str(meta.A_STICKER))
    like_transition, = kinds(fb.page_body(fb.messaging_entry(
        PAGE, meta.sticker_transition(PAGE, "7000002", sticker_id=meta.LIKE_SMALL))))
    assert like_transition.reaction == "like"


def test_a_sticker_with_text_is_the_text_and_a_sticker_never_becomes_an_attachment():
    [message] = kinds(fb.page_body(fb.messaging_entry(PAGE, meta.text_with_like(PAGE, "7000003", "Terima kasih"))))
    assert isinstance(message, MessengerMessage) and (message.text, message.attachments) == ("Terima kasih", [])
    photo_and_sticker = fb.attachment_message(PAGE, "7000003", ["https://cdn/jalan.jpg"])
    photo_and_sticker["message"]["attachments"].append(
        {"type": "sticker", "payload": {"url": "https://cdn/s.png", "sticker_id": meta.A_STICKER}})
    [evidence] = kinds(fb.page_body(fb.messaging_entry(PAGE, photo_and_sticker)))
    assert isinstance(evidence, MessengerMessage)
    assert evidence.attachments == [{"type": "image", "url": "https://cdn/jalan.jpg"}]


def test_a_fallback_without_a_url_is_ignored_by_name_and_an_empty_message_is_a_problem():
    fallback = {"sender": {"id": "7"}, "recipient": {"id": PAGE}, "timestamp": 1,
                "message": {"mid": "m_f", "attachments": [{"type": "fallback", "payload": None, "title": "x"}]}}
    empty = {"sender": {"id": "7"}, "recipient": {"id": PAGE}, "timestamp": 1, "message": {"mid": "m_e"}}
    ignored, problem = kinds(fb.page_body(fb.messaging_entry(PAGE, fallback, empty)))
    assert isinstance(ignored, Ignored) and ignored.why == "nothing_to_keep"
    assert isinstance(problem, Problem)


# --- standby -------------------------------------------------------------------------------------

def test_standby_messages_are_processed_like_messaging_by_default():
    psid = "7000004"
    body = fb.page_body(meta.standby_entry(PAGE, fb.text_message(PAGE, psid, "Lampu jalan mati", mid="m_s"),
                                           meta.standby_echo(PAGE, psid, "Halo, ada yang bisa dibantu?"),
                                           fb.read_receipt(PAGE, psid)))
    message, echo, read = kinds(body)
    assert isinstance(message, MessengerMessage) and (message.mid, message.text) == ("m_s", "Lampu jalan mati")
    assert (echo.why, read.why) == ("echo", "read")
    one_item = parse_body(body).items[0][1]
    assert one_item["entry"][0]["standby"] == [body["entry"][0]["standby"][0]]   # replayable as standby


def test_the_standby_setting_ignores_them_for_every_page_or_for_some():
    body = fb.page_body(meta.standby_entry(PAGE, fb.text_message(PAGE, "7000005", "Air mati")),
                        meta.standby_entry("999", fb.text_message("999", "7000006", "Air mati")))
    assert [type(i) for i in kinds_with(body, standby=parse_standby_mode("ignore"))] == [Ignored, Ignored]
    own, other = kinds_with(body, standby=parse_standby_mode(f"process,{PAGE}:ignore"))
    assert isinstance(own, Ignored) and own.why == "standby" and isinstance(other, MessengerMessage)
    assert parse_standby_mode(None) == StandbyMode() == parse_standby_mode("")
    assert parse_standby_mode(" Process ").processes(PAGE)
    for wrong in ("drop", ":ignore", f"{PAGE}:maybe"):
        with pytest.raises(ValueError):
            parse_standby_mode(wrong)


def kinds_with(body, pages=None, **settings):
    return [item for item, _one in parse_body(body, pages, **settings).items]


# --- events that are not messages: ignored by name --------------------------------------------------

def test_handover_reactions_referrals_postbacks_edits_optins_are_ignored_by_name():
    psid = "7000007"
    body = fb.page_body(fb.messaging_entry(
        PAGE, meta.pass_thread_control(PAGE, psid), meta.take_thread_control(PAGE, psid),
        meta.request_thread_control(PAGE, psid), meta.app_roles(PAGE), meta.reaction(PAGE, psid, "m_answer"),
        meta.referral(PAGE, psid), meta.postback(PAGE, psid), meta.message_edit(PAGE, psid, "m_1", "Jalan rusak!"),
        meta.optin(PAGE), meta.policy_enforcement(PAGE), fb.echo_message(PAGE, psid, "balasan")))
    items = kinds(body, {PAGE})
    assert all(isinstance(item, Ignored) for item in items), items
    assert [item.why for item in items] == [
        "pass_thread_control", "take_thread_control", "request_thread_control", "app_roles", "reaction",
        "referral", "postback", "message_edit", "optin", "policy_enforcement", "echo"]
    standby_handover = fb.page_body(meta.standby_entry(PAGE, meta.pass_thread_control(PAGE, psid)))
    assert [i.why for i in kinds(standby_handover)] == ["pass_thread_control"]


def test_other_objects_unknown_comment_verbs_and_other_fields_are_ignored_by_name():
    [user] = kinds(meta.user_object_body())
    [permissions] = kinds(meta.permissions_object_body())
    assert (user.why, permissions.why) == ("object 'user'", "object 'permissions'")
    hide, block, unknown = kinds(fb.page_body(fb.changes_entry(
        PAGE, meta.comment_with_verb(PAGE, "hide"), meta.comment_with_verb(PAGE, "block"),
        meta.comment_with_verb(PAGE, "pin"))))
    assert [hide.why, block.why, unknown.why] == ["comment hide", "comment block", "comment pin"]
    no_verb = meta.comment_with_verb(PAGE, "add")
    del no_verb["value"]["verb"]
    assert isinstance(kinds(fb.page_body(fb.changes_entry(PAGE, no_verb)))[0], Problem)


# --- comments with only a video, a GIF or a photo ------------------------------------------------------

def test_comments_with_only_a_video_a_gif_or_a_photo_are_complaints_with_an_attachment():
    video, gif, photo = kinds(fb.page_body(fb.changes_entry(
        PAGE, meta.video_comment(PAGE, url="https://video.xx.fbcdn.net/v/jalan.mp4"), meta.gif_comment(PAGE),
        meta.photo_comment(PAGE))))
    for comment in (video, gif, photo):
        assert isinstance(comment, CommentChange) and comment.verb == "add" and comment.text == ""
    assert video.attachments == [{"type": "video", "url": "https://video.xx.fbcdn.net/v/jalan.mp4"}]
    assert gif.attachments[0]["type"] == "video" and gif.attachments[0]["url"].endswith(".gif")
    assert photo.attachments[0]["type"] == "image"


def test_comment_attachments_as_the_graph_comment_node_has_them():
    change = meta.comment_with_verb(PAGE, "add")
    del change["value"]["message"]
    change["value"]["attachment"] = {"type": "animated_image_video", "media": {
        "image": {"src": "https://scontent.xx.fbcdn.net/gif.jpg"}, "source": "https://video.xx.fbcdn.net/gif.mp4"}}
    sticker = meta.comment_with_verb(PAGE, "add")
    del sticker["value"]["message"]
    sticker["value"]["attachment"] = {"type": "sticker", "media": {"image": {"src": "https://x/sticker.png"}}}
    with_media, only_sticker = kinds(fb.page_body(fb.changes_entry(PAGE, change, sticker)))
    assert with_media.attachments == [{"type": "video", "url": "https://video.xx.fbcdn.net/gif.mp4"}]
    assert isinstance(only_sticker, Ignored) and only_sticker.why == "sticker_comment"


# --- Instagram Direct -------------------------------------------------------------------------------------

IG_ACCOUNT = "17841400000000001"


def test_instagram_messages_map_the_account_to_its_page():
    igsid = "6000000000000042"
    body = meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, "Jalan di Lombok Utara rusak", mid="aWdf_1",
                                        timestamp_ms=1714532645123),
        meta.instagram_image(IG_ACCOUNT, igsid, url="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"),
        meta.instagram_heart(IG_ACCOUNT, igsid), meta.instagram_unsend(IG_ACCOUNT, igsid, "aWdf_1"),
        meta.instagram_read(IG_ACCOUNT, igsid, "aWdf_1"), meta.instagram_reaction(IG_ACCOUNT, igsid, "aWdf_9")))
    text, image, heart, unsend, read, reaction = kinds_with(body, {PAGE}, instagram_accounts={IG_ACCOUNT: PAGE})
    assert text == MessengerMessage(PAGE, igsid, "aWdf_1", "Jalan di Lombok Utara rusak", [],
                                    datetime(2024, 5, 1, 3, 4, 5, 123000, tzinfo=timezone.utc), "instagram")
    assert image.attachments == [{"type": "image", "url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}]
    assert isinstance(heart, CitizenReaction) and (heart.reaction, heart.platform) == ("heart", "instagram")
    assert [unsend.why, read.why, reaction.why] == ["message_deleted", "read", "reaction"]
    [echo] = kinds_with(meta.instagram_body(meta.instagram_entry(IG_ACCOUNT, {
        "sender": {"id": IG_ACCOUNT}, "recipient": {"id": igsid}, "timestamp": 1,
        "message": {"mid": "aWdf_2", "text": "Terima kasih", "is_echo": True}})), {PAGE},
        instagram_accounts={IG_ACCOUNT: PAGE})
    assert isinstance(echo, Ignored) and echo.why == "echo"


def test_an_unmapped_instagram_account_is_quarantined_and_instagram_comments_are_ignored():
    body = meta.instagram_body(meta.instagram_entry(IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, "6001", "halo")))
    [problem] = kinds_with(body, {PAGE})
    assert isinstance(problem, Problem) and "FACEBOOK_INSTAGRAM_ACCOUNTS" in problem.reason
    assert problem.body["object"] == "instagram"                   # replayable once configured
    [as_page] = kinds_with(meta.instagram_body(meta.instagram_entry(
        PAGE, meta.instagram_text(PAGE, "6001", "halo"))), {PAGE})  # entry.id already a served Page
    assert isinstance(as_page, MessengerMessage) and as_page.page_id == PAGE
    [comment] = kinds_with(meta.instagram_body(meta.instagram_comment_entry(IG_ACCOUNT, "Bagus")), {PAGE},
                           instagram_accounts={IG_ACCOUNT: PAGE})
    assert isinstance(comment, Ignored) and comment.why == "instagram field 'comments'"


# --- batches ---------------------------------------------------------------------------------------------

def test_a_batch_of_a_thousand_updates_fits_the_body_cap_and_parses_item_by_item():
    """Meta batches up to 1000 updates; the longest Messenger text (2,000 characters), JSON-escaped
    emoji everywhere, still fits ``MAX_WEBHOOK_BYTES``."""
    import json
    longest = "\U0001F6A7" * 1000                     # 2,000 UTF-16 units: the Send API's maximum
    entries = [fb.messaging_entry(PAGE, *(fb.text_message(PAGE, f"70{e:03d}{i:03d}", longest) for i in range(100)))
               for e in range(10)]
    raw = json.dumps(fb.page_body(*entries)).encode()     # ensure_ascii: every emoji as two \uXXXX
    assert 10 * 1024 * 1024 < len(raw) < MAX_WEBHOOK_BYTES       # ~12 MB, within the cap
    items = kinds(fb.page_body(*entries))
    assert len(items) == 1000 and all(isinstance(i, MessengerMessage) for i in items)
