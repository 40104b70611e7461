"""A monthly narrative in Bahasa Indonesia that a communications office can publish as is,
generated from ``monthly_summary`` only (so it never says more than the published figures), with
the agencies' display names the events carried."""
from __future__ import annotations

from typing import Any

from shared.core.reference import MONTH_NAMES, category_label
from services.reporting.domain.labels import agency_name


def _number(value: float, decimals: int = 1) -> str:
    """Indonesian number style: decimal comma."""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"
    return text.replace(".", ",")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " dan " + items[-1]


def _follow_up_phrase(followed_up: int, total: int) -> str:
    if followed_up == total:
        return "seluruhnya sudah ditindaklanjuti"
    if followed_up == 0:
        return "belum ada yang ditindaklanjuti"
    share = followed_up / total
    if share >= 0.85:
        prefix = "hampir semua"
    elif share >= 0.5:
        prefix = "sebagian besar"
    else:
        prefix = "sebagian"
    return f"{prefix} sudah ditindaklanjuti ({followed_up} dari {total} aduan, {_number(share * 100, 0)}%)"


def monthly_narrative(summary: dict[str, Any], agency_names: dict[str, str] | None = None) -> str:
    period = f"{MONTH_NAMES[summary['month'] - 1]} {summary['year']}"
    total = summary["total"]
    if total == 0:
        return (f"Selama bulan {period}, NTBCare tidak menerima aduan masyarakat melalui kanal "
                f"resmi Pemerintah Provinsi Nusa Tenggara Barat.")
    categories = sorted(((n, code) for code, n in summary["by_category"].items() if n),
                        key=lambda item: (-item[0], item[1]))
    parts = [f"{n} aduan {category_label(code)}" for n, code in categories]
    sentences = [
        f"Selama bulan {period}, NTBCare menerima {total} aduan masyarakat: {_join(parts)}.",
        f"Dari aduan tersebut, {_follow_up_phrase(summary['followed_up'], total)}"
        + (f", dan {summary['resolved']} aduan telah dinyatakan selesai." if summary["resolved"] else "."),
    ]
    agencies = sorted(summary["by_agency"].items(), key=lambda item: (-item[1], item[0]))
    if agencies:
        named = [f"{agency_name(code, agency_names)} ({n} aduan)" for code, n in agencies]
        sentences.append(f"Instansi yang menangani: {_join(named)}.")
    if summary["median_hours_to_first_response"] is not None:
        sentence = (f"Median waktu tanggapan pertama instansi adalah "
                    f"{_number(summary['median_hours_to_first_response'])} jam")
        if summary["within_first_response_sla"] is not None:
            sentence += (f"; {_number(summary['within_first_response_sla'] * 100, 0)}% aduan "
                         f"ditanggapi dalam batas waktu layanan")
        sentences.append(sentence + ".")
    sentences.append("Pemerintah Provinsi NTB berterima kasih atas partisipasi masyarakat.")
    return " ".join(sentences)
