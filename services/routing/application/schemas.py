"""Input schemas of routing's commands and queries (marshmallow), shared by RPC and HTTP so both
refuse the same malformed requests with the same per-field messages."""
from marshmallow import RAISE, Schema, fields, validate

from shared.core.events.catalogue import PRIORITIES
from shared.core.reference import CATEGORIES, REGION_CODES

from services.routing.domain.disposition import PUBLIC_STATUS

STATUSES = tuple(sorted(set(PUBLIC_STATUS) | set(PUBLIC_STATUS.values())))

def _required_text(max_length: int = 10000) -> fields.String:
    return fields.String(required=True, validate=[validate.Length(min=1, max=max_length),
                                                  validate.Regexp(r"\S", error="must not be blank")])


class _Command(Schema):
    class Meta:
        unknown = RAISE

    complaint_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    actor = _required_text(200)


class Assign(_Command):
    agency_codes = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                               required=True, validate=validate.Length(min=1, max=20))
    note = _required_text()


class Dismiss(_Command):
    reason = _required_text()
    duplicate_of = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(min=1, max=32))


class SetPriority(_Command):
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    reason = _required_text()


class SetConfidential(_Command):
    confidential = fields.Boolean(required=True, truthy={True}, falsy={False})
    reason = _required_text()


class Reclassify(_Command):
    """The desk's correction: ``None`` leaves that fact as it is; at least one must be given."""
    category = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(
        CATEGORIES, error="unknown category {input!r}; expected one of {choices}"))
    region_code = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(
        REGION_CODES, error="unknown region code {input!r}; expected a BPS code of NTB: {choices}"))
    reason = _required_text()


class AgencyCommand(_Command):
    agency_code = fields.String(required=True, validate=validate.Length(min=1, max=64))


class Reject(AgencyCommand):
    reason = _required_text()


class Respond(AgencyCommand):
    text = _required_text(5000)
    resolved = fields.Boolean(required=True, truthy={True}, falsy={False})


class ComplaintsFor(Schema):
    agency_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    status = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(STATUSES))


class IssueToken(Schema):
    agency_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    actor = _required_text(200)


class Link(_Command):
    primary_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # Empty: the suggestion's grounds are the reason (a link made by hand needs one).
    reason = fields.String(load_default="", allow_none=True, validate=validate.Length(max=10000))


class RefuseLink(_Command):
    primary_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


# --- HTTP bodies (complaint id from the path, agency and actor from the token) -------------

class _Body(Schema):
    class Meta:
        unknown = RAISE


class AssignBody(_Body):
    agency_codes = fields.List(fields.String(), required=True)
    note = fields.String(required=True)


class DismissBody(_Body):
    reason = fields.String(required=True)
    duplicate_of = fields.String(load_default=None, allow_none=True)


class PriorityBody(_Body):
    priority = fields.String(required=True)
    reason = fields.String(required=True)


class ConfidentialityBody(_Body):
    confidential = fields.Boolean(required=True, truthy={True}, falsy={False})
    reason = fields.String(required=True)


class ReclassifyBody(_Body):
    category = fields.String(load_default=None, allow_none=True)
    region_code = fields.String(load_default=None, allow_none=True)
    reason = fields.String(required=True)


class EmptyBody(_Body):
    pass


class RejectBody(_Body):
    reason = fields.String(required=True)


class RespondBody(_Body):
    text = fields.String(required=True)
    resolved = fields.Boolean(load_default=False, truthy={True}, falsy={False})


class LinkBody(_Body):
    primary = fields.String(required=True)
    reason = fields.String(load_default="")


class RefuseLinkBody(_Body):
    primary = fields.String(required=True)
