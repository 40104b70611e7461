"""Words and lists for the console's pages: labels in Bahasa Indonesia, times in WITA, the
agency inbox's groups, filters, pagination, the preview of the answer a citizen receives, and
errors in plain words. Pure functions over the dicts the workflow returns."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Optional

from shared.core.errors import Conflict, Forbidden, IllegalAction, NotFound, ValidationFailed
from shared.core.events import parse_iso
from shared.core import reference
from shared.core.reference import DITERIMA, OPEN_STAGES, PUBLIC_STATUSES as STATUS_WORDS, STATUS_LABELS
from shared.core.events import types as ev

PAGE_SIZE = 20
NEARING_DEADLINE = timedelta(hours=24)
MESSENGER_LIMIT = 2000
OPEN_STATUSES = OPEN_STAGES

# Categories, regions, status words and months are the shared reference data (shared/core/reference.py).
CATEGORIES = reference.CATEGORY_TITLES
REGIONS = {code: reference.short_region_name(code) for code in reference.REGION_CODES}
UNKNOWN_REGION = reference.UNKNOWN_REGION_NAME
STATUSES = {
    "filed": "Baru masuk", "triage": "Menunggu triase", "assigned": "Diteruskan, belum ditanggapi",
    "in_progress": "Sedang diproses", "returned": "Dikembalikan ke meja layanan",
    "dismissed": "Ditolak", "resolved": "Selesai",
}
PUBLIC_STATUSES = STATUS_LABELS
#: The agency inbox's status filter: the public words a routed complaint can have.
INBOX_STATUS_FILTERS = tuple((word, STATUS_LABELS[word]) for word in STATUS_WORDS if word != DITERIMA)
PRIORITIES = {"urgent": "Mendesak", "important": "Penting", "normal": "Biasa"}
CLOCKS = {"triage": "verifikasi (triase)", "first_response": "tanggapan pertama",
          "follow_up": "tindak lanjut", "settlement": "penyelesaian"}
CHANNELS = {"facebook_messenger": "Facebook Messenger", "facebook_comment": "Komentar Facebook",
            "web": "Formulir web", "api": "Sistem lain (API)", "import": "Impor",
            "open311": "Open311", "instagram_direct": "Instagram Direct"}
EVENTS = {
    ev.COMPLAINT_FILED: "Aduan masuk", ev.COMPLAINT_ROUTED: "Diteruskan",
    ev.COMPLAINT_ACKNOWLEDGED: "Diterima instansi", ev.COMPLAINT_REJECTED_BY_AGENCY: "Bukan wewenang",
    ev.COMPLAINT_RESPONDED: "Jawaban kepada warga", ev.COMPLAINT_RESOLVED: "Selesai",
    ev.COMPLAINT_ESCALATED: "Melewati tenggat", ev.COMPLAINT_DISMISSED: "Ditolak",
    ev.COMPLAINT_CONFIDENTIALITY_CHANGED: "Kerahasiaan diubah",
    ev.COMPLAINT_LINKED: "Digabung dengan aduan lain",
    ev.COMPLAINT_RECLASSIFIED: "Kategori/wilayah dikoreksi",
    ev.COMPLAINT_REOPENED: "Dibuka kembali", ev.COMPLAINT_REOPEN_REFUSED: "Tidak dibuka kembali",
    ev.CITIZEN_RATED: "Dinilai warga",
}
#: Grounds of a duplicate suggestion (``services/routing/domain/clusters.py``), in the desk's words.
LINK_GROUNDS = {"same_post": "Postingan Facebook yang sama", "same_category_region": "Kategori dan wilayah sama",
                "similar_words": "Kata-kata mirip"}
DESK_REASONS = {"triage": "Belum ditriase", "returned": "Dikembalikan instansi (bukan wewenang)",
                "filed": "Baru masuk"}

# Inbox groups of an agency: key → label (the first is the default view).
INBOX_GROUPS = {
    "terbuka": "Semua yang terbuka", "baru": "Baru", "diproses": "Sedang diproses",
    "mendekati": "Mendekati tenggat", "terlambat": "Terlambat", "semua": "Semua (termasuk selesai)",
}
FIELD_LABELS = {"note": "Catatan", "reason": "Alasan", "text": "Jawaban", "agency_codes": "Instansi",
                "category": "Kategori", "region_code": "Wilayah",
                "priority": "Prioritas", "duplicate_of": "Kode aduan ganda", "actor": "Petugas",
                "complaint_id": "Aduan", "resolved": "Selesai"}


def wita(value, with_zone: bool = True) -> str:
    """``12 Jan 2025, 14.30 WITA`` from an ISO UTC string or aware datetime; ``—`` for none."""
    if not value:
        return "—"
    moment = parse_iso(value) if isinstance(value, str) else value
    return reference.tanggal_singkat(moment, with_zone)


def category(code: Optional[str]) -> str:
    return reference.category_title(code)


def region(code: Optional[str]) -> str:
    return reference.short_region_name(code)


def is_web_link(url) -> bool:
    """Only http(s) attachment URLs become links (a filed URL could be ``javascript:…``)."""
    return isinstance(url, str) and url.lower().startswith(("https://", "http://"))


EVIDENCE_KINDS = {"image": "Foto", "video": "Video", "audio": "Rekaman suara", "file": "Berkas",
                  "animated_image": "Gambar bergerak", "sticker": "Stiker"}


def evidence_kind(item) -> str:
    """``Foto``, ``Video`` … for a piece of evidence (its attachment type, else its content type)."""
    kind = EVIDENCE_KINDS.get(str(item.get("type") or ""))
    if kind:
        return kind
    family = str(item.get("content_type") or "").split("/", 1)[0]
    return {"image": "Foto", "video": "Video", "audio": "Rekaman suara"}.get(family, "Berkas")


def file_size(size) -> str:
    """``350 KB``, ``1,2 MB`` (Indonesian decimal comma)."""
    if not isinstance(size, int) or size < 0:
        return "ukuran tidak diketahui"
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / (1024 * 1024):.1f} MB".replace(".", ",")


def desk_reason(why: str) -> str:
    if why.startswith("escalated:"):
        return f"Terlambat: {CLOCKS.get(why.partition(':')[2], why.partition(':')[2])}"
    return DESK_REASONS.get(why, why)


def deadline_state(next_due_at: Optional[str], item: Mapping, now: datetime) -> Optional[str]:
    """``terlambat`` (a clock escalated or past due), ``mendekati`` (due within 24 h) or None."""
    if item.get("status") not in OPEN_STATUSES:
        return None
    if item.get("escalated"):
        return "terlambat"
    if not next_due_at:
        return None
    due = parse_iso(next_due_at)
    if due <= now:
        return "terlambat"
    if due - now <= NEARING_DEADLINE:
        return "mendekati"
    return None


def in_group(item: Mapping, group: str) -> bool:
    status, state = item.get("status"), item.get("deadline_state")
    return {
        "terbuka": status in OPEN_STATUSES,
        "baru": status == "assigned",
        "diproses": status == "in_progress",
        "mendekati": state == "mendekati",
        "terlambat": state == "terlambat",
        "semua": True,
    }.get(group, False)


@dataclass(frozen=True)
class Filters:
    category: str = ""
    region: str = ""
    status: str = ""
    code: str = ""

    @classmethod
    def from_args(cls, args: Mapping) -> "Filters":
        def pick(name: str, allowed: Iterable[str]) -> str:
            value = (args.get(name) or "").strip()
            return value if value in allowed else ""
        return cls(category=pick("kategori", CATEGORIES), region=pick("wilayah", list(REGIONS) + ["none"]),
                   status=pick("status", list(STATUSES) + list(PUBLIC_STATUSES) + ["escalated"]),
                   code=(args.get("kode") or "").strip().upper()[:32])

    def keep(self, item: Mapping) -> bool:
        if self.category and item.get("category") != self.category:
            return False
        if self.region == "none" and item.get("region_code"):
            return False
        if self.region and self.region != "none" and item.get("region_code") != self.region:
            return False
        if self.status == "escalated" and not item.get("escalated"):
            return False
        if self.status and self.status != "escalated" and self.status not in (
                item.get("status"), item.get("public_status")):
            return False
        if self.code and self.code not in str(item.get("tracking_code", "")).upper():
            return False
        return True

    def query(self, **extra) -> dict:
        """The filters as query arguments (for pagination and group links)."""
        values = {"kategori": self.category, "wilayah": self.region, "status": self.status,
                  "kode": self.code, **extra}
        return {key: value for key, value in values.items() if value not in ("", None)}


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    pages: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def paginate(items: list, requested, size: int = PAGE_SIZE) -> Page:
    total = len(items)
    pages = max(1, -(-total // size))
    try:
        number = int(requested or 1)
    except (TypeError, ValueError):
        number = 1
    number = min(max(1, number), pages)
    return Page(items[(number - 1) * size:number * size], number, pages, total)


def answer_preview(agency_name: str, tracking_code: str, answer: str) -> str:
    """What the citizen receives for a ``ComplaintResponded`` — notification's ``responded``
    message (services/notification/templates/messages.yaml); keep the two in step."""
    return (f"Jawaban dari {agency_name}: {answer.strip()}\n\n"
            f"(Kode aduan {tracking_code}. Ketik CEK {tracking_code} untuk menanyakan status aduan.)")


def messenger_parts(text: str) -> int:
    """How many Messenger messages a text takes (notification splits past 2,000 characters)."""
    return max(1, -(-len(text) // MESSENGER_LIMIT))


@dataclass(frozen=True)
class Problem:
    status: int
    title: str
    details: list[str]


def plain_problem(error: Exception) -> Problem:
    """An error of the workflow (or intake) in plain words, with the HTTP status the page gets."""
    detail = error.args[0] if error.args else ""
    if isinstance(error, ValidationFailed):
        return Problem(400, "Isian belum lengkap atau tidak sah.", _field_messages(detail))
    if isinstance(error, Forbidden):
        return Problem(403, "Anda tidak berwenang melakukan ini atau melihat aduan ini.", [])
    if isinstance(error, NotFound):
        return Problem(404, "Data tidak ditemukan.", [str(detail)] if detail else [])
    if isinstance(error, IllegalAction):
        return Problem(409, "Tindakan ini tidak dapat dilakukan pada keadaan aduan saat ini; "
                            "tidak ada yang dicatat.", [str(detail)] if detail else [])
    if isinstance(error, Conflict):
        return Problem(409, "Aduan sedang diubah oleh petugas lain. Muat ulang halaman lalu coba lagi.", [])
    return Problem(500, "Terjadi kesalahan. Coba lagi sebentar lagi.", [])


def _field_messages(detail) -> list[str]:
    if isinstance(detail, Mapping):
        lines = []
        for field, messages in detail.items():
            if isinstance(messages, Mapping):
                messages = [f"{key}: {value}" for key, value in messages.items()]
            elif not isinstance(messages, (list, tuple)):
                messages = [messages]
            label = FIELD_LABELS.get(field, field)
            lines.append(f"{label}: {'; '.join(_word(str(m)) for m in messages)}")
        return lines
    return [_word(str(detail))] if detail else []


def _word(message: str) -> str:
    return {"Missing data for required field.": "wajib diisi",
            "must not be blank": "tidak boleh kosong",
            "Shorter than minimum length 1.": "wajib diisi",
            "Field may not be null.": "wajib diisi"}.get(message, message)


def timeline_entry(entry: Mapping, agency_names: Mapping[str, str]) -> dict:
    """One row of the timeline: when, what, who, and the details worth reading."""
    data = entry.get("data") or {}
    names = {**agency_names, **(data.get("agency_names") or {})}

    def name(code):
        return names.get(code, code)
    kind = entry["event_type"]
    lines: list[str] = []
    if kind == ev.COMPLAINT_FILED:
        lines.append(f"Kategori {category(data.get('category'))}, wilayah {region(data.get('region_code'))}, "
                     f"prioritas {PRIORITIES.get(data.get('priority'), data.get('priority'))}")
    elif kind == ev.COMPLAINT_ROUTED:
        if set(data.get("due_at") or {}) == {"triage"}:
            lines.append("Ditahan di meja layanan untuk triase")
        else:
            lines.append("Instansi utama: " + ", ".join(map(name, data.get("lead_agencies") or [])))
            if data.get("coordinating_agencies"):
                lines.append("Koordinasi: " + ", ".join(map(name, data["coordinating_agencies"])))
        lines.append(f"Prioritas {PRIORITIES.get(data.get('priority'), data.get('priority'))}")
        if data.get("reason"):
            lines.append(f"Alasan: {data['reason']}")
    elif kind in (ev.COMPLAINT_ACKNOWLEDGED, ev.COMPLAINT_REJECTED_BY_AGENCY, ev.COMPLAINT_RESPONDED):
        lines.append(data.get("agency_name") or name(data.get("agency_code")))
        if data.get("reason"):
            lines.append(f"Alasan: {data['reason']}")
        if kind == ev.COMPLAINT_RESPONDED:
            lines.append(f"Jawaban: {data.get('text', '')}")
            if data.get("resolved"):
                lines.append("Bagian instansi dinyatakan selesai")
        if data.get("returned_to_desk"):
            lines.append("Kembali ke meja layanan")
    elif kind == ev.COMPLAINT_ESCALATED:
        lines.append(f"Tenggat {CLOCKS.get(data.get('breach'), data.get('breach'))} "
                     f"({wita(data.get('due_at'))}) terlewati")
        if data.get("notified"):
            lines.append("Diberitahukan kepada: " + ", ".join(map(name, data["notified"])))
    elif kind == ev.COMPLAINT_CONFIDENTIALITY_CHANGED:
        lines.append("Dijadikan rahasia" if data.get("confidential") else "Status rahasia dicabut")
        lines.append(f"Alasan: {data.get('reason', '')}")
    elif kind == ev.COMPLAINT_DISMISSED:
        lines.append(f"Alasan: {data.get('reason', '')}")
        if data.get("duplicate_of"):
            lines.append(f"Sama dengan aduan {data['duplicate_of']}")
    elif kind == ev.COMPLAINT_LINKED:
        lines.append(f"Aduan utama: {data.get('primary_tracking_code', '')} — jawaban instansi atas aduan "
                     "utama juga dikirim kepada warga ini")
        lines.append(f"Alasan: {data.get('reason', '')}")
    elif kind == ev.COMPLAINT_RECLASSIFIED:   # issue 20: the desk corrected the classification
        if data.get("category_before") != data.get("category_after"):
            lines.append(f"Kategori: {CATEGORIES.get(data.get('category_before'), data.get('category_before'))}"
                         f" → {CATEGORIES.get(data.get('category_after'), data.get('category_after'))}")
        if data.get("region_before") != data.get("region_after"):
            lines.append(f"Wilayah: {REGIONS.get(data.get('region_before'), UNKNOWN_REGION)}"
                         f" → {REGIONS.get(data.get('region_after'), UNKNOWN_REGION)}")
        lines.append("Diteruskan ulang menurut aturan" if data.get("rerouted")
                     else "Instansi tetap (aturan yang berlaku tidak berubah)")
        lines.append(f"Alasan: {data.get('reason', '')}")
    elif kind == ev.COMPLAINT_REOPENED:   # issue 19: the citizen said "belum"
        lines.append("Kembali ke meja layanan" if data.get("to_desk") else "Kembali ke instansi utama")
        lines.append(f"Kata warga: {data.get('words') or '—'}")
    elif kind == ev.COMPLAINT_REOPEN_REFUSED:
        lines.append({"period_over": "Lewat batas waktu pembukaan kembali", "dismissed": "Aduan sudah ditolak",
                      "open": "Aduan masih ditangani"}.get(data.get("reason"), data.get("reason", "")))
        lines.append(f"Kata warga: {data.get('words') or '—'}")
    elif kind == ev.CITIZEN_RATED:
        lines.append(f"Nilai {data.get('score')} dari 5")
    actor = data.get("actor") or (data.get("decided_by") or "")
    return {"at": wita(entry.get("occurred_at")), "label": EVENTS.get(kind, kind),
            "actor": _actor_words(actor), "lines": lines}


def _actor_words(actor: str) -> str:
    if actor.startswith("rule:"):
        return "aturan otomatis"
    if actor.startswith("operator:"):
        return actor.partition(":")[2]
    return actor
