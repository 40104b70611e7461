"""What the console's pages say: times in WITA, the agency inbox's groups, filters and
pagination, the preview of the citizen's message, and errors in plain words."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.core.errors import Conflict, Forbidden, IllegalAction, NotFound, ValidationFailed
from services.routing.adapters.console import present

NOW = datetime(2025, 1, 6, 2, 0, tzinfo=timezone.utc)  # Monday 10.00 WITA


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_times_are_shown_in_wita():
    assert present.wita("2025-01-06T02:00:00Z") == "6 Jan 2025, 10.00 WITA"
    assert present.wita("2024-12-31T16:30:00+00:00") == "1 Jan 2025, 00.30 WITA"
    assert present.wita(None) == "—"


def test_deadline_states_of_the_inbox():
    item = {"status": "assigned", "escalated": []}
    assert present.deadline_state(iso(NOW - timedelta(minutes=1)), item, NOW) == "terlambat"
    assert present.deadline_state(iso(NOW + timedelta(hours=23)), item, NOW) == "mendekati"
    assert present.deadline_state(iso(NOW + timedelta(hours=25)), item, NOW) is None
    assert present.deadline_state(None, {"status": "in_progress", "escalated": ["follow_up"]}, NOW) == "terlambat"
    resolved = {"status": "resolved", "escalated": ["follow_up"]}
    assert present.deadline_state(iso(NOW - timedelta(days=1)), resolved, NOW) is None


def test_inbox_groups():
    new = {"status": "assigned", "deadline_state": "mendekati"}
    busy = {"status": "in_progress", "deadline_state": "terlambat"}
    done = {"status": "resolved", "deadline_state": None}
    groups = {key: [i for i in (new, busy, done) if present.in_group(i, key)] for key in present.INBOX_GROUPS}
    assert groups == {"terbuka": [new, busy], "baru": [new], "diproses": [busy], "mendekati": [new],
                      "terlambat": [busy], "semua": [new, busy, done]}


def test_filters_keep_only_what_was_asked_and_ignore_unknown_values():
    items = [
        {"tracking_code": "NTB-AAAA1", "category": "infrastruktur", "region_code": "5202",
         "status": "assigned", "public_status": "disetujui", "escalated": []},
        {"tracking_code": "NTB-BBBB2", "category": "lainnya", "region_code": None,
         "status": "triage", "public_status": "diterima", "escalated": ["triage"]},
    ]

    def codes(**args):
        filters = present.Filters.from_args(args)
        return [i["tracking_code"] for i in items if filters.keep(i)]
    assert codes() == ["NTB-AAAA1", "NTB-BBBB2"]
    assert codes(kategori="infrastruktur") == ["NTB-AAAA1"]
    assert codes(wilayah="none") == ["NTB-BBBB2"]
    assert codes(wilayah="5202") == ["NTB-AAAA1"]
    assert codes(status="disetujui") == ["NTB-AAAA1"]
    assert codes(status="triage") == ["NTB-BBBB2"]
    assert codes(status="escalated") == ["NTB-BBBB2"]
    assert codes(kode="bbbb") == ["NTB-BBBB2"]
    assert codes(kategori="<script>", status="nonsense") == ["NTB-AAAA1", "NTB-BBBB2"]
    assert present.Filters.from_args({"kategori": "lainnya", "kode": ""}).query(halaman=2) == \
        {"kategori": "lainnya", "halaman": 2}


def test_pagination_clamps_the_page_number():
    items = list(range(45))
    assert present.paginate(items, None).items == list(range(20))
    last = present.paginate(items, "3")
    assert (last.items, last.number, last.pages, last.has_next, last.has_previous) == \
        (list(range(40, 45)), 3, 3, False, True)
    assert present.paginate(items, "99").number == 3
    assert present.paginate(items, "abc").number == 1
    assert present.paginate([], "2").pages == 1


def test_the_preview_is_the_message_the_citizen_receives():
    text = present.answer_preview("Dinas PUPR", "NTB-7K3Q9", "  Jalan sudah ditambal.  ")
    assert text == ("Jawaban dari Dinas PUPR: Jalan sudah ditambal.\n\n"
                    "(Kode aduan NTB-7K3Q9. Ketik CEK NTB-7K3Q9 untuk menanyakan status aduan.)")
    assert present.messenger_parts("x" * 2000) == 1
    assert present.messenger_parts("x" * 2001) == 2


def test_errors_in_plain_words_with_their_status():
    invalid = present.plain_problem(ValidationFailed({"note": ["must not be blank"],
                                                      "reason": ["Missing data for required field."]}))
    assert invalid.status == 400
    assert invalid.details == ["Catatan: tidak boleh kosong", "Alasan: wajib diisi"]
    illegal = present.plain_problem(IllegalAction("complaint is resolved"))
    assert illegal.status == 409 and "tidak ada yang dicatat" in illegal.title
    assert illegal.details == ["complaint is resolved"]
    assert present.plain_problem(Forbidden("x")).status == 403
    assert present.plain_problem(NotFound("no complaint")).status == 404
    assert present.plain_problem(Conflict("busy")).status == 409


def test_timeline_entries_name_agencies_and_actors():
    entry = present.timeline_entry({"event_type": "ComplaintRouted", "occurred_at": "2025-01-06T02:00:00Z",
                                    "data": {"lead_agencies": ["dpupr"], "coordinating_agencies": ["pemkab-loteng"],
                                             "decided_by": "operator:diskominfotik:Sari", "reason": "Jalan provinsi",
                                             "priority": "important", "due_at": {"first_response": "x"}}},
                                   {"dpupr": "Dinas PUPR", "pemkab-loteng": "Pemkab Lombok Tengah"})
    assert entry["label"] == "Diteruskan" and entry["actor"] == "diskominfotik:Sari"
    assert entry["lines"] == ["Instansi utama: Dinas PUPR", "Koordinasi: Pemkab Lombok Tengah",
                              "Prioritas Penting", "Alasan: Jalan provinsi"]
    held = present.timeline_entry({"event_type": "ComplaintRouted", "occurred_at": None,
                                   "data": {"lead_agencies": ["diskominfotik"], "coordinating_agencies": [],
                                            "decided_by": "rule:desk-fallback", "priority": "normal",
                                            "due_at": {"triage": "x"}}}, {})
    assert held["actor"] == "aturan otomatis" and held["lines"][0] == "Ditahan di meja layanan untuk triase"
