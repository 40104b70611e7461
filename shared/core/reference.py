"""Reference data every service shares, in one place: complaint categories and their labels,
NTB's regions (BPS codes and names), priorities, the WITA zone and how times and dates are
written for people, and the public status words with their labels and open/closed meaning.

Agency codes and names are not here: they are routing's directory (data, editable without code),
and travel in routing's events (``lifecycle.agency_names``). Pure data and formatting; no framework.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

# --- categories --------------------------------------------------------------------------------

CATEGORY_LABELS: dict[str, str] = {
    "koperasi_umkm": "koperasi dan UMKM",
    "lingkungan_hidup": "lingkungan hidup",
    "infrastruktur": "infrastruktur",
    "pungli": "pungutan liar",
    "pelayanan_umum": "pelayanan umum",
    "sosial": "sosial",
    "kesehatan": "kesehatan",
    "lainnya": "lainnya",
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_LABELS)
#: A category as a heading or list entry (console, Open311's ``service_name``): the label, capitalised.
CATEGORY_TITLES: dict[str, str] = {code: label[:1].upper() + label[1:] for code, label in CATEGORY_LABELS.items()}
#: What each category covers, in a sentence (Open311's service ``description``).
CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "koperasi_umkm": "Koperasi, usaha mikro, kecil dan menengah",
    "lingkungan_hidup": "Sampah, pencemaran, limbah, hutan dan lingkungan",
    "infrastruktur": "Jalan, jembatan, drainase, irigasi dan bangunan publik",
    "pungli": "Pungutan liar dalam pelayanan publik (dirahasiakan)",
    "pelayanan_umum": "Administrasi kependudukan, perizinan, air bersih, listrik",
    "sosial": "Bantuan sosial, PKH, rumah tidak layak huni",
    "kesehatan": "Rumah sakit, puskesmas, BPJS, gizi",
    "lainnya": "Aduan lain yang belum tercakup",
}
#: Complaints of these categories are confidential from their first text on (design: pungli).
CONFIDENTIAL_CATEGORIES: tuple[str, ...] = ("pungli",)

# --- regions (BPS codes of NTB's kabupaten/kota) -----------------------------------------------

REGION_NAMES: dict[str, str] = {
    "5201": "Kabupaten Lombok Barat", "5202": "Kabupaten Lombok Tengah",
    "5203": "Kabupaten Lombok Timur", "5204": "Kabupaten Sumbawa", "5205": "Kabupaten Dompu",
    "5206": "Kabupaten Bima", "5207": "Kabupaten Sumbawa Barat", "5208": "Kabupaten Lombok Utara",
    "5271": "Kota Mataram", "5272": "Kota Bima",
}
REGION_CODES: tuple[str, ...] = tuple(REGION_NAMES)
UNKNOWN_REGION_NAME = "Tidak diketahui"

PRIORITIES: tuple[str, ...] = ("urgent", "important", "normal")

# --- public status -----------------------------------------------------------------------------

DITERIMA = "diterima"    # filed, awaiting triage
DISETUJUI = "disetujui"  # routed to an agency
DIPROSES = "diproses"    # acknowledged or answered by an agency, or back at the desk after "bukan wewenang"
DITOLAK = "ditolak"      # dismissed
SELESAI = "selesai"      # resolved
PUBLIC_STATUSES: tuple[str, ...] = (DITERIMA, DISETUJUI, DIPROSES, DITOLAK, SELESAI)
OPEN_STATUSES: tuple[str, ...] = (DITERIMA, DISETUJUI, DIPROSES)   # Open311 "open"
CLOSED_STATUSES: tuple[str, ...] = (DITOLAK, SELESAI)               # Open311 "closed"
STATUS_LABELS: dict[str, str] = {
    DITERIMA: "Diterima", DISETUJUI: "Disetujui", DIPROSES: "Diproses",
    DITOLAK: "Ditolak", SELESAI: "Selesai",
}

# Routing's finer stages and the public word of each.
STAGE_FILED, STAGE_TRIAGE, STAGE_ASSIGNED = "filed", "triage", "assigned"
STAGE_IN_PROGRESS, STAGE_RETURNED = "in_progress", "returned"
STAGE_DISMISSED, STAGE_RESOLVED = "dismissed", "resolved"
STAGE_WORDS: dict[str, str] = {
    STAGE_FILED: DITERIMA, STAGE_TRIAGE: DITERIMA, STAGE_ASSIGNED: DISETUJUI,
    STAGE_IN_PROGRESS: DIPROSES, STAGE_RETURNED: DIPROSES,
    STAGE_DISMISSED: DITOLAK, STAGE_RESOLVED: SELESAI,
}
OPEN_STAGES: tuple[str, ...] = (STAGE_FILED, STAGE_TRIAGE, STAGE_ASSIGNED, STAGE_IN_PROGRESS,
                                STAGE_RETURNED)

# --- time as people in NTB read it -------------------------------------------------------------

#: NTB's zone: WITA, UTC+8, no daylight saving.
WITA = ZoneInfo("Asia/Makassar")
MONTH_NAMES: tuple[str, ...] = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli",
                                "Agustus", "September", "Oktober", "November", "Desember")
#: Jan, Feb … Agu … Des: tables write months short.
MONTH_ABBREVIATIONS: tuple[str, ...] = tuple(name[:3] for name in MONTH_NAMES)


def category_label(code: str) -> str:
    return CATEGORY_LABELS.get(code, code)


def region_name(code: str | None) -> str:
    return REGION_NAMES.get(code or "", code or UNKNOWN_REGION_NAME)


def category_title(code: str | None) -> str:
    return CATEGORY_TITLES.get(code or "", code or "—")


def short_region_name(code: str | None) -> str:
    """'Lombok Tengah', 'Kota Mataram' (a kabupaten without the word): lists and tables."""
    name = REGION_NAMES.get(code or "")
    if name is None:
        return UNKNOWN_REGION_NAME
    return name.removeprefix("Kabupaten ")


def status_label(word: str) -> str:
    return STATUS_LABELS.get(word, word)


def in_wita(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must carry their zone (UTC)")
    return moment.astimezone(WITA)


def tanggal(moment: datetime) -> str:
    """'3 November 2020 pukul 14.05 WITA': how a message to a citizen writes a time."""
    local = in_wita(moment)
    return f"{local.day} {MONTH_NAMES[local.month - 1]} {local.year} pukul {local:%H.%M} WITA"


def tanggal_singkat(moment: datetime, with_zone: bool = True) -> str:
    """'12 Jan 2025, 14.30 WITA': how the console writes a time."""
    local = in_wita(moment)
    text = f"{local.day} {MONTH_ABBREVIATIONS[local.month - 1]} {local.year}, {local:%H.%M}"
    return f"{text} WITA" if with_zone else text


def short_wita(moment: datetime) -> str:
    """'03-11-2020 14:05': how tables (console, dashboard) write a time."""
    return in_wita(moment).strftime("%d-%m-%Y %H:%M")


def month_key(moment: datetime) -> str:
    """The reporting month (YYYY-MM, WITA) of a moment."""
    return in_wita(moment).strftime("%Y-%m")
