"""Errors that cross the RPC boundary as real exception types (registered with nameko), so a
caller of ``routing.respond`` gets ``IllegalAction`` rather than a generic ``RemoteError``.
Callers must import this module (``shared.errors``) for the types to be restored."""
from nameko.exceptions import deserialize_to_instance


@deserialize_to_instance
class ValidationFailed(ValueError):
    """The input is malformed; the message lists the fields."""


@deserialize_to_instance
class NotFound(LookupError):
    """The complaint, tracking code or item does not exist."""


@deserialize_to_instance
class Forbidden(PermissionError):
    """The caller may not see or act on this."""


@deserialize_to_instance
class IllegalAction(RuntimeError):
    """The action is not allowed in the complaint's current state; nothing was recorded."""


@deserialize_to_instance
class Conflict(RuntimeError):
    """The complaint changed concurrently; retry."""


EXPECTED = (ValidationFailed, NotFound, Forbidden, IllegalAction, Conflict)
