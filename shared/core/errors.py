"""The errors a use case refuses with. They cross the RPC boundary as real exception types:
``shared.glue.remote_errors`` registers them with nameko, so a caller of ``routing.respond`` gets
``IllegalAction`` rather than a generic ``RemoteError`` (callers import that module)."""


class ValidationFailed(ValueError):
    """The input is malformed; the message lists the fields."""


class NotFound(LookupError):
    """The complaint, tracking code or item does not exist."""


class Forbidden(PermissionError):
    """The caller may not see or act on this."""


class IllegalAction(RuntimeError):
    """The action is not allowed in the complaint's current state; nothing was recorded."""


class Conflict(RuntimeError):
    """The complaint changed concurrently; retry."""


EXPECTED = (ValidationFailed, NotFound, Forbidden, IllegalAction, Conflict)
