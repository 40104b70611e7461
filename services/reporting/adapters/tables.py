"""Reporting's projections (read models). Everything here can be dropped and rebuilt from the
event logs; no row holds personal data (see ``projections.KEPT_FIELDS``).

The projection tables come in *generations* (``complaints_g1``, ``complaints_g2`` …):
``projection_state`` names the live one. A rebuild fills the next generation while the live one
keeps serving, then switches the pointer in one transaction — no table is renamed, so the switch
is atomic on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (BigInteger, Boolean, Column, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table,
                        Text)

metadata = MetaData()

projection_state = Table(
    "projection_state", metadata,
    Column("name", String(32), primary_key=True),          # always "live"
    Column("generation", Integer, nullable=False),
    Column("rebuilt_at", String(40), nullable=True),
    Column("rebuilt_events", BigInteger, nullable=True),
    Column("fingerprint", String(64), nullable=True),     # null: built before fingerprints
)


@dataclass(frozen=True)
class Projection:
    generation: int
    metadata: MetaData
    facts: Table
    complaints: Table
    assignments: Table
    answers: Table

    @property
    def tables(self) -> tuple[Table, ...]:
        return (self.facts, self.complaints, self.assignments, self.answers)


@lru_cache(maxsize=None)
def projection(generation: int) -> Projection:
    suffix = f"_g{generation}"
    meta = MetaData()
    facts = Table(
        "facts" + suffix, meta,
        Column("source", String(32), primary_key=True),
        Column("complaint_id", String(36), primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("event_type", String(64), nullable=False),
        Column("occurred_at", String(40), nullable=False),
        Column("data", Text, nullable=False),                # JSON, only KEPT_FIELDS
        # Keyed by complaint first: a complaint's facts lie together, in the order ``derive``
        # reads them, and the key serves the live path's look-ups by complaint. On SQLite the
        # rows live in the key's own tree (no rowid table beside it): a rebuild writes them in
        # that order, once.
        PrimaryKeyConstraint("complaint_id", "source", "version"),
        sqlite_with_rowid=False,
    )
    complaints = Table(
        "complaints" + suffix, meta,
        Column("complaint_id", String(36), primary_key=True),
        Column("filed", Boolean, nullable=False),
        Column("tracking_code", String(32), nullable=True),  # unique: the index below
        Column("channel", String(32), nullable=True),
        Column("category", String(32), nullable=True),
        Column("region_code", String(8), nullable=True),
        Column("priority", String(16), nullable=True),
        Column("confidential", Boolean, nullable=False),
        Column("filed_at", String(40), nullable=True),
        Column("month", String(7), nullable=True),            # YYYY-MM in WITA
        Column("amendments", Integer, nullable=False),
        Column("lead_agencies", Text, nullable=False),        # JSON list, routing's lifecycle now
        Column("coordinating_agencies", Text, nullable=False),
        Column("agency_names", Text, nullable=True),          # JSON {code: name} the events carried
        Column("at_desk", Boolean, nullable=False),
        Column("routed_at", String(40), nullable=True),
        Column("first_response_due", String(40), nullable=True),
        Column("follow_up_due", String(40), nullable=True),
        Column("first_response_at", String(40), nullable=True),
        Column("first_answer_at", String(40), nullable=True),
        Column("answers", Integer, nullable=False),
        Column("followed_up", Boolean, nullable=False),
        Column("resolved", Boolean, nullable=False),
        Column("resolved_at", String(40), nullable=True),
        Column("dismissed", Boolean, nullable=False),
        Column("escalations", Integer, nullable=False),
        Column("rejections", Integer, nullable=False),
        Column("public_status", String(16), nullable=False),
        Column("notified", Integer, nullable=False),
        Column("notification_failures", Integer, nullable=False),
        Column("next_due_kind", String(16), nullable=True),
        Column("next_due_at", String(40), nullable=True),
        Column("updated_at", String(40), nullable=True),
        Column("reopens", Integer, nullable=False),           # times the citizen reopened it
        Column("rating", Integer, nullable=True),             # the citizen's latest score (1-5)
        Column("cluster_primary", String(36), nullable=True),  # the primary it was linked to (duplicates)
        # The desk's review of the classification (issue 20): category/region_code above are
        # the classifier's (as filed); these are the desk's final ones.
        Column("final_category", String(32), nullable=True),
        Column("final_region_code", String(8), nullable=True),
        Column("corrections", Integer, nullable=True),
        Column("desk_reviewed", Boolean, nullable=True),
        # An index, not a column constraint, so a rebuild builds it once the rows are in (a
        # constraint's index would take them in random order, one by one).
        Index(f"ux_complaints{suffix}_tracking_code", "tracking_code", unique=True),
        Index(f"ix_complaints{suffix}_month", "month"),
        Index(f"ix_complaints{suffix}_status", "public_status"),
    )
    assignments = Table(
        "assignments" + suffix, meta,
        Column("complaint_id", String(36), primary_key=True),
        Column("agency_code", String(64), primary_key=True),
        Column("agency_name", String(200), nullable=True),    # as the events named it
        Column("role", String(16), nullable=False),           # lead | coordinating | other
        Column("assigned_at", String(40), nullable=True),
        Column("first_response_due", String(40), nullable=True),
        Column("follow_up_due", String(40), nullable=True),
        Column("acknowledged_at", String(40), nullable=True),
        Column("first_answer_at", String(40), nullable=True),
        Column("rejected_at", String(40), nullable=True),
        Column("resolved", Boolean, nullable=False),
        Column("escalations", Integer, nullable=False),
        Column("reopens", Integer, nullable=False),           # "belum" while this agency led
        Column("rating", Integer, nullable=True),             # the citizen's score (1-5), if rated
        Index(f"ix_assignments{suffix}_agency", "agency_code"),
    )
    answers = Table(
        "answers" + suffix, meta,
        Column("complaint_id", String(36), primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("agency_code", String(64), nullable=False),
        Column("text", Text, nullable=False),
        Column("resolved", Boolean, nullable=False),
        Column("answered_at", String(40), nullable=False),
    )
    return Projection(generation, meta, facts, complaints, assignments, answers)
