"""The console's signed-in sessions in routing's database (``console_sessions``): opened at
sign-in, closed at sign-out, gone after their cookie's lifetime. A request is signed in only
while its session's row exists, so a copied cookie dies with the sign-out. The table holds
SHA-256 hashes of the session ids, never the ids themselves: a read of the table opens nothing.
"""
from __future__ import annotations

import hashlib

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from services.routing.adapters import tables
from services.routing.adapters.console.session import Session


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def open_session(connection: Connection, session: Session, lifetime_seconds: int) -> None:
    """Record a new signed-in session, clearing expired ones on the way (sign-ins are rare)."""
    assert session.session_id and session.agency_code and session.officer
    s = tables.console_sessions
    connection.execute(delete(s).where(s.c.expires_at < session.issued_at))
    connection.execute(s.insert().values(
        session_hash=_hash(session.session_id), agency_code=session.agency_code,
        officer=session.officer, issued_at=session.issued_at,
        expires_at=session.issued_at + lifetime_seconds))


def is_open(connection: Connection, session: Session, now: int) -> bool:
    if not session.session_id:
        return False
    s = tables.console_sessions
    row = connection.execute(select(s.c.agency_code, s.c.expires_at).where(
        s.c.session_hash == _hash(session.session_id))).first()
    return row is not None and row.agency_code == session.agency_code and row.expires_at >= now


def close_session(connection: Connection, session: Session) -> None:
    if session.session_id:
        s = tables.console_sessions
        connection.execute(delete(s).where(s.c.session_hash == _hash(session.session_id)))
