"""Reference data has one home (``shared/core/reference.py``; agency names: routing's directory
and the events that carry them): a second copy in a service or a template fails here, before it
drifts from the first. What the console and Open311 show comes from the reference."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from services.intake.domain import open311
from services.routing.adapters.console import present
from shared.core import reference

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "shared" / "core" / "reference.py"
AGENCY_CODES = {agency["code"] for agency in yaml.safe_load(
    (ROOT / "services/routing/data/agencies.yaml").read_text(encoding="utf-8"))["agencies"]}
MONTH_WORDS = {*reference.MONTH_NAMES, *reference.MONTH_ABBREVIATIONS} - {"Mei"}  # "Mei" is both
KNOWN_CODES = (("categories", set(reference.CATEGORIES)), ("regions", set(reference.REGION_CODES)),
               ("agencies", AGENCY_CODES))


def copies_in(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line: what`` for each literal that copies reference data: a dict keyed by three or
    more category codes, region codes or agency codes, a list of three or more month names, or
    the unknown region's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = path.relative_to(root)   # once per file: per node it cost more than the whole walk
    found = []
    for node in ast.walk(tree):
        keys: list = []
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        elements: list = []
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elements = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        for what, known in KNOWN_CODES:
            if len(known.intersection(keys)) >= 3:
                found.append(f"{where}: {what}")
        if len(MONTH_WORDS.intersection(elements)) >= 3:
            found.append(f"{where}: months")
        if isinstance(node, ast.Constant) and node.value == reference.UNKNOWN_REGION_NAME:
            found.append(f"{where}: unknown region")
    return found


def test_no_service_keeps_a_second_copy_of_reference_data():
    offenders = [found for folder in ("services", "shared") for path in sorted((ROOT / folder).rglob("*.py"))
                 if path != HOME for found in copies_in(path)]
    assert offenders == []


def test_the_copy_check_finds_copies(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('LABELS = {"pungli": "a", "sosial": "b", "lainnya": "c"}\n'
                     'NAMES = {"dpupr": "Dinas PUPR", "dlhk": "DLHK", "inspektorat": "Inspektorat"}\n'
                     'MONTHS = ("Jan", "Feb", "Mar")\nNONE = "Tidak diketahui"\nFINE = {"pungli": 1}\n',
                     encoding="utf-8")
    assert copies_in(probe, tmp_path) == ["probe.py:1: categories", "probe.py:2: agencies",
                                          "probe.py:3: months", "probe.py:4: unknown region"]


STATUS_PAIR = re.compile(r"\(\s*[\"'](%s)[\"']\s*," % "|".join(reference.PUBLIC_STATUSES))


def test_templates_take_status_words_and_regions_from_the_reference():
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in sorted(ROOT.glob("services/*/templates/**/*.html"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if STATUS_PAIR.search(line) or reference.UNKNOWN_REGION_NAME in line]
    assert offenders == []


def test_console_and_open311_show_the_reference_words():
    assert present.category("pungli") == open311.SERVICE_NAMES["pungli"][0] == "Pungutan liar"
    assert present.region("5202") == "Lombok Tengah" and present.region("5271") == "Kota Mataram"
    assert present.region(None) == present.region("9999") == reference.UNKNOWN_REGION_NAME
    assert present.wita("2025-01-12T06:30:00Z") == "12 Jan 2025, 14.30 WITA"
    assert present.INBOX_STATUS_FILTERS == (("disetujui", "Disetujui"), ("diproses", "Diproses"),
                                            ("ditolak", "Ditolak"), ("selesai", "Selesai"))
    assert [service["service_name"] for service in open311.services()] == list(reference.CATEGORY_TITLES.values())
