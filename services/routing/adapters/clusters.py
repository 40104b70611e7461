"""Routing's tables of duplicates and clusters (``cluster_words``, ``link_suggestions``,
``cluster_links``) and their settings.

``ROUTING_CLUSTER_WINDOW_HOURS`` [72]: how far apart in filing time two complaints may be to be
suggested as one; ``ROUTING_CLUSTER_SIMILARITY`` [0.35]: the least word similarity (Jaccard, 0–1)
for complaints of the same category and region (comments under the same post need none).

Functions take an open connection; the caller owns the transaction.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Optional

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from shared.core.config import number
from shared.core.events import isoformat_utc, parse_iso
from services.routing.adapters import tables
from services.routing.domain import clusters
from services.routing.domain.clusters import Filing, Match

PENDING, CONFIRMED, REFUSED = "pending", "confirmed", "refused"
OPEN_STAGES = ("filed", "triage", "assigned", "in_progress", "returned")
#: The most candidates a new complaint is compared with (the most recent first).
CANDIDATE_LIMIT = 200


def suggestion_rules() -> clusters.SuggestionRules:
    """The suggestion rules as configured (checked at start-up by ``service.check_startup``)."""
    return clusters.SuggestionRules(
        threshold=number("ROUTING_CLUSTER_SIMILARITY", str(clusters.DEFAULT_THRESHOLD), at_least=0.0, at_most=1.0),
        window=timedelta(hours=number("ROUTING_CLUSTER_WINDOW_HOURS",
                                      str(clusters.DEFAULT_WINDOW_HOURS), at_least=0.0)))


# --- words -----------------------------------------------------------------------------------------

def save_words(connection: Connection, complaint_id: str, post_id: Optional[str],
               words: Iterable[str]) -> None:
    connection.execute(tables.cluster_words.insert().values(
        complaint_id=complaint_id, post_id=(post_id or None), words=" ".join(sorted(words))))


def filing_of(row: Mapping) -> Filing:
    return Filing(row["complaint_id"], row["tracking_code"], row["category"], row["region_code"],
                  row["post_id"], parse_iso(row["filed_at"]), frozenset((row["words"] or "").split()))


def _filing_query():
    w, c = tables.cluster_words, tables.complaints
    return (select(c.c.complaint_id, c.c.tracking_code, c.c.category, c.c.region_code,
                   c.c.filed_at, w.c.post_id, w.c.words)
            .join(w, w.c.complaint_id == c.c.complaint_id))


def filing(connection: Connection, complaint_id: str) -> Optional[Filing]:
    row = connection.execute(_filing_query().where(
        tables.complaints.c.complaint_id == complaint_id)).mappings().first()
    return filing_of(row) if row else None


def candidates(connection: Connection, new: Filing, window: timedelta) -> list[Filing]:
    """Open complaints that could match ``new``: under the same post, or of the same category and
    known region, filed since ``window`` before it (the domain checks the rest) — and only those
    that stand for themselves. A complaint linked to a primary, or with a pending suggestion, is
    represented by what it points at (a suggestion names that anchor anyway): a viral post's
    hundredth comment is compared with the cluster's primary, not with ninety-nine members.

    Bounded work per new complaint, however many complaints its place has: the most recent
    ``CANDIDATE_LIMIT`` of the place and as many under the post are read (ids only, by index), their
    members replaced by their anchors, and only those filings are loaded."""
    c, d, w = tables.complaints, tables.dispositions, tables.cluster_words
    since = isoformat_utc(new.filed_at - window)
    recent: list[str] = []
    open_since = and_(d.c.complaint_id == c.c.complaint_id, d.c.status.in_(OPEN_STAGES),
                      c.c.complaint_id != new.complaint_id, c.c.filed_at >= since)
    if new.region_code is not None:
        recent += connection.execute(
            select(c.c.complaint_id).join(d, d.c.complaint_id == c.c.complaint_id)
            .where(open_since, c.c.category == new.category, c.c.region_code == new.region_code)
            .order_by(c.c.filed_at.desc()).limit(CANDIDATE_LIMIT)).scalars().all()
    if new.post_id:
        recent += connection.execute(
            select(c.c.complaint_id).join(w, w.c.complaint_id == c.c.complaint_id)
            .join(d, d.c.complaint_id == c.c.complaint_id)
            .where(open_since, w.c.post_id == new.post_id)
            .order_by(c.c.filed_at.desc()).limit(CANDIDATE_LIMIT)).scalars().all()
    if not recent:
        return []
    recent = list(dict.fromkeys(recent))
    linked, pending = links_of(connection, recent), pending_of(connection, recent)
    standing = {clusters.anchor(complaint_id, linked, pending) for complaint_id in recent}
    standing.discard(new.complaint_id)
    rows = connection.execute(_filing_query().where(c.c.complaint_id.in_(sorted(standing)))).mappings()
    return sorted((filing_of(row) for row in rows), key=lambda filing: filing.filed_at, reverse=True)


# --- suggestions -----------------------------------------------------------------------------------

def links_of(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    """complaint id → its primary, for those of ``ids`` that are linked."""
    ids = list(ids)
    if not ids:
        return {}
    links = tables.cluster_links
    return {row.complaint_id: row.primary_id for row in connection.execute(
        select(links.c.complaint_id, links.c.primary_id).where(links.c.complaint_id.in_(ids)))}


def pending_of(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    """complaint id → the primary its pending suggestion points at, for those of ``ids``."""
    ids = list(ids)
    if not ids:
        return {}
    s = tables.link_suggestions
    return {row.complaint_id: row.primary_id for row in connection.execute(
        select(s.c.complaint_id, s.c.primary_id).where(s.c.complaint_id.in_(ids), s.c.state == PENDING))}


def save_suggestion(connection: Connection, complaint_id: str, primary_id: str, match: Match,
                    now: datetime) -> bool:
    """Record a pending suggestion unless the pair was ever suggested (a refused one never comes
    back); True when recorded."""
    s = tables.link_suggestions
    exists = connection.execute(select(s.c.state).where(
        s.c.complaint_id == complaint_id, s.c.primary_id == primary_id)).first()
    if exists is not None:
        return False
    connection.execute(s.insert().values(
        complaint_id=complaint_id, primary_id=primary_id, matched_id=match.candidate_id,
        score=match.score, because=json.dumps(list(match.because)),
        common_words=json.dumps(list(match.common_words)), hours_apart=match.hours_apart,
        state=PENDING, suggested_at=isoformat_utc(now)))
    return True


def _suggestion(row: Mapping) -> dict:
    because, common = json.loads(row["because"]), json.loads(row["common_words"])
    return {"complaint_id": row["complaint_id"], "primary_id": row["primary_id"],
            "matched_id": row["matched_id"], "score": float(row["score"]), "because": because,
            "common_words": common, "hours_apart": float(row["hours_apart"]), "state": row["state"],
            "suggested_at": row["suggested_at"], "decided_by": row["decided_by"],
            "decided_at": row["decided_at"],
            "reason": clusters.describe(because, common, float(row["score"]), float(row["hours_apart"]))}


def suggestions(connection: Connection, state: Optional[str] = PENDING,
                complaint_id: Optional[str] = None) -> list[dict]:
    """Suggestions (of one complaint, as member or primary), oldest first."""
    s = tables.link_suggestions
    query = select(s)
    if state is not None:
        query = query.where(s.c.state == state)
    if complaint_id is not None:
        query = query.where(or_(s.c.complaint_id == complaint_id, s.c.primary_id == complaint_id))
    return [_suggestion(row) for row in connection.execute(
        query.order_by(s.c.suggested_at, s.c.complaint_id)).mappings()]


def suggestion(connection: Connection, complaint_id: str, primary_id: str) -> Optional[dict]:
    s = tables.link_suggestions
    row = connection.execute(select(s).where(s.c.complaint_id == complaint_id,
                                             s.c.primary_id == primary_id)).mappings().first()
    return _suggestion(row) if row else None


def decide(connection: Connection, complaint_id: str, primary_id: str, state: str, actor: str,
           now: datetime) -> None:
    s = tables.link_suggestions
    connection.execute(update(s).where(s.c.complaint_id == complaint_id, s.c.primary_id == primary_id)
                       .values(state=state, decided_by=actor, decided_at=isoformat_utc(now)))


def retire_pending(connection: Connection, complaint_id: str, actor: str, now: datetime) -> None:
    """Once linked, the complaint's other pending suggestions are moot (refused on its behalf)."""
    s = tables.link_suggestions
    connection.execute(update(s).where(s.c.complaint_id == complaint_id, s.c.state == PENDING)
                       .values(state=REFUSED, decided_by=actor, decided_at=isoformat_utc(now)))


# --- links -----------------------------------------------------------------------------------------

def add_link(connection: Connection, complaint_id: str, primary_id: str, actor: str, now: datetime) -> None:
    connection.execute(tables.cluster_links.insert().values(
        complaint_id=complaint_id, primary_id=primary_id, actor=actor, linked_at=isoformat_utc(now)))


def members_of(connection: Connection, primary_id: str) -> list[str]:
    links = tables.cluster_links
    return list(connection.execute(select(links.c.complaint_id).where(links.c.primary_id == primary_id)
                                   .order_by(links.c.linked_at, links.c.complaint_id)).scalars())
