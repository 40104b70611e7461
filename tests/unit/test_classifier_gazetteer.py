"""The classifier's region from the full gazetteer of NTB: coverage, shared names, context, speed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import regenerate_gazetteer
from services.intake.domain import gazetteer
from services.intake.domain.classifier import REGIONS, WILAYAH_FILE, classify, default_classifier

ROOT = Path(__file__).resolve().parents[2]
LABELLED = ROOT / "tests" / "data" / "labelled_complaints.yaml"


@pytest.fixture(scope="module")
def wilayah():
    rows, meta = gazetteer.read_wilayah(WILAYAH_FILE)
    return rows, meta["header"]


def test_the_shipped_file_is_the_whole_province_from_the_recorded_dataset(wilayah):
    rows, header = wilayah
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        assert row["code"].startswith("52.")
    assert kinds["kabupaten"] + kinds["kota"] == 10
    assert {gazetteer.region_code(r["code"]) for r in rows} == set(REGIONS)
    assert kinds["kecamatan"] >= 116
    assert kinds["desa"] + kinds["kelurahan"] >= 1150 and kinds["kelurahan"] >= 140
    # source, version and licence as the regeneration script writes them
    assert f"idn-area-data {regenerate_gazetteer.IDN_AREA_DATA_VERSION}" in header
    assert f"areaid {regenerate_gazetteer.AREAID_VERSION}" in header
    assert "Open Database License" in header and "MIT" in header
    postal = [p for r in rows for p in r["postal"].split(",") if p]
    assert len(postal) > 1000 and all(p[:2] in ("83", "84") and len(p) == 5 for p in postal)


def test_every_village_and_kecamatan_is_found_with_its_kabupaten(wilayah):
    rows, _ = wilayah
    kecamatan = {r["code"]: r["name"] for r in rows if r["kind"] == "kecamatan"}
    wrong = []
    for row in rows:
        region = gazetteer.region_code(row["code"])
        if row["kind"] == "kecamatan":
            text = f"jalan rusak di kecamatan {row['name']}"
        elif row["kind"] in ("desa", "kelurahan"):
            kec = kecamatan[".".join(row["code"].split(".")[:3])]
            text = f"jalan rusak di {row['kind']} {row['name']} kecamatan {kec}"
        else:
            continue
        got = classify(text).region_code
        if got != region:
            wrong.append((text, region, got))
    assert wrong == []


@pytest.mark.parametrize("text, region", [
    # the misses named in issue 20
    ("jalan rusak parah di Bonjeruk", "5202"), ("lampu jalan di kawo mati", "5202"),
    ("sampah di sengkol", "5202"), ("desa tanak awu banjir", "5202"), ("irigasi desa mujur jebol", "5202"),
    ("jalan di Belanting rusak", "5203"), ("air di rumbuk mati", "5203"), ("pungli di pasar anjani", "5203"),
    ("jembatan di kotaraja ambruk", "5203"), ("puskesmas lendang nangka kekurangan obat", "5203"),
    ("banjir di kuranji", "5201"), ("drainase di pejeruk mampet", "5271"), ("sampah di karang pule", "5271"),
    ("pasar tente kotor", "5206"), ("jalan di Talabiu rusak", "5206"), ("banjir di kelurahan sadia", "5272"),
    ("air bersih di dodu susah", "5272"), ("jatibaru banjir", "5272"), ("jalan ke genggelang rusak", "5208"),
    ("desa akar-akar belum ada listrik", "5208"), ("sampah di brang bara", "5204"),
    ("RSUD dr. R. Soedjono pelayanan lambat", "5203"),
])
def test_the_villages_the_issue_named(text, region):
    assert classify(text).region_code == region


@pytest.mark.parametrize("text, region, rule", [
    # Pagutan: kelurahan in Kota Mataram, desa in Batukliang (Lombok Tengah)
    ("jalan di Pagutan berlubang", "5271", "no other clue: the kelurahan"),
    ("jalan di desa Pagutan kec. Batukliang rusak", "5202", "batukliang"),
    ("jalan di Pagutan, Lombok Tengah rusak", "5202", "lombok tengah"),
    # Karang Baru: kelurahan in Selaparang (Mataram), desa in Wanasaba (Lombok Timur)
    ("jalan rusak di kelurahan Karang Baru", "5271", "'kelurahan karang baru'"),
    ("kantor desa Karang Baru Wanasaba tutup", "5203", "wanasaba"),
    # Melayu: kelurahan in Asakota (Kota Bima), desa in Lambu (Kabupaten Bima)
    ("banjir di desa Melayu kec Lambu", "5206", "lambu"),
    ("banjir di kelurahan Melayu kota Bima", "5272", "kelurahan"),
    # Tanjung: a KLU kecamatan, kelurahan in Selong and in Kota Bima
    ("jalan di kec. Tanjung rusak", "5208", "'kecamatan tanjung'"),
    ("drainase kel. Tanjung kota Bima meluap", "5272", "kota bima"),
    ("drainase kel. Tanjung di Selong meluap", "5203", "selong"),
    ("drainase di Tanjung kab. Lombok Utara meluap", "5208", "lombok utara"),
    # a postal code settles a shared name, and names a region by itself
    ("jalan di Pagutan 83561 rusak", "5202", "also named: 83561"),
    ("kantor desa tutup terus, kode pos 83117", "5271", "postal"),
])
def test_shared_names_are_settled_and_the_reason_says_how(text, region, rule):
    result = classify(text)
    assert result.region_code == region
    why = result.reasons["region"][-1]
    assert why.startswith("why: ") and rule in why.lower(), result.reasons


def test_a_shared_name_with_no_clue_between_equals_is_not_guessed():
    # kelurahan Tanjung exists in Lombok Timur and in Kota Bima: nothing says which
    result = classify("drainase kelurahan Tanjung meluap")
    assert result.region_code is None and result.reasons["region"] == []


def test_the_place_of_the_problem_wins_over_where_the_citizen_lives():
    result = classify("sy tinggal di Mataram tp jalan rusak parah di Sengkol")
    assert result.region_code == "5202"
    assert "where the citizen lives" in result.reasons["region"][-1]
    assert classify("warga Pejeruk, mau lapor tambang liar di desa Kuranji").region_code == "5201"
    assert classify("kami warga Kekalik, jembatan di kec. Gerung putus").region_code == "5201"
    # only the home named: it is still the best clue
    assert classify("kami warga desa Kawo belum dapat air bersih").region_code == "5202"


@pytest.mark.parametrize("text", [
    "jalan baru sudah rusak lagi", "di tengah jalan ada lubang besar", "batu besar jatuh ke jalan",
    "jati di hutan ditebang", "mohon info dalam waktu dekat", "pasir putih di pantai kotor",
    "jembatan gantung di desa kami putus", "harga bawang merah naik terus", "anak saya demam tinggi",
    "tolong pak, mata saya sakit tidak ada dokter", "sudah lama tidak ada air bersih",
])
def test_village_names_that_are_ordinary_words_need_context(text):
    assert classify(text).region_code is None


def test_ordinary_words_count_as_villages_with_a_desa_prefix_or_a_capital():
    assert classify("jalan di desa Baru rusak").region_code == "5204"       # Baru, Alas (Sumbawa)
    assert classify("banjir di kelurahan Dalam").region_code == "5207"     # Dalam, Taliwang
    assert classify("Jalan di Batu Putih kec Taliwang rusak").region_code == "5207"


def test_no_false_place_in_the_tuning_texts_that_name_none():
    with LABELLED.open(encoding="utf-8") as fh:
        texts = [c["text"] for c in yaml.safe_load(fh)["complaints"] if c["region_code"] is None]
    assert len(texts) >= 50
    false = [(t, classify(t).reasons["region"]) for t in texts if classify(t).region_code is not None]
    assert false == []


def test_the_index_is_built_once_per_process():
    code = (
        "from services.intake.domain import gazetteer, classifier as c\n"
        "assert gazetteer.BUILDS == 0\n"
        "for i in range(200):\n"
        "    c.classify(f'jalan rusak di desa Bonjeruk no {i}')\n"
        "    c.default_classifier()\n"
        "print(gazetteer.BUILDS)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "1"
    assert default_classifier() is default_classifier()


def test_a_long_text_settles_each_shared_name_once_not_each_mention(monkeypatch):
    # a burst of 1,000 Messenger bubbles is classified as one text: settling every mention
    # against every other would cost the mentions squared
    calls = []
    settle = gazetteer.Gazetteer._settle

    def counting(self, *args, **kwargs):
        calls.append(1)
        return settle(self, *args, **kwargs)

    monkeypatch.setattr(gazetteer.Gazetteer, "_settle", counting)
    result = classify(" ".join(["banjir di Tanjung dan Pagutan, desa Karang Baru"] * 1000))
    assert result.region_code == "5271"  # the kelurahan Pagutan: no other clue
    assert 0 < len(calls) <= 2 * 3 * 2  # two passes over (name, word before) pairs, not 3,000 mentions


def test_after_desa_or_kec_a_slip_of_one_letter_or_a_split_name_is_read():
    result = classify("jalan di kec. pringgrata rusak")
    assert result.region_code == "5202" and "spelling close to pringgarata" in result.reasons["region"][-1]
    assert classify("desa masbagek banjir").region_code == "5203"
    result = classify("jalan di desa labu api rusak")
    assert result.region_code == "5201" and "written apart: labuapi" in result.reasons["region"][-1]
    # ordinary words after "desa" are not slips, and a slip without "desa" is not read
    for text in ("desa tetangga banjir", "desa setempat", "desa terpencil", "kelurahan kami",
                 "desa wisata", "jalan di pringgrata rusak"):
        assert classify(text).region_code is None, text
