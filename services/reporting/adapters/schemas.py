"""Input schemas of reporting's RPC and HTTP entrypoints (marshmallow)."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema


class MonthArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    year = fields.Integer(required=True, strict=False, validate=validate.Range(min=2000, max=2100))
    month = fields.Integer(required=True, strict=False, validate=validate.Range(min=1, max=12))


class PerformanceArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    agency_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    date_from = fields.Date(required=True)
    date_to = fields.Date(required=True)

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data["date_from"] > data["date_to"]:
            raise ValidationError("date_from must not be after date_to", "date_from")


class TrackingCodeArgs(Schema):
    tracking_code = fields.String(required=True, validate=validate.Length(min=4, max=64))


class DashboardArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    month = fields.String(validate=validate.Regexp(r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"), load_default=None)


class FindArgs(Schema):
    """``reporting.find_complaints`` (Open311's GET requests)."""

    class Meta:
        unknown = EXCLUDE

    tracking_codes = fields.List(fields.String(validate=validate.Length(min=4, max=64)),
                                 validate=validate.Length(max=200), load_default=None, allow_none=True)
    category = fields.String(validate=validate.Length(max=32), load_default=None, allow_none=True)
    filed_from = fields.AwareDateTime(load_default=None, allow_none=True)
    filed_to = fields.AwareDateTime(load_default=None, allow_none=True)
    status = fields.String(validate=validate.OneOf(("open", "closed")), load_default=None, allow_none=True)
    limit = fields.Integer(validate=validate.Range(min=1, max=1000), load_default=200)
