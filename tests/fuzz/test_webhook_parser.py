"""Meta's webhook parser under arbitrary input (pure functions): any JSON value, any Meta-shaped
body with any value in any field, and any bytes. Every item must come out as exactly one of
MessengerMessage / CitizenReaction / CommentChange / Ignored / Problem — never an exception — and every Problem
carries a reason and a one-item body that is itself a parseable webhook (so it can be replayed)."""
from __future__ import annotations

import json

from hypothesis import given, strategies as st

from services.intake.domain.webhook import (CitizenReaction, CommentChange, Ignored, MessengerMessage, Problem,
                                            meta_time, NotUnderstood, parse_body, sign, signature_valid)
from tests.fuzz.strategies import PAGE_ID, PURE, json_values, mostly_valid_bodies, times, webhook_bodies

KINDS = (MessengerMessage, CitizenReaction, CommentChange, Ignored, Problem)


def check_parsed(body, pages):
    parsed = parse_body(body, pages)
    for item, one_item_body in parsed.items:
        assert isinstance(item, KINDS)
        if isinstance(item, Problem):
            assert isinstance(item.reason, str) and item.reason
        # Whatever is kept (quarantined or applied) serialises and parses again the same way.
        again = parse_body(json.loads(json.dumps(one_item_body)), pages)
        assert len(again.items) >= 1
        if isinstance(item, MessengerMessage):
            assert item.psid and item.mid and (item.text.strip() or item.attachments)
            assert item.sent_at.tzinfo is not None
        if isinstance(item, CitizenReaction):
            assert item.psid and item.mid and item.reaction in ("like", "sticker", "heart")
            assert item.sent_at.tzinfo is not None
        if isinstance(item, CommentChange):
            assert item.verb in ("add", "edited", "remove") and item.comment_id
    return parsed


@PURE
@given(body=json_values)
def test_any_json_value(tried, body):
    tried["webhook parser: any JSON value"] += 1
    check_parsed(body, None)


@PURE
@given(body=webhook_bodies, configured=st.booleans())
def test_meta_shaped_bodies(tried, body, configured):
    tried["webhook parser: Meta-shaped bodies"] += 1
    check_parsed(body, {PAGE_ID} if configured else None)


@PURE
@given(body=mostly_valid_bodies)
def test_mostly_valid_bodies(tried, body):
    tried["webhook parser: mostly valid bodies"] += 1
    check_parsed(body, {PAGE_ID})


@PURE
@given(value=times)
def test_meta_time_accepts_or_says_why(tried, value):
    tried["webhook parser: times"] += 1
    try:
        moment = meta_time(value)
    except NotUnderstood as error:
        assert str(error)
    else:
        assert moment.tzinfo is not None


@PURE
@given(raw=st.binary(max_size=300), secret=st.one_of(st.none(), st.text(max_size=20)),
       form=st.sampled_from(["right", "upper", "spaced", "one_char_off", "other_body", "no_prefix",
                             "random", "none"]),
       junk=st.text(max_size=80))
def test_signature_check_never_raises_and_only_accepts_the_hmac(tried, raw, secret, form, junk):
    """Headers that are the body's HMAC (as Meta sends it, or in upper case, or padded) are
    accepted; anything else — a digit off, another body's HMAC, no prefix, junk, none — is not."""
    tried[f"webhook signature: {form}"] += 1
    right = sign(raw, secret or "x")
    digest = right[len("sha256="):]
    header = {
        "right": right, "upper": "sha256=" + digest.upper(), "spaced": f"{right} ",
        "one_char_off": right[:-1] + ("0" if right[-1] != "0" else "1"),
        "other_body": sign(raw + b"!", secret or "x"), "no_prefix": digest,
        "random": junk, "none": None,
    }[form]
    accepted = signature_valid(raw, header, secret)
    # Without a secret nothing is accepted; junk equal to the HMAC by chance is out of reach.
    assert accepted is (bool(secret) and form in ("right", "upper", "spaced"))
