"""The published figures, computed from projection rows — pure functions, no database.

Definitions (also in docs/reporting.md):

* a complaint belongs to the month (Asia/Makassar, WITA) of its filing time;
* *followed up* — at least one agency answer (``ComplaintResponded``);
* *first response* — the first ``ComplaintAcknowledged`` or ``ComplaintResponded`` of a lead
  agency (an agency it was routed to), measured from the filing time;
* *within the first-response SLA* — the first response came at or before the ``first_response``
  deadline of the complaint's first routing to agencies; a complaint without a response counts
  as missed once that deadline has passed, and is left out while it has not.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from statistics import median
from typing import Any, Iterable

from shared.core.events import parse_iso
from shared.core.reference import CATEGORIES, OPEN_STATUSES, WITA
from services.reporting.domain.labels import UNKNOWN_REGION


def hours_between(start: str, end: str) -> float:
    return (parse_iso(end) - parse_iso(start)).total_seconds() / 3600


def _median_hours(pairs: Iterable[tuple[str | None, str | None]]) -> float | None:
    values = [hours_between(start, end) for start, end in pairs if start and end]
    return round(median(values), 2) if values else None


def _share_within(items: Iterable[tuple[str | None, str | None]], now: datetime) -> float | None:
    """items: (done_at or None, due_at or None). Share done by the deadline among the decided."""
    decided = on_time = 0
    for done_at, due_at in items:
        if not due_at:
            continue
        due = parse_iso(due_at)
        if done_at:
            decided += 1
            on_time += parse_iso(done_at) <= due
        elif now > due:
            decided += 1
    return round(on_time / decided, 4) if decided else None


def monthly_summary(rows: list[dict[str, Any]], year: int, month: int, now: datetime) -> dict[str, Any]:
    """``rows``: the filed complaints of that month."""
    by_category = {code: 0 for code in CATEGORIES}
    by_region: dict[str, int] = {}
    by_agency: dict[str, int] = {}
    for row in rows:
        by_category[row["category"]] = by_category.get(row["category"], 0) + 1
        region = row["region_code"] or UNKNOWN_REGION
        by_region[region] = by_region.get(region, 0) + 1
        for code in row["lead_agencies"] if not row["at_desk"] else []:
            by_agency[code] = by_agency.get(code, 0) + 1
    total = len(rows)
    followed_up = sum(1 for row in rows if row["followed_up"])
    return {
        "year": year, "month": month, "total": total, "by_category": by_category,
        "by_region": dict(sorted(by_region.items())), "by_agency": dict(sorted(by_agency.items())),
        "followed_up": followed_up,
        "follow_up_rate": round(followed_up / total, 4) if total else 0.0,
        "resolved": sum(1 for row in rows if row["resolved"]),
        "median_hours_to_first_response": _median_hours(
            (row["filed_at"], row["first_response_at"]) for row in rows),
        "within_first_response_sla": _share_within(
            ((row["first_response_at"], row["first_response_due"]) for row in rows), now),
        # The citizen's loop (issue 19), overall, per category and per lead agency.
        "satisfaction": satisfaction(rows),
        "satisfaction_by_category": {code: satisfaction([r for r in rows if r["category"] == code])
                                     for code in sorted({r["category"] for r in rows})},
        "satisfaction_by_agency": {code: satisfaction([r for r in rows if not r["at_desk"]
                                                       and code in r["lead_agencies"]])
                                   for code in sorted(by_agency)},
        # Duplicates joined into clusters by the desk (issue 19), per category and lead agency.
        "duplicates": duplicates(rows),
        "duplicates_by_category": {code: duplicates([r for r in rows if r["category"] == code])
                                   for code in sorted({r["category"] for r in rows})},
        "duplicates_by_agency": {code: duplicates([r for r in rows if not r["at_desk"]
                                                   and code in r["lead_agencies"]])
                                 for code in sorted(by_agency)},
        # How often the desk kept the automatic category and region (issue 20).
        "classifier_accuracy": classifier_accuracy(rows),
    }


def _kept(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """``pairs``: (automatic, final) of the reviewed complaints."""
    kept = sum(1 for automatic, final in pairs if automatic == final)
    corrected_to: dict[str, int] = {}
    for automatic, final in pairs:
        if automatic != final:
            key = final or UNKNOWN_REGION
            corrected_to[key] = corrected_to.get(key, 0) + 1
    return {"reviewed": len(pairs), "kept": kept,
            "kept_share": round(kept / len(pairs), 4) if pairs else None,
            "corrected_to": dict(sorted(corrected_to.items()))}


def classifier_accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the desk kept the automatic classification, from reporting's rows (each the
    classifier's ``category``/``region_code`` as filed and the desk's ``final_category``/
    ``final_region_code``). Only complaints the desk *reviewed* are evidence (``desk_reviewed``:
    it corrected the classification, or routed the complaint to other agencies itself); among
    them a fact is *kept* when its final value equals the automatic one. Overall, per automatic
    category and per automatic region (``unknown`` for none): ``reviewed``, ``kept``,
    ``kept_share`` (null for none) and ``corrected_to`` (final value → complaints). Also:
    ``complaints`` counted, ``reviewed``, ``corrected`` (at least one correction) and
    ``rerouted_without_correction`` (the desk changed the agencies but kept both facts: the rules,
    or a mistake the desk did not correct)."""
    reviewed = [row for row in rows if row.get("desk_reviewed")]
    category_pairs = [(row["category"], row.get("final_category") or row["category"]) for row in reviewed]
    region_pairs = [(row["region_code"], row.get("final_region_code")) for row in reviewed]
    by_category: dict[str, list[tuple[Any, Any]]] = {}
    by_region: dict[str, list[tuple[Any, Any]]] = {}
    for category_pair, region_pair in zip(category_pairs, region_pairs):
        by_category.setdefault(category_pair[0], []).append(category_pair)
        by_region.setdefault(region_pair[0] or UNKNOWN_REGION, []).append(region_pair)
    corrected = sum(1 for row in reviewed if row.get("corrections"))
    return {
        "complaints": len(rows), "reviewed": len(reviewed), "corrected": corrected,
        "rerouted_without_correction": len(reviewed) - corrected,
        "category": _kept(category_pairs), "region": _kept(region_pairs),
        "by_category": {code: _kept(pairs) for code, pairs in sorted(by_category.items())},
        "by_region": {code: _kept(pairs) for code, pairs in sorted(by_region.items())},
    }


def duplicates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Clusters among ``rows`` (``cluster_primary``: the complaint a row was linked to):
    ``complaints`` counted, ``linked`` (joined to another complaint), ``clusters`` (distinct
    primaries they were joined to), ``problems`` (complaints that are not duplicates:
    ``complaints`` − ``linked``) and ``duplicate_share`` (``linked`` / ``complaints``, null for none)."""
    primaries = [row["cluster_primary"] for row in rows if row.get("cluster_primary")]
    return {"complaints": len(rows), "linked": len(primaries), "clusters": len(set(primaries)),
            "problems": len(rows) - len(primaries),
            "duplicate_share": round(len(primaries) / len(rows), 4) if rows else None}


def satisfaction(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The citizens' verdict on complaints (``reopens``, ``rating`` of reporting's rows):
    ``rated`` and ``average_rating`` (1–5, null when none), ``rated_share`` of the complaints
    resolved at least once, ``reopened`` (complaints reopened at least once) and ``reopen_rate``
    of the complaints resolved at least once (resolved now, or reopened since)."""
    scores = [row["rating"] for row in rows if row.get("rating") is not None]
    reopened = sum(1 for row in rows if row.get("reopens"))
    closed_once = sum(1 for row in rows if row["resolved"] or row.get("reopens"))
    return {
        "rated": len(scores),
        "average_rating": round(sum(scores) / len(scores), 2) if scores else None,
        "rated_share": round(len(scores) / closed_once, 4) if closed_once else None,
        "reopened": reopened,
        "reopen_rate": round(reopened / closed_once, 4) if closed_once else None,
    }


def wita_day_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """[start of date_from, start of the day after date_to) in WITA, as aware datetimes."""
    start = datetime(date_from.year, date_from.month, date_from.day, tzinfo=WITA)
    end = datetime(date_to.year, date_to.month, date_to.day, tzinfo=WITA) + timedelta(days=1)
    return start, end


def agency_performance(assignments: list[dict[str, Any]], agency_code: str, date_from: date, date_to: date,
                       now: datetime) -> dict[str, Any]:
    """``assignments``: the agency's rows; counted when the agency was made lead within the
    period (WITA days, both ends included)."""
    start, end = wita_day_bounds(date_from, date_to)
    rows = [a for a in assignments if a["role"] == "lead" and a["assigned_at"]
            and start <= parse_iso(a["assigned_at"]) < end]
    return {
        "agency_code": agency_code, "date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
        "assigned": len(rows),
        "acknowledged": sum(1 for a in rows if a["acknowledged_at"] or a["first_answer_at"]),
        "answered": sum(1 for a in rows if a["first_answer_at"]),
        "resolved": sum(1 for a in rows if a["resolved"]),
        "within_first_response_deadline": _share_within(
            ((_first(a["acknowledged_at"], a["first_answer_at"]), a["first_response_due"]) for a in rows), now),
        "within_follow_up_deadline": _share_within(
            ((a["first_answer_at"], a["follow_up_due"]) for a in rows), now),
        "median_hours_to_first_answer": _median_hours((a["assigned_at"], a["first_answer_at"]) for a in rows),
        "escalations": sum(a["escalations"] for a in rows),
        "rejections": sum(1 for a in rows if a["rejected_at"]),
        # The citizens' verdict on this agency's complaints: rated, average_rating, rated_share,
        # reopened, reopen_rate (``satisfaction`` over its assignments).
        **satisfaction(rows),
    }


def _first(*moments: str | None) -> str | None:
    present = [m for m in moments if m]
    return min(present, key=parse_iso) if present else None


def agency_table(assignments: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """One line per agency over every assignment given (the desk is never one: routing's
    lifecycle names no lead while a complaint is at the desk)."""
    by_agency: dict[str, list[dict[str, Any]]] = {}
    for a in assignments:
        if a["role"] == "lead":
            by_agency.setdefault(a["agency_code"], []).append(a)
    table = []
    for code, rows in sorted(by_agency.items()):
        far = date(1970, 1, 1), date(2999, 12, 31)
        table.append(agency_performance(rows, code, far[0], far[1], now))
    return sorted(table, key=lambda line: (-line["assigned"], line["agency_code"]))


def trends(counts: list[dict[str, Any]], months: list[str]) -> dict[str, Any]:
    """``counts``: rows of (month, category, region_code, n) → per month, by category and region."""
    out: dict[str, dict[str, Any]] = {
        m: {"total": 0, "by_category": {c: 0 for c in CATEGORIES}, "by_region": {}} for m in months}
    for item in counts:
        month = out.get(item["month"])
        if month is None:
            continue
        month["total"] += item["n"]
        month["by_category"][item["category"]] = month["by_category"].get(item["category"], 0) + item["n"]
        region = item["region_code"] or UNKNOWN_REGION
        month["by_region"][region] = month["by_region"].get(region, 0) + item["n"]
    return out


def last_months(year: int, month: int, count: int) -> list[str]:
    keys = []
    for _ in range(count):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return list(reversed(keys))


def nearing_deadline(rows: list[dict[str, Any]], now: datetime, within_hours: float = 24,
                     overdue_days: float = 7) -> list[dict[str, Any]]:
    """Open complaints whose next deadline falls within ``within_hours`` or passed less than
    ``overdue_days`` ago (older misses have been escalated and belong to the agency table)."""
    horizon, since = now + timedelta(hours=within_hours), now - timedelta(days=overdue_days)
    found = [row for row in rows if row["public_status"] in OPEN_STATUSES and row["next_due_at"]
             and since <= parse_iso(row["next_due_at"]) <= horizon]
    return sorted(found, key=lambda row: parse_iso(row["next_due_at"]))
