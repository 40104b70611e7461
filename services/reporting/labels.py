"""Words the reports print: category labels, region names (BPS) and agency names in Bahasa
Indonesia. Routing owns the agency directory; reporting only needs display names, and an agency
missing here is shown by its code, so a new agency never breaks a report."""
from __future__ import annotations

CATEGORY_LABELS = {
    "koperasi_umkm": "koperasi dan UMKM",
    "lingkungan_hidup": "lingkungan hidup",
    "infrastruktur": "infrastruktur",
    "pungli": "pungutan liar",
    "pelayanan_umum": "pelayanan umum",
    "sosial": "sosial",
    "kesehatan": "kesehatan",
    "lainnya": "lainnya",
}

REGION_NAMES = {
    "5201": "Kabupaten Lombok Barat", "5202": "Kabupaten Lombok Tengah",
    "5203": "Kabupaten Lombok Timur", "5204": "Kabupaten Sumbawa", "5205": "Kabupaten Dompu",
    "5206": "Kabupaten Bima", "5207": "Kabupaten Sumbawa Barat", "5208": "Kabupaten Lombok Utara",
    "5271": "Kota Mataram", "5272": "Kota Bima", "unknown": "Tidak diketahui",
}

AGENCY_NAMES = {
    "diskominfotik": "Diskominfotik NTB (desk)",
    "diskop-ukm": "Dinas Koperasi dan UKM",
    "dlhk": "Dinas Lingkungan Hidup dan Kehutanan",
    "dpupr": "Dinas PUPR",
    "perkim": "Dinas Perumahan dan Permukiman",
    "dinsos": "Dinas Sosial",
    "dikes": "Dinas Kesehatan",
    "inspektorat": "Inspektorat",
    "biro-organisasi": "Biro Organisasi",
    "pemkab-lobar": "Pemkab Lombok Barat", "pemkab-loteng": "Pemkab Lombok Tengah",
    "pemkab-lotim": "Pemkab Lombok Timur", "pemkab-sumbawa": "Pemkab Sumbawa",
    "pemkab-dompu": "Pemkab Dompu", "pemkab-bima": "Pemkab Bima",
    "pemkab-ksb": "Pemkab Sumbawa Barat", "pemkab-klu": "Pemkab Lombok Utara",
    "pemkot-mataram": "Pemkot Mataram", "pemkot-bima": "Pemkot Bima",
    "polda-ntb": "Polda NTB (Saber Pungli)", "bpn-ntb": "Kanwil BPN NTB",
    "kejati-ntb": "Kejati NTB", "bpjn-ntb": "BPJN NTB", "bws-nt1": "BWS Nusa Tenggara I",
}

MONTH_NAMES = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
               "September", "Oktober", "November", "Desember")

STATUS_LABELS = {
    "diterima": "Diterima", "disetujui": "Disetujui", "diproses": "Diproses",
    "ditolak": "Ditolak", "selesai": "Selesai",
}


def category_label(code: str) -> str:
    return CATEGORY_LABELS.get(code, code)


def region_name(code: str | None) -> str:
    return REGION_NAMES.get(code or "unknown", code or "Tidak diketahui")


def agency_name(code: str) -> str:
    return AGENCY_NAMES.get(code, code)
