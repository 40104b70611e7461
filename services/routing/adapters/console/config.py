"""The console's settings from the environment (documented in docs/console.md).

``ROUTING_CONSOLE_SECRET`` signs the session cookies. Production refuses to start without it (a
secret must be the same in every routing process, or sessions would fail at random between
them); with ``NTBCARE_ENV=development`` a random one is made per process, so sessions end when
routing restarts. ``ROUTING_CONSOLE_SECURE_COOKIE`` is ``auto`` (Secure when the request came
over https, also as told by ``X-Forwarded-Proto``), ``true`` or ``false``.
"""
from __future__ import annotations

import secrets

from shared.core.config import ConfigError, env, is_development

MIN_SECRET_LENGTH = 32
SECURE_MODES = ("auto", "true", "false")

_development_secret: bytes | None = None


def console_secret() -> bytes:
    global _development_secret
    value = env("ROUTING_CONSOLE_SECRET")
    if value is not None:
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"ROUTING_CONSOLE_SECRET must be at least {MIN_SECRET_LENGTH} characters "
                              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        return value.encode("utf-8")
    if not is_development():
        raise ConfigError("ROUTING_CONSOLE_SECRET is required (it signs the console's session "
                          "cookies); set it to a random value of at least "
                          f"{MIN_SECRET_LENGTH} characters, the same in every routing process")
    if _development_secret is None:
        _development_secret = secrets.token_bytes(32)
    return _development_secret


def secure_cookie_mode() -> str:
    mode = (env("ROUTING_CONSOLE_SECURE_COOKIE", "auto") or "auto").lower()
    if mode not in SECURE_MODES:
        raise ConfigError(f"ROUTING_CONSOLE_SECURE_COOKIE must be one of {', '.join(SECURE_MODES)}, not {mode!r}")
    return mode


def check() -> None:
    """Called by routing's ``check_startup``: refuse to start on a missing or malformed setting."""
    console_secret()
    secure_cookie_mode()
