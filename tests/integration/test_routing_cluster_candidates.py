"""Routing's duplicate candidates (``services.routing.adapters.clusters.candidates``) on SQLite and
PostgreSQL: the recent open complaints of a place or a post, each replaced by what it points at — its
link's primary, its pending suggestion's primary, followed along a chain — read in one statement."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine

from services.routing.adapters import clusters, tables
from shared.core.events import isoformat_utc

pytestmark = pytest.mark.db

FILED = datetime(2026, 11, 30, 8, tzinfo=timezone.utc)
WINDOW = timedelta(hours=72)


@pytest.fixture(params=["sqlite", "postgresql"])
def connection(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'routing.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    engine = create_engine(url)
    tables.metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def complaint(connection, complaint_id: str, minutes: int, status: str = "assigned", post_id=None,
              region_code="5202") -> None:
    filed_at = isoformat_utc(FILED + timedelta(minutes=minutes))
    connection.execute(tables.complaints.insert().values(
        complaint_id=complaint_id, tracking_code=f"T-{complaint_id}", category="infrastructure",
        region_code=region_code, priority="normal", confidential=False, channel="facebook_comment",
        filed_at=filed_at, text="jalan rusak"))
    connection.execute(tables.dispositions.insert().values(
        complaint_id=complaint_id, tracking_code=f"T-{complaint_id}", status=status, public_status=status,
        at_desk=False, priority="normal", lead_agencies="[]", coordinating_agencies="[]", due_at="{}",
        escalated="[]", version=1, updated_at=filed_at))
    clusters.save_words(connection, complaint_id, post_id, ["jalan", "rusak"])


def suggest(connection, complaint_id: str, primary_id: str, state: str = clusters.PENDING) -> None:
    connection.execute(tables.link_suggestions.insert().values(
        complaint_id=complaint_id, primary_id=primary_id, matched_id=primary_id, score=1.0, because="[]",
        common_words="[]", hours_apart=0.0, state=state, suggested_at=isoformat_utc(FILED)))


def link(connection, complaint_id: str, primary_id: str) -> None:
    connection.execute(tables.cluster_links.insert().values(
        complaint_id=complaint_id, primary_id=primary_id, linked_at=isoformat_utc(FILED), actor="desk"))


def test_members_are_replaced_by_what_they_point_at_along_a_chain(connection):
    for number, name in enumerate(["a", "b", "c", "d", "e", "f", "closed"]):
        complaint(connection, name, number, status="resolved" if name == "closed" else "assigned")
    complaint(connection, "post-1", 20, post_id="post-9", region_code=None)
    complaint(connection, "elsewhere", 21, region_code="5201")
    link(connection, "b", "a")                # linked: stands for a
    suggest(connection, "c", "b")             # pending towards b, which is linked to a: a
    suggest(connection, "d", "e", state="refused")   # refused: d stands for itself
    suggest(connection, "f", "closed")        # pending towards a complaint no longer open: still its anchor
    complaint(connection, "new", 30, post_id="post-9")
    new = clusters.filing(connection, "new")
    found = clusters.candidates(connection, new, WINDOW)
    # Newest first; "closed" is not open but is what f points at.
    assert [filing.complaint_id for filing in found] == ["post-1", "closed", "e", "d", "a"]


def test_nothing_recent_nothing_to_compare(connection):
    complaint(connection, "old", -60 * 24 * 4)
    complaint(connection, "new", 0)
    assert clusters.candidates(connection, clusters.filing(connection, "new"), WINDOW) == []


def test_what_the_candidates_point_at_is_read_again_only_for_those_outside_the_window(connection):
    """``links_and_pending_of`` answers as ``links_of`` and ``pending_of`` would, reading only
    the complaints the candidates' read did not cover (a primary filed before the window)."""
    complaint(connection, "root", -60 * 24 * 6)
    complaint(connection, "p0", -60 * 24 * 4)       # before the 72-hour window
    link(connection, "p0", "root")
    for number, name in enumerate(["m1", "m2", "m3"]):
        complaint(connection, name, number)
    suggest(connection, "m1", "p0")
    link(connection, "m2", "m3")
    complaint(connection, "new", 30)
    found = clusters.read_candidates(connection, clusters.filing(connection, "new"), WINDOW)
    ids = [filing.complaint_id for filing in found.filings]
    assert ids == ["m3", "p0"] and "p0" not in found.recent
    assert found.links_and_pending_of(connection, ids + ["m2", "m1"]) == (
        clusters.links_of(connection, ids + ["m2", "m1"]), clusters.pending_of(connection, ids + ["m2", "m1"]))


def test_the_candidates_read_finds_suggestions_by_complaint_not_by_walking_every_pending_one(tmp_path):
    """With ``state = 'pending'`` in the join SQLite planned the suggestions by their state index:
    every pending suggestion walked for each of up to 200 recent complaints — quadratic in a viral
    post's comments, each of which is suggested."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    tables.metadata.create_all(engine)
    try:
        with engine.connect() as sqlite:
            for query in (clusters._RECENT_OF_PLACE_POINTING, clusters._RECENT_OF_POST_POINTING):
                sql, order, fixed = query._form(sqlite.dialect)
                values = {**fixed, "b_complaint_id": "x", "b_since": "2026", "b_category": "infrastructure",
                          "b_region_code": "5202", "b_post_id": "p"}
                plan = [row[-1] for row in sqlite.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}",
                                                                  tuple(values[name] for name in order))]
                [suggestions] = [step for step in plan if "link_suggestions" in step]
                assert "(complaint_id=?)" in suggestions, plan
    finally:
        engine.dispose()
