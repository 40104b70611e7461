"""The console's session: a small signed cookie, and for a signed-in officer a server-side record.

The cookie holds base64url(JSON) and an HMAC-SHA256 of it under ``ROUTING_CONSOLE_SECRET``; a
cookie that was altered, signed with another secret or is older than ``MAX_AGE_SECONDS`` is
ignored (the visitor signs in again). Every visitor — even before signing in — has a per-session
CSRF token; each form carries it and every POST is checked against it (a login form too, so no
other site can sign a browser in under someone else's token). Signing in starts a new session,
with a new CSRF token.

The cookie never holds the sign-in token. It holds a *token mark* — an HMAC of the token's stored
hash under the secret — and every request checks that the agency still has a token with that
mark, so revoking a token (removing it from ``ROUTING_TOKENS``) ends the sessions opened with it.

A signed-in session also carries a random *session id*; ``sessions.py`` keeps its hash in
routing's database from sign-in to sign-out (or expiry). A cookie whose id is no longer there is
not signed in, so signing out ends the session even for a copy of the cookie. Sessions before
sign-in (a CSRF token only) keep nothing on the server: anyone may start one.

Pure: no web framework, no database.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Iterable, Optional

COOKIE_NAME = "ntbcare_console"
COOKIE_PATH = "/console"
MAX_AGE_SECONDS = 12 * 3600  # one working day; then sign in again
_CONTEXT = b"ntbcare-console-session-v1."


@dataclass(frozen=True)
class Session:
    csrf: str
    issued_at: int
    agency_code: Optional[str] = None
    officer: Optional[str] = None
    token_mark: Optional[str] = None
    session_id: Optional[str] = None

    @property
    def signed_in(self) -> bool:
        """Claims to be signed in; ``sessions.is_open`` decides whether it still is."""
        return bool(self.agency_code and self.officer and self.token_mark and self.session_id)

    @property
    def actor(self) -> str:
        """Recorded with every action, as the HTTP API does with ``X-Actor``."""
        return f"{self.agency_code}:{self.officer}"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def anonymous(now: int) -> Session:
    return Session(csrf=new_csrf_token(), issued_at=int(now))


def csrf_matches(session: Optional[Session], submitted: Optional[str]) -> bool:
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), str(submitted).encode("utf-8"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, secret: bytes, max_age_seconds: int = MAX_AGE_SECONDS):
        self._secret = secret
        self.max_age_seconds = max_age_seconds

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest())

    def token_mark(self, token_hash: str) -> str:
        return _b64(hmac.new(self._secret, b"token-mark." + token_hash.encode("ascii"),
                             hashlib.sha256).digest())

    def mark_is_current(self, mark: str, token_hashes: Iterable[str]) -> bool:
        return any(hmac.compare_digest(mark, self.token_mark(h)) for h in token_hashes)

    def signed_in(self, agency_code: str, officer: str, token_hash: str, now: int) -> Session:
        """A fresh session (new CSRF token) for someone who just proved a token."""
        return Session(csrf=new_csrf_token(), issued_at=int(now), agency_code=agency_code,
                       officer=officer, token_mark=self.token_mark(token_hash),
                       session_id=secrets.token_urlsafe(32))

    def dumps(self, session: Session) -> str:
        payload = _b64(json.dumps({"c": session.csrf, "i": session.issued_at, "a": session.agency_code,
                                   "o": session.officer, "m": session.token_mark, "s": session.session_id},
                                  separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return f"{payload}.{self._signature(payload)}"

    def loads(self, value: Optional[str], now: int) -> Optional[Session]:
        """The session in a cookie, or None when it is missing, altered or expired."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        payload, signature = value.split(".")
        try:
            if not hmac.compare_digest(signature, self._signature(payload)):
                return None
            data = json.loads(_unb64(payload).decode("utf-8"))
            session = Session(csrf=str(data["c"]), issued_at=int(data["i"]),
                              agency_code=data.get("a"), officer=data.get("o"),
                              token_mark=data.get("m"), session_id=data.get("s"))
        except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
            return None
        if not session.csrf or not 0 <= now - session.issued_at <= self.max_age_seconds:
            return None
        return session
