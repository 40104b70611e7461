"""Input schemas of intake's RPC and web API (marshmallow): what other systems and the web form
may send. Errors come back per field."""
from typing import Callable

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from shared.core import graph_ids
from shared.core.events.catalogue import CATEGORIES, CHANNELS, REGION_CODES, Attachment, IsoTime, ReplyTo


class Reporter(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(validate=validate.Length(max=200), allow_none=True)
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 ()\-]{6,20}$", error="not a phone number"),
                          allow_none=True)
    email = fields.Email(allow_none=True, validate=validate.Length(max=200))


class Location(Schema):
    class Meta:
        unknown = EXCLUDE

    region_code = fields.String(validate=validate.OneOf(REGION_CODES), allow_none=True)
    address = fields.String(validate=validate.Length(max=500), allow_none=True)
    lat = fields.Float(validate=validate.Range(min=-90, max=90), allow_none=True)
    lon = fields.Float(validate=validate.Range(min=-180, max=180), allow_none=True)


class WebComplaint(Schema):
    """``POST /api/complaints`` (the public web form)."""

    class Meta:
        unknown = EXCLUDE

    text = fields.String(required=True, validate=validate.Length(min=5, max=10000))
    reporter = fields.Nested(Reporter, allow_none=True)
    location = fields.Nested(Location, allow_none=True)
    category = fields.String(validate=validate.OneOf(CATEGORIES), allow_none=True)
    confidential = fields.Boolean(allow_none=True)
    attachments = fields.List(fields.Nested(Attachment), validate=validate.Length(max=20), load_default=list)


def _meta_id(kind: str) -> Callable[[object], None]:
    """A field validator: the value has the shape of a Meta id of that kind (``graph_ids``)."""
    def check(value: object) -> None:
        found = graph_ids.problem(kind, value)
        if found:
            raise ValidationError(found)
    return check


class CallerReplyTo(ReplyTo):
    """``reply_to`` as a caller may give it: every id shaped like Meta's (they become Graph URL
    path segments in notification: a crafted ``comment_id`` such as ``../<page-id>/feed?x=``
    would otherwise publish on the Page's feed), and nothing but the known members."""

    class Meta:
        unknown = RAISE

    page_id = fields.String(required=True, validate=_meta_id("page_id"))
    psid = fields.String(validate=_meta_id("psid"))
    comment_id = fields.String(validate=_meta_id("comment_id"))
    post_id = fields.String(allow_none=True, validate=_meta_id("post_id"))
    platform = fields.String(validate=validate.OneOf(("messenger", "instagram")))


class RpcComplaint(WebComplaint):
    """``intake.file_complaint(complaint)`` for other government systems."""

    channel = fields.String(validate=validate.OneOf(CHANNELS), load_default="api")
    reply_to = fields.Nested(CallerReplyTo, allow_none=True)
    received_at = IsoTime(allow_none=True)
    # Meta's timestamp of the citizen's last message, for systems holding a Messenger conversation.
    last_citizen_message_at = IsoTime(allow_none=True)
    external_ref = fields.String(validate=validate.Length(min=1, max=200), allow_none=True)

    @validates_schema
    def _facebook_channels_need_reply_to(self, data, **kwargs):
        if data.get("channel") == "import" and not data.get("received_at"):
            raise ValidationError("imports must give received_at", "received_at")
