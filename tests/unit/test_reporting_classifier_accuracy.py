"""Reporting measures the classifier against the desk (issue 20, item 4): from the events, each
complaint keeps the automatic category and region (as filed) and the desk's final ones; a desk
correction or a desk routing to other agencies makes it *reviewed*; ``classifier_accuracy``
counts how often the automatic values were kept, overall, per category and per region. Nothing
of the desk's reason or name is kept."""
from __future__ import annotations

import random

from services.reporting.domain import reports
from tests.unit.test_reporting_projections import (FILED, HISTORY, ROUTED, ROUTED_DESK, ROUTED_PARTS, derived,
                                                   event, fact_from_event, lifecycle)

TO_LOTENG = lifecycle("disetujui", leads=["pemkab-loteng"], parts={"pemkab-loteng": ROUTED_PARTS["dpupr"]})
CORRECTED = event("routing", "ComplaintReclassified", 2, "2020-11-02T02:00:00Z",
                  category_before="infrastruktur", category_after="infrastruktur", region_before="5202",
                  region_after="5203", reason="Siti tinggal di Anjani", actor="operator:desk-ani",
                  rerouted=True, lifecycle=lifecycle("diterima", at_desk=True))
REROUTED = event("routing", "ComplaintRouted", 3, "2020-11-02T02:00:00Z", lead_agencies=["pemkab-loteng"],
                 coordinating_agencies=[], decided_by="rule:infrastruktur-wilayah", reason="x",
                 priority="normal", due_at={}, lifecycle=TO_LOTENG)
TO_DPUPR = lifecycle("disetujui", leads=["dpupr"], parts={"dpupr": ROUTED_PARTS["dpupr"]})
AUTO_ROUTED = event("routing", "ComplaintRouted", 1, "2020-11-02T01:00:05Z", lead_agencies=["dpupr"],
                    coordinating_agencies=[], decided_by="rule:jalan-provinsi", reason="x", priority="normal",
                    due_at={}, lifecycle=TO_DPUPR)
PRIORITY_BY_DESK = event("routing", "ComplaintRouted", 2, "2020-11-02T02:00:00Z", lead_agencies=["dpupr"],
                         coordinating_agencies=[], decided_by="operator:desk-ani", reason="rumah sakit",
                         priority="urgent", due_at={}, lifecycle=TO_DPUPR)


def review(events):
    row = derived(events)["complaint"]
    return {k: row[k] for k in ("category", "region_code", "final_category", "final_region_code",
                                "corrections", "desk_reviewed")}


def test_a_correction_keeps_the_automatic_values_and_the_final_ones():
    assert review([FILED, ROUTED_DESK, CORRECTED, REROUTED]) == {
        "category": "infrastruktur", "region_code": "5202", "final_category": "infrastruktur",
        "final_region_code": "5203", "corrections": 1, "desk_reviewed": True}
    order = [FILED, ROUTED_DESK, CORRECTED, REROUTED]
    random.Random(20).shuffle(order)
    assert derived(order) == derived([FILED, ROUTED_DESK, CORRECTED, REROUTED])
    kept = repr(fact_from_event(CORRECTED)) + repr(fact_from_event(ROUTED))
    assert "Siti" not in kept and "desk-ani" not in kept and "desk-1" not in kept


def test_what_counts_as_the_desks_review():
    # The rules routed it and nobody at the desk touched it: no evidence either way.
    assert review([FILED, AUTO_ROUTED])["desk_reviewed"] is False
    # A priority change by the desk keeps the agencies: not a review of the classification.
    assert review([FILED, AUTO_ROUTED, PRIORITY_BY_DESK])["desk_reviewed"] is False
    # At-desk triage of a complaint the rules could not route: the desk kept category and region.
    row = review(HISTORY)
    assert row["desk_reviewed"] is True and row["corrections"] == 0
    assert (row["final_category"], row["final_region_code"]) == ("infrastruktur", "5202")


def accuracy_row(category, region, final_category, final_region, reviewed=True, corrections=0):
    return {"category": category, "region_code": region, "final_category": final_category,
            "final_region_code": final_region, "desk_reviewed": reviewed, "corrections": corrections}


def test_classifier_accuracy_counts_kept_values_per_category_and_region():
    rows = [accuracy_row("infrastruktur", "5201", "infrastruktur", "5202", corrections=1),
            accuracy_row("infrastruktur", "5202", "infrastruktur", "5202"),
            accuracy_row("lainnya", None, "sosial", "5271", corrections=2),
            accuracy_row("sosial", "5271", "sosial", "5271", reviewed=False),
            # An older generation without the columns (while a rebuild runs): not evidence.
            {"category": "sosial", "region_code": "5271", "final_category": None,
             "final_region_code": None, "desk_reviewed": None, "corrections": None}]
    result = reports.classifier_accuracy(rows)
    assert (result["complaints"], result["reviewed"], result["corrected"],
            result["rerouted_without_correction"]) == (5, 3, 2, 1)
    assert result["category"] == {"reviewed": 3, "kept": 2, "kept_share": 0.6667,
                                  "corrected_to": {"sosial": 1}}
    assert result["region"] == {"reviewed": 3, "kept": 1, "kept_share": 0.3333,
                                "corrected_to": {"5202": 1, "5271": 1}}
    assert result["by_category"]["infrastruktur"]["kept_share"] == 1.0
    assert result["by_category"]["lainnya"] == {"reviewed": 1, "kept": 0, "kept_share": 0.0,
                                                "corrected_to": {"sosial": 1}}
    assert result["by_region"]["5201"]["kept"] == 0 and result["by_region"]["unknown"]["kept"] == 0
    assert result["by_region"]["5202"] == {"reviewed": 1, "kept": 1, "kept_share": 1.0, "corrected_to": {}}
    empty = reports.classifier_accuracy([])
    assert empty["category"]["kept_share"] is None and empty["by_region"] == {}
