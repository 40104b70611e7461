"""Reporting counts clusters and complaints: ``ComplaintLinked`` becomes the row's
``cluster_primary`` (nothing of the desk's reason or actor is kept), and the monthly summary's
``duplicates`` (overall, per category, per lead agency) count linked complaints, distinct
primaries and the share of duplicates."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from services.reporting.domain import reports
from tests.unit.test_reporting_projections import (DONE_PARTS, HISTORY, derived, event, fact_from_event,
                                                   lifecycle)

PRIMARY = "0b7b6f9e-3a0c-4d55-9a39-2f1f6a0f0999"
LINKED = event("routing", "ComplaintLinked", 7, "2020-11-10T06:00:00Z", primary_complaint_id=PRIMARY,
               primary_tracking_code="NTB-PRIMA-RYAAA", reason="Siti dan tetangganya melapor hal sama",
               actor="operator:desk-ani", because=["same_post"], score=0.25,
               lifecycle=lifecycle("selesai", leads=["dpupr"], parts=DONE_PARTS))


def test_a_linked_complaint_names_its_primary_and_nothing_of_the_desks_words():
    assert derived(HISTORY)["complaint"]["cluster_primary"] is None
    assert derived(HISTORY + [LINKED])["complaint"]["cluster_primary"] == PRIMARY
    kept = repr(fact_from_event(LINKED))
    assert "Siti" not in kept and "desk-ani" not in kept and "same_post" not in kept
    order = HISTORY + [LINKED]
    random.Random(7).shuffle(order)
    assert derived(order) == derived(HISTORY + [LINKED])


def row(category: str, leads: list[str], primary: str | None) -> dict:
    return {"category": category, "region_code": "5202", "lead_agencies": leads, "at_desk": not leads,
            "followed_up": True, "resolved": False, "filed_at": "2026-11-02T01:00:00Z",
            "first_response_at": None, "first_response_due": None, "cluster_primary": primary,
            "rating": None, "reopens": 0}


def test_the_monthly_summary_counts_clusters_complaints_and_the_share_of_duplicates():
    rows = [row("infrastruktur", ["dpupr"], None), row("infrastruktur", ["dpupr"], "p1"),
            row("infrastruktur", ["dpupr"], "p1"), row("lainnya", [], "p1"),
            row("lingkungan_hidup", ["dlhk"], None), row("lingkungan_hidup", ["dlhk"], "p2")]
    summary = reports.monthly_summary(rows, 2026, 11, datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert summary["duplicates"] == {"complaints": 6, "linked": 4, "clusters": 2, "problems": 2,
                                     "duplicate_share": 0.6667}
    assert summary["duplicates_by_category"]["infrastruktur"] == {
        "complaints": 3, "linked": 2, "clusters": 1, "problems": 1, "duplicate_share": 0.6667}
    assert summary["duplicates_by_agency"]["dlhk"]["duplicate_share"] == 0.5
    assert set(summary["duplicates_by_agency"]) == {"dpupr", "dlhk"}   # the desk leads nothing
    assert reports.duplicates([])["duplicate_share"] is None
