"""Routing rules and the agency directory as shipped in services/routing/data: who leads, who
coordinates, and which rule says so, for every category at provincial and district level."""
from __future__ import annotations

import pytest

from services.routing.domain.directory import (
    Directory, DirectoryError, UnknownAgencyCode, load_directory,
)
from services.routing.domain.rules import (
    FALLBACK_ID, RuleError, RuleSet, decide, load_rules, normalise,
)


@pytest.fixture(scope="module")
def directory():
    return load_directory()


@pytest.fixture(scope="module")
def rules(directory):
    return load_rules(directory=directory)


DESK = "diskominfotik"

# (category, region, text, lead, coordinating, rule id)
CASES = [
    # infrastructure: jurisdiction clues, then level
    ("infrastruktur", "5201", "Jalan nasional di Gerung berlubang besar", ["bpjn-ntb"], ["dpupr"], "jalan-nasional"),
    ("infrastruktur", None, "JLN. NASIONAL   Sumbawa - Dompu rusak", ["bpjn-ntb"], ["dpupr"], "jalan-nasional"),
    ("infrastruktur", "5204", "jalan negara lintas sumbawa amblas", ["bpjn-ntb"], ["dpupr"], "jalan-nasional"),
    ("infrastruktur", "5203", "Jl. Prov. menuju Sembalun longsor", ["dpupr"], [], "jalan-provinsi"),
    ("infrastruktur", None, "jalan provinsi di Lombok rusak", ["dpupr"], [], "jalan-provinsi"),
    ("infrastruktur", "5202", "Jalan kabupaten di Praya rusak parah", ["pemkab-loteng"], [], "jalan-kabupaten"),
    ("infrastruktur", "5271", "jalan kota di Cakranegara banyak lubang", ["pemkot-mataram"], [], "jalan-kabupaten"),
    ("infrastruktur", "5208", "jln desa Tanjung putus", ["pemkab-klu"], [], "jalan-kabupaten"),
    ("infrastruktur", None, "jalan kabupaten rusak tidak diperbaiki", [DESK], [], "jalan-kabupaten-tanpa-wilayah"),
    ("infrastruktur", "5206", "Tanggul sungai jebol saat banjir", ["bws-nt1"], ["dpupr", "pemkab-bima"],
     "sungai-wilayah"),
    ("infrastruktur", None, "normalisasi sungai tidak selesai", ["bws-nt1"], ["dpupr"], "sungai"),
    ("lingkungan_hidup", "5272", "sungai meluap dan tanggul rusak", ["bws-nt1"], ["dpupr", "pemkot-bima"],
     "sungai-wilayah"),
    ("infrastruktur", "5205", "rumah tidak layak huni belum dibedah", ["perkim"], ["pemkab-dompu"],
     "permukiman-wilayah"),
    ("infrastruktur", None, "air bersih tidak mengalir seminggu", ["perkim"], [], "permukiman"),
    ("infrastruktur", "5207", "lampu dan trotoar rusak", ["pemkab-ksb"], [], "infrastruktur-wilayah"),
    ("infrastruktur", None, "trotoar rusak", ["dpupr"], [], "infrastruktur-provinsi"),
    # illegal levies, corruption, land
    ("pungli", "5203", "diminta bayar untuk surat keterangan", ["inspektorat"], ["polda-ntb"], "pungli"),
    ("pungli", None, "pungutan di sekolah", ["inspektorat"], ["polda-ntb"], "pungli"),
    ("pelayanan_umum", "5271", "petugas minta uang pelicin untuk KTP", ["inspektorat"], ["polda-ntb"],
     "pungli-kata-kunci"),
    ("lainnya", None, "ada PUNGLI di pelabuhan", ["inspektorat"], ["polda-ntb"], "pungli-kata-kunci"),
    ("lainnya", "5201", "dana desa diselewengkan kepala desa", ["inspektorat"], ["kejati-ntb"], "korupsi"),
    ("pelayanan_umum", "5204", "sertifikat tanah tidak terbit dua tahun", ["bpn-ntb"], [], "pertanahan"),
    ("lainnya", None, "Sertipikat  tanah ganda, sengketa tanah warisan", ["bpn-ntb"], [], "pertanahan"),
    ("lainnya", "5202", "pengukuran PTSL belum dilakukan", ["bpn-ntb"], [], "pertanahan"),
    # environment and forestry
    ("lingkungan_hidup", "5208", "illegal logging di hutan Rinjani", ["dlhk"], ["polda-ntb"], "pembalakan-liar"),
    ("lingkungan_hidup", None, "penebangan liar di kawasan hutan", ["dlhk"], ["polda-ntb"], "pembalakan-liar"),
    ("lingkungan_hidup", "5204", "hutan mangrove ditimbun", ["dlhk"], [], "kehutanan"),
    ("lingkungan_hidup", "5207", "limbah B3 tambang dibuang ke laut", ["dlhk"], [], "tambang-limbah-b3"),
    ("lingkungan_hidup", "5271", "sampah menumpuk di pasar", ["pemkot-mataram"], ["dlhk"], "lingkungan-wilayah"),
    ("lingkungan_hidup", "5203", "bau asap pabrik tahu", ["pemkab-lotim"], ["dlhk"], "lingkungan-wilayah"),
    ("lingkungan_hidup", None, "sampah menumpuk", ["dlhk"], [], "lingkungan-provinsi"),
    # health
    ("kesehatan", "5271", "antrean lama di RSUD Provinsi NTB", ["dikes"], [], "rumah-sakit-provinsi"),
    ("kesehatan", "5202", "pelayanan RS Mandalika buruk", ["dikes"], [], "rumah-sakit-provinsi"),
    ("kesehatan", "5203", "puskesmas tutup siang hari", ["pemkab-lotim"], ["dikes"], "kesehatan-wilayah"),
    ("kesehatan", "5206", "pkm tidak ada dokter", ["pemkab-bima"], ["dikes"], "kesehatan-wilayah"),
    ("kesehatan", None, "puskesmas tutup", ["dikes"], [], "kesehatan-provinsi"),
    # social assistance
    ("sosial", "5201", "bansos PKH tidak cair tiga bulan", ["dinsos"], ["pemkab-lobar"], "bansos-wilayah"),
    ("pelayanan_umum", "5205", "bantuan sosial salah sasaran", ["dinsos"], ["pemkab-dompu"], "bansos-wilayah"),
    ("sosial", None, "BPNT tidak diterima", ["dinsos"], [], "bansos"),
    ("sosial", "5272", "anak terlantar di jalan", ["pemkot-bima"], ["dinsos"], "sosial-wilayah"),
    ("sosial", None, "lansia terlantar", ["dinsos"], [], "sosial-provinsi"),
    # cooperatives and SMEs
    ("koperasi_umkm", "5271", "koperasi tidak mengembalikan simpanan", ["diskop-ukm"], ["pemkot-mataram"],
     "koperasi-umkm-wilayah"),
    ("koperasi_umkm", None, "pelatihan UMKM dibatalkan", ["diskop-ukm"], [], "koperasi-umkm-provinsi"),
    # public services
    ("pelayanan_umum", "5203", "e-KTP belum jadi 6 bulan", ["pemkab-lotim"], [], "adminduk-wilayah"),
    ("pelayanan_umum", "5271", "urus KK di Dukcapil lama", ["pemkot-mataram"], [], "adminduk-wilayah"),
    ("pelayanan_umum", None, "akte kelahiran anak belum terbit", [DESK], [], "adminduk-tanpa-wilayah"),
    ("pelayanan_umum", "5204", "kantor camat tutup jam kerja", ["pemkab-sumbawa"], [], "pelayanan-umum-wilayah"),
    ("pelayanan_umum", None, "pelayanan kantor dinas lambat", ["biro-organisasi"], [], "pelayanan-umum-provinsi"),
    # other matters
    ("lainnya", "5202", "begal di jalan bypass BIL", ["polda-ntb"], [], "kamtibmas"),
    ("lainnya", "5201", "mohon informasi lowongan kerja", [DESK], [], FALLBACK_ID),
    ("lainnya", None, "terima kasih atas pelayanannya", [DESK], [], FALLBACK_ID),
    ("lainnya", None, "", [DESK], [], FALLBACK_ID),
]


@pytest.mark.parametrize("category, region, text, lead, coordinating, rule_id", CASES,
                         ids=[f"{case[5]}-{index}" for index, case in enumerate(CASES)])
def test_decide(directory, rules, category, region, text, lead, coordinating, rule_id):
    decision = decide(directory, rules, category, region, text, "normal")
    assert decision.lead_agencies == lead
    assert decision.coordinating_agencies == coordinating
    assert decision.decided_by == f"rule:{rule_id}"
    assert decision.reason.strip()
    assert decision.at_desk == (lead == [DESK])


def test_there_are_enough_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("region, district", [
    ("5201", "pemkab-lobar"), ("5202", "pemkab-loteng"), ("5203", "pemkab-lotim"),
    ("5204", "pemkab-sumbawa"), ("5205", "pemkab-dompu"), ("5206", "pemkab-bima"),
    ("5207", "pemkab-ksb"), ("5208", "pemkab-klu"), ("5271", "pemkot-mataram"),
    ("5272", "pemkot-bima"),
])
def test_every_region_has_its_district_government(directory, rules, region, district):
    assert directory.district_for(region).code == district
    decision = decide(directory, rules, "pelayanan_umum", region, "KTP hilang", "normal")
    assert decision.lead_agencies == [district]


def test_unknown_region_code_counts_as_unknown(directory, rules):
    decision = decide(directory, rules, "kesehatan", "9999", "puskesmas tutup", "urgent")
    assert decision.decided_by == "rule:kesehatan-provinsi"


def test_every_category_is_routed_somewhere_at_both_levels(directory, rules):
    for category in ("koperasi_umkm", "lingkungan_hidup", "infrastruktur", "pungli",
                     "pelayanan_umum", "sosial", "kesehatan"):
        for region in (None, "5204"):
            decision = decide(directory, rules, category, region, "aduan", "normal")
            assert not decision.at_desk, (category, region)


def test_normalise_spells_out_abbreviations_and_ignores_case_and_spacing():
    assert normalise("  Jln.Nasional\tKab. Bima ") == "jalan nasional kabupaten bima"
    assert normalise("JL   PROPINSI") == "jalan provinsi"
    assert normalise("Bantuan   Sosial") == "bansos"
    assert normalise(None) == ""


def test_keywords_match_whole_words_only(directory, rules):
    # "pungli" inside another word is no clue
    decision = decide(directory, rules, "lainnya", None, "tempungliat", "normal")
    assert decision.decided_by == "rule:desk-fallback"


def test_priority_condition():
    rules = RuleSet.from_records([
        {"id": "urgent-health", "when": {"categories": ["kesehatan"], "priorities": ["urgent"]},
         "lead": "dikes", "reason": "Darurat kesehatan."},
    ])
    directory = load_directory()
    assert decide(directory, rules, "kesehatan", None, "x", "urgent").lead_agencies == ["dikes"]
    assert decide(directory, rules, "kesehatan", None, "x", "normal").at_desk


def test_rules_check_agency_codes_against_the_directory(directory):
    rules = RuleSet.from_records([{"id": "x", "lead": "dinas-fiktif", "reason": "Tidak ada."}])
    with pytest.raises(RuleError, match="dinas-fiktif"):
        rules.check(directory)


@pytest.mark.parametrize("record, message", [
    ({"id": "a", "reason": "x"}, "lead agency is required"),
    ({"id": "a", "lead": "dlhk"}, "reason"),
    ({"id": "a", "lead": "dlhk", "reason": "x", "when": {"categories": ["jalan"]}}, "unknown categories"),
    ({"id": "a", "lead": "dlhk", "reason": "x", "when": {"region": "maybe"}}, "region must be"),
    ({"id": "a", "lead": "dlhk", "reason": "x", "when": {"colour": "red"}}, "unknown conditions"),
    ({"id": "a", "lead": "{district}", "reason": "x", "when": {"region": "unknown"}}, "unknown regions"),
    ({"id": "desk-fallback", "lead": "dlhk", "reason": "x"}, "reserved"),
])
def test_rule_validation(record, message):
    with pytest.raises(RuleError, match=message):
        RuleSet.from_records([record])


def test_duplicate_rule_id():
    record = {"id": "a", "lead": "dlhk", "reason": "x"}
    with pytest.raises(RuleError, match="duplicate rule id"):
        RuleSet.from_records([record, record])


def _agency(code, **overrides):
    record = {"code": code, "name": f"Dinas {code}", "level": "provincial", "categories": [],
              "regions": [], "supervisor": "desk"}
    record.update(overrides)
    return record


def test_directory_shape(directory):
    assert directory.desk.code == DESK
    assert directory.supervisor_of(DESK) is None
    assert directory.supervisor_of("dpupr") == "inspektorat"
    assert directory.supervisor_of("pemkab-lobar") == "biro-organisasi"
    assert directory.supervisor_of("bpjn-ntb") == DESK
    assert directory.district_for(None) is None
    assert {agency.level for agency in directory.all()} == {"provincial", "district", "vertical"}
    assert directory.get("bws-nt1").name == "Balai Wilayah Sungai Nusa Tenggara I"
    with pytest.raises(UnknownAgencyCode):
        directory.get("nope")


@pytest.mark.parametrize("records, message", [
    ([_agency("desk", is_desk=True, supervisor=None), _agency("a", supervisor="ghost")],
     "unknown supervisor 'ghost'"),
    ([_agency("desk", is_desk=True, supervisor=None), _agency("a"), _agency("a")],
     "duplicate agency code 'a'"),
    ([_agency("a", supervisor=None)], "exactly one agency must be the desk"),
    ([_agency("desk", is_desk=True, supervisor="a"), _agency("a", supervisor="desk")], "loops"),
    ([_agency("desk", is_desk=True, supervisor=None), _agency("a", level="regency")], "level must be"),
    ([_agency("desk", is_desk=True, supervisor=None),
      _agency("a", level="district", regions=["5201"]), _agency("b", level="district", regions=[5201])],
     "two district governments"),
    ([_agency("desk", is_desk=True, supervisor=None), _agency("a", regions=["1234"])],
     "unknown region codes"),
])
def test_directory_validation(records, message):
    with pytest.raises(DirectoryError, match=message):
        Directory.from_records(records)
