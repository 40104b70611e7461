"""The errors a use case refuses with. They cross the RPC boundary as real exception types:
``shared.glue.remote_errors`` registers them with nameko, so a caller of ``routing.respond`` gets
``IllegalAction`` rather than a generic ``RemoteError`` (callers import that module)."""


class ValidationFailed(ValueError):
    """The input is malformed; the message lists the fields."""


class NotFound(LookupError):
    """The complaint, tracking code or item does not exist."""


class Forbidden(PermissionError):
    """The caller may not see or act on this."""


class NotVisible(Forbidden):
    """The complaint exists but is not the caller's to see. Over HTTP it is answered exactly as
    an unknown complaint (404, same body), so an agency cannot learn which codes exist."""


class IllegalAction(RuntimeError):
    """The action is not allowed in the complaint's current state; nothing was recorded."""


class Conflict(RuntimeError):
    """The complaint changed concurrently; retry."""


EXPECTED = (ValidationFailed, NotFound, Forbidden, NotVisible, IllegalAction, Conflict)
