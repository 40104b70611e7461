"""What anyone holding a tracking code may see, and the report as CSV — pure functions.

Never the complaint's text (a citizen often writes their name, phone or address into it), never
a reporter, PSID or officer. For a complaint that is confidential *now* (routing's lifecycle: an
illegal levy reported in any of its texts, or the desk's decision) the agencies' answer texts are
withheld too — an answer to a levy report tends to name the officer or the place — only that an
agency answered, and when, is shown; they show again if the desk unmarks it. The region is the
kabupaten/kota at most, as for every complaint."""
from __future__ import annotations

import csv
import io
from typing import Any

from shared.core.reference import OPEN_STATUSES, category_label, status_label
from services.reporting.domain.labels import agency_name, region_name


def complaint_status(row: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """``row``: the complaint's projection row, whose ``confidential`` is the current value."""
    confidential = bool(row["confidential"])
    status = row["public_status"]
    names = row.get("agency_names") or {}
    return {
        "tracking_code": row["tracking_code"],
        "status": status, "status_label": status_label(status),
        "open": status in OPEN_STATUSES,
        "category": row["category"], "category_label": category_label(row["category"]),
        "region_code": row["region_code"], "region_name": region_name(row["region_code"]),
        "agencies": [{"code": code, "name": agency_name(code, names)} for code in row["lead_agencies"]],
        "coordinating_agencies": [{"code": code, "name": agency_name(code, names)}
                                  for code in row["coordinating_agencies"]],
        "answers": [{"agency_code": a["agency_code"], "agency_name": agency_name(a["agency_code"], names),
                     "text": None if confidential else a["text"], "resolved": bool(a["resolved"]),
                     "answered_at": a["answered_at"]} for a in answers],
        "confidential": confidential, "answer_texts_withheld": confidential,
        "filed_at": row["filed_at"], "updated_at": row["updated_at"] or row["filed_at"],
        # The next service-level deadline while the complaint is open (Open311's expected_datetime).
        "expected_at": row.get("next_due_at") if status in OPEN_STATUSES else None,
    }


def summary_csv(summary: dict[str, Any], agency_names: dict[str, str] | None = None) -> bytes:
    """One figure per line (metric, code, label, value): UTF-8 with a BOM and CRLF line ends so
    spreadsheet programs (Excel included) open it with the right characters and rows.
    ``agency_names``: the names the events carried (``repository.agency_names``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["metric", "code", "label", "value"])
    period = f"{summary['year']:04d}-{summary['month']:02d}"
    writer.writerow(["period", "", "Periode (WITA)", period])
    writer.writerow(["total", "", "Jumlah aduan", summary["total"]])
    for code, n in summary["by_category"].items():
        writer.writerow(["by_category", code, category_label(code), n])
    for code, n in summary["by_region"].items():
        writer.writerow(["by_region", code, region_name(code), n])
    for code, n in summary["by_agency"].items():
        writer.writerow(["by_agency", code, agency_name(code, agency_names), n])
    writer.writerow(["followed_up", "", "Ditindaklanjuti", summary["followed_up"]])
    writer.writerow(["follow_up_rate", "", "Rasio tindak lanjut", summary["follow_up_rate"]])
    writer.writerow(["resolved", "", "Selesai", summary["resolved"]])
    median_hours = summary["median_hours_to_first_response"]
    writer.writerow(["median_hours_to_first_response", "", "Median jam ke tanggapan pertama",
                     "" if median_hours is None else median_hours])
    within_sla = summary["within_first_response_sla"]
    writer.writerow(["within_first_response_sla", "", "Rasio tanggapan pertama tepat waktu",
                     "" if within_sla is None else within_sla])
    return "\ufeff".encode("utf-8") + buffer.getvalue().encode("utf-8")
