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
from typing import Iterable, Mapping, NamedTuple, Optional

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection

from shared.core.fast_sql import fast
from shared.core.config import number
from shared.core.db import DriverQuery
from shared.core.events import isoformat_utc, parse_iso
from services.routing.adapters import tables
from services.routing.domain import clusters
from services.routing.domain.clusters import Filing, Match

PENDING, CONFIRMED, REFUSED = "pending", "confirmed", "refused"
OPEN_STAGES = ("filed", "triage", "assigned", "in_progress", "returned")
#: The most candidates a new complaint is compared with (the most recent first).
CANDIDATE_LIMIT = 200


# The per-complaint statements (words, filing, candidates, links, suggestions), built once and
# executed with a parameters dict: building them on every call (coercions, cache keys) was a third
# of routing's CPU. Bind names are prefixed ``b_`` so that they never collide with a column name.
_c, _d, _w = tables.complaints, tables.dispositions, tables.cluster_words
_links, _s = tables.cluster_links, tables.link_suggestions
_INSERT_WORDS = _w.insert()
_FILINGS = (select(_c.c.complaint_id, _c.c.tracking_code, _c.c.category, _c.c.region_code,
                   _c.c.filed_at, _w.c.post_id, _w.c.words)
            .join(_w, _w.c.complaint_id == _c.c.complaint_id))
_FILING = _FILINGS.where(_c.c.complaint_id == bindparam("b_complaint_id"))
_FILINGS_OF = _FILINGS.where(_c.c.complaint_id.in_(bindparam("b_ids", expanding=True)))
# The open stages as equalities, not an IN list: an expanding IN cannot be compiled once for the
# driver (``DriverQuery``); SQLite and PostgreSQL plan both alike.
_OPEN_SINCE = and_(_d.c.complaint_id == _c.c.complaint_id, or_(*(_d.c.status == stage for stage in OPEN_STAGES)),
                   _c.c.complaint_id != bindparam("b_complaint_id"), _c.c.filed_at >= bindparam("b_since"))
_RECENT_OF_PLACE = (select(_c.c.complaint_id).join(_d, _d.c.complaint_id == _c.c.complaint_id)
                    .where(_OPEN_SINCE, _c.c.category == bindparam("b_category"),
                           _c.c.region_code == bindparam("b_region_code"))
                    .order_by(_c.c.filed_at.desc()).limit(CANDIDATE_LIMIT))
_RECENT_OF_POST = (select(_c.c.complaint_id).join(_w, _w.c.complaint_id == _c.c.complaint_id)
                   .join(_d, _d.c.complaint_id == _c.c.complaint_id)
                   .where(_OPEN_SINCE, _w.c.post_id == bindparam("b_post_id"))
                   .order_by(_c.c.filed_at.desc()).limit(CANDIDATE_LIMIT))


def _with_pointers(recent_ids):
    """Each of ``recent_ids`` (a subquery's rows) with what it points at: its link's primary and
    its suggestions' primaries with their state (NULL when none) — one statement instead of an id
    list sent back twice (``links_of``, ``pending_of``). The suggestions are joined by complaint
    only, the state compared by the caller: with ``state = 'pending'`` in the join SQLite chose
    the index on ``state`` and walked every pending suggestion for each recent complaint."""
    recent = recent_ids.subquery()
    return (select(recent.c.complaint_id, _links.c.primary_id, _s.c.primary_id, _s.c.state)
            .select_from(recent.outerjoin(_links, _links.c.complaint_id == recent.c.complaint_id)
                         .outerjoin(_s, _s.c.complaint_id == recent.c.complaint_id)))


# Up to 200 rows a new complaint: run on the driver (SQLAlchemy's rows were a tenth of routing's CPU).
_RECENT_OF_PLACE_POINTING = DriverQuery(_with_pointers(_RECENT_OF_PLACE))
_RECENT_OF_POST_POINTING = DriverQuery(_with_pointers(_RECENT_OF_POST))
_LINKS_OF = select(_links.c.complaint_id, _links.c.primary_id).where(
    _links.c.complaint_id.in_(bindparam("b_ids", expanding=True)))
_PENDING_OF = select(_s.c.complaint_id, _s.c.primary_id).where(
    _s.c.complaint_id.in_(bindparam("b_ids", expanding=True)), _s.c.state == PENDING)
_SUGGESTED = select(_s.c.state).where(_s.c.complaint_id == bindparam("b_complaint_id"),
                                      _s.c.primary_id == bindparam("b_primary_id"))
_INSERT_SUGGESTION = _s.insert()
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_INSERT_WORDS = fast(_INSERT_WORDS)
_FILING = fast(_FILING)
_SUGGESTED = fast(_SUGGESTED)
_INSERT_SUGGESTION = fast(_INSERT_SUGGESTION)


def suggestion_rules() -> clusters.SuggestionRules:
    """The suggestion rules as configured (checked at start-up by ``service.check_startup``)."""
    return clusters.SuggestionRules(
        threshold=number("ROUTING_CLUSTER_SIMILARITY", str(clusters.DEFAULT_THRESHOLD), at_least=0.0, at_most=1.0),
        window=timedelta(hours=number("ROUTING_CLUSTER_WINDOW_HOURS",
                                      str(clusters.DEFAULT_WINDOW_HOURS), at_least=0.0)))


# --- words -----------------------------------------------------------------------------------------

def save_words(connection: Connection, complaint_id: str, post_id: Optional[str],
               words: Iterable[str]) -> None:
    connection.execute(_INSERT_WORDS, dict(
        complaint_id=complaint_id, post_id=(post_id or None), words=" ".join(sorted(words))))


def filing_of(row: Mapping) -> Filing:
    return Filing(row["complaint_id"], row["tracking_code"], row["category"], row["region_code"],
                  row["post_id"], parse_iso(row["filed_at"]), frozenset((row["words"] or "").split()))


def filing(connection: Connection, complaint_id: str) -> Optional[Filing]:
    row = connection.execute(_FILING, {"b_complaint_id": complaint_id}).mappings().first()
    return filing_of(row) if row else None


class Candidates(NamedTuple):
    """The candidates and what was read on the way: which of the recent complaints point where."""
    filings: list[Filing]
    recent: frozenset[str]
    linked: dict[str, str]      # of the recent complaints: id → its link's primary
    pending: dict[str, str]     # of the recent complaints: id → its pending suggestion's primary

    def links_and_pending_of(self, connection: Connection, ids: list[str]) -> tuple[dict, dict]:
        """``links_of`` and ``pending_of`` for ``ids``: read already for the recent ones, asked for
        the others (a cluster's primary filed before the window)."""
        others = [complaint_id for complaint_id in ids if complaint_id not in self.recent]
        linked = {i: self.linked[i] for i in ids if i in self.linked} | links_of(connection, others)
        pending = {i: self.pending[i] for i in ids if i in self.pending} | pending_of(connection, others)
        return linked, pending


def candidates(connection: Connection, new: Filing, window: timedelta) -> list[Filing]:
    """``read_candidates``' filings."""
    return read_candidates(connection, new, window).filings


def read_candidates(connection: Connection, new: Filing, window: timedelta) -> Candidates:
    """Open complaints that could match ``new``: under the same post, or of the same category and
    known region, filed since ``window`` before it (the domain checks the rest) — and only those
    that stand for themselves. A complaint linked to a primary, or with a pending suggestion, is
    represented by what it points at (a suggestion names that anchor anyway): a viral post's
    hundredth comment is compared with the cluster's primary, not with ninety-nine members.

    Bounded work per new complaint, however many complaints its place has: the most recent
    ``CANDIDATE_LIMIT`` of the place and as many under the post are read (ids only, by index), their
    members replaced by their anchors, and only those filings are loaded."""
    open_since = {"b_complaint_id": new.complaint_id, "b_since": isoformat_utc(new.filed_at - window)}
    pointing: list = []
    if new.region_code is not None:
        pointing += _RECENT_OF_PLACE_POINTING.rows(connection, {
            **open_since, "b_category": new.category, "b_region_code": new.region_code})
    if new.post_id:
        pointing += _RECENT_OF_POST_POINTING.rows(connection, {**open_since, "b_post_id": new.post_id})
    if not pointing:
        return Candidates([], frozenset(), {}, {})
    linked = {complaint_id: primary for complaint_id, primary, _, _ in pointing if primary is not None}
    pending = {complaint_id: primary for complaint_id, _, primary, state in pointing if state == PENDING}
    standing = {clusters.anchor(complaint_id, linked, pending) for complaint_id, _, _, _ in pointing}
    standing.discard(new.complaint_id)
    rows = connection.execute(_FILINGS_OF, {"b_ids": sorted(standing)}).mappings()
    filings = sorted((filing_of(row) for row in rows), key=lambda filing: filing.filed_at, reverse=True)
    return Candidates(filings, frozenset(complaint_id for complaint_id, _, _, _ in pointing), linked, pending)


# --- suggestions -----------------------------------------------------------------------------------

def links_of(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    """complaint id → its primary, for those of ``ids`` that are linked."""
    ids = list(ids)
    if not ids:
        return {}
    return {row.complaint_id: row.primary_id for row in connection.execute(_LINKS_OF, {"b_ids": ids})}


def pending_of(connection: Connection, ids: Iterable[str]) -> dict[str, str]:
    """complaint id → the primary its pending suggestion points at, for those of ``ids``."""
    ids = list(ids)
    if not ids:
        return {}
    return {row.complaint_id: row.primary_id for row in connection.execute(_PENDING_OF, {"b_ids": ids})}


def save_suggestion(connection: Connection, complaint_id: str, primary_id: str, match: Match,
                    now: datetime) -> bool:
    """Record a pending suggestion unless the pair was ever suggested (a refused one never comes
    back); True when recorded."""
    exists = connection.execute(_SUGGESTED, {"b_complaint_id": complaint_id, "b_primary_id": primary_id}).first()
    if exists is not None:
        return False
    connection.execute(_INSERT_SUGGESTION, dict(
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
