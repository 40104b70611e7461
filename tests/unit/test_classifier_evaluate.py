"""`ntbcare classifier evaluate FILE`: scores a labelled JSON-lines file with the real classifier."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.intake.domain.classifier import classify
from services.intake.domain.evaluation import LabelledFileError, evaluate, parse_cases, report

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "classifier_evaluate_sample.jsonl"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", "classifier", "evaluate", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_command_scores_a_labelled_file():
    out = run_cli(str(SAMPLE))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # six complaints: one region miss (no place named), one category miss (sampah is lingkungan_hidup)
    assert "category accuracy:  83.3 % (5/6)" in lines
    assert "region accuracy:    83.3 % (5/6)" in lines
    assert "both right:         66.7 % (4/6)" in lines
    assert lines[0] == "misses (2 of 2 shown):"
    assert any("want lainnya/5271" in line and "got lainnya/none" in line
               and "harga cabai mahal" in line for line in lines)
    assert any("want sosial/5271" in line and "got lingkungan_hidup/5271" in line for line in lines)
    table = {line.split()[0]: line.split() for line in lines if line.startswith(("5202 ", "5271 ", "sosial "))}
    assert table["5202"][3:] == ["1", "1", "100.0", "%", "1", "100.0", "%"]  # 5202 Lombok Tengah ...
    assert table["5271"][3:] == ["2", "1", "50.0", "%", "1", "100.0", "%"]
    assert table["sosial"][1:3] == ["1", "0"]  # labelled 1, correct 0
    # the figures come last, so `| tail` shows them without the misses
    assert lines[-1].startswith("time per complaint: p50 ") and "(CPU p50 " in lines[-1]


def test_misses_can_be_left_out_and_texts_are_cut():
    out = run_cli(str(SAMPLE), "--misses", "0")
    assert out.returncode == 0
    assert "misses" not in out.stdout and "harga cabai" not in out.stdout
    cases = parse_cases('{"text": "' + "jalan rusak parah " * 20 + '", "category": "lainnya", "region": null}')
    lines = report(evaluate(cases, classify), width=40)
    assert any(line.endswith("…") and len(line.split("got ")[1]) < 80 for line in lines if "want" in line)


@pytest.mark.parametrize("content, message", [
    ('{"text": "x", "category": "jalan", "region": null}', "category 'jalan'"),
    ('{"text": "x", "category": "lainnya", "region": "5301"}', "region '5301'"),
    ("not json", "line 1: not JSON"),
])
def test_a_bad_file_is_refused_with_the_line(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content + "\n", encoding="utf-8")
    out = run_cli(str(bad)) if message == "line 1: not JSON" else None
    if out is not None:
        assert out.returncode == 2 and message in out.stderr
    with pytest.raises(LabelledFileError, match=message.replace("'", ".")):
        parse_cases(content)


def test_the_tuning_yaml_is_read_too():
    cases = parse_cases((ROOT / "tests" / "data" / "labelled_complaints.yaml").read_text(encoding="utf-8"))
    assert len(cases) >= 260 and cases[0].region == "5203"
