"""Score the classifier on labelled complaints: what ``ntbcare classifier evaluate FILE`` prints.

Pure domain code. A labelled file is JSON lines, one ``{"text", "category", "region"}`` per line
(``region`` a BPS kabupaten/kota code such as "5271", or null when the text names no place);
the tuning set's YAML form (``complaints:`` with ``region_code``) is read too. The report puts
the misses first and the accuracy figures last, so ``| tail`` shows the figures alone.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml

from services.intake.domain.classifier import CATEGORIES, REGIONS, Classification


class LabelledFileError(ValueError):
    """A line of a labelled file is not a labelled complaint."""


@dataclass(frozen=True)
class Case:
    text: str
    category: str
    region: str | None


@dataclass
class Miss:
    case: Case
    got: Classification


@dataclass
class Evaluation:
    n: int = 0
    category_ok: int = 0
    region_ok: int = 0
    both_ok: int = 0
    by_category: dict[str, Counter[str]] = field(default_factory=dict)  # labelled, ok, predicted
    by_region: dict[str, Counter[str]] = field(default_factory=dict)
    misses: list[Miss] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this thread's CPU: no other process's load


def _case(item: Any, where: str) -> Case:
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise LabelledFileError(f"{where}: needs an object with a text")
    category = item.get("category")
    if category not in CATEGORIES:
        raise LabelledFileError(f"{where}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    region = item.get("region", item.get("region_code"))
    region = None if region in (None, "") else str(region).replace(".", "").strip()  # "52.71" too
    if region is not None and region not in REGIONS:
        raise LabelledFileError(f"{where}: region {region!r} is not a BPS code of NTB "
                                f"({', '.join(REGIONS)}) nor null")
    return Case(item["text"], category, region)


def parse_cases(content: str, name: str = "file") -> list[Case]:
    """JSON lines (blank lines and lines starting with # skipped), or the tuning set's YAML."""
    stripped = content.lstrip()
    if stripped.startswith("complaints:") or "\ncomplaints:" in content:
        data = yaml.safe_load(content)
        return [_case(item, f"{name} item {i}") for i, item in enumerate(data["complaints"], 1)]
    cases = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise LabelledFileError(f"{name} line {number}: not JSON ({error.msg})") from None
        cases.append(_case(item, f"{name} line {number}"))
    return cases


def evaluate(cases: Iterable[Case], classify: Callable[[str], Classification]) -> Evaluation:
    ev = Evaluation()
    ev.by_category = {c: Counter() for c in CATEGORIES}
    ev.by_region = {r: Counter() for r in [*REGIONS, "none"]}
    for case in cases:
        started, cpu = time.perf_counter(), time.thread_time()
        got = classify(case.text)
        ev.seconds.append(time.perf_counter() - started)
        ev.cpu_seconds.append(time.thread_time() - cpu)
        ev.n += 1
        cat_ok = got.category == case.category
        reg_ok = got.region_code == case.region
        ev.category_ok += cat_ok
        ev.region_ok += reg_ok
        ev.both_ok += cat_ok and reg_ok
        ev.by_category[case.category]["labelled"] += 1
        ev.by_category[case.category]["ok"] += cat_ok
        ev.by_category[got.category]["predicted"] += 1
        ev.by_region[case.region or "none"]["labelled"] += 1
        ev.by_region[case.region or "none"]["ok"] += reg_ok
        ev.by_region[got.region_code or "none"]["predicted"] += 1
        if not (cat_ok and reg_ok):
            ev.misses.append(Miss(case, got))
    return ev


def _pct(ok: int, n: int) -> str:
    return f"{100 * ok / n:5.1f} %" if n else "    - "


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0.0


def report(ev: Evaluation, misses: int | None = None, width: int = 100) -> list[str]:
    """The printed report: misses (at most ``misses``; None = all), tables, then the figures."""
    lines: list[str] = []
    shown = ev.misses if misses is None else ev.misses[:max(0, misses)]
    if shown:
        lines.append(f"misses ({len(shown)} of {len(ev.misses)} shown):")
    for miss in shown:
        text = " ".join(miss.case.text.split())
        text = text if len(text) <= width else text[:width - 1] + "…"
        want = f"{miss.case.category}/{miss.case.region or 'none'}"
        got = f"{miss.got.category}/{miss.got.region_code or 'none'}"
        why = "; ".join(miss.got.reasons.get("region", [])[-1:])
        lines.append(f"  want {want:<26} got {got:<26} {text}")
        if why:
            lines.append(f"  {'':<58}region {why}")
    if shown:
        lines.append("")
    lines.append(f"{'category':<18}{'labelled':>9}{'correct':>9}{'recall':>9}{'predicted':>11}{'precision':>11}")
    for cat, c in ev.by_category.items():
        lines.append(f"{cat:<18}{c['labelled']:>9}{c['ok']:>9}{_pct(c['ok'], c['labelled']):>9}"
                     f"{c['predicted']:>11}{_pct(c['ok'], c['predicted']):>11}")
    lines.append("")
    lines.append(f"{'region':<22}{'labelled':>9}{'correct':>9}{'recall':>9}{'predicted':>11}{'precision':>11}")
    for code, c in ev.by_region.items():
        label = f"{code} {REGIONS.get(code, '(no place)')}"[:21]
        lines.append(f"{label:<22}{c['labelled']:>9}{c['ok']:>9}{_pct(c['ok'], c['labelled']):>9}"
                     f"{c['predicted']:>11}{_pct(c['ok'], c['predicted']):>11}")
    lines.append("")
    lines.append(f"complaints:        {ev.n}")
    lines.append(f"category accuracy: {_pct(ev.category_ok, ev.n)} ({ev.category_ok}/{ev.n})")
    lines.append(f"region accuracy:   {_pct(ev.region_ok, ev.n)} ({ev.region_ok}/{ev.n})")
    lines.append(f"both right:        {_pct(ev.both_ok, ev.n)} ({ev.both_ok}/{ev.n})")
    lines.append(f"time per complaint: p50 {_percentile(ev.seconds, 0.5) * 1000:.2f} ms, "
                 f"p99 {_percentile(ev.seconds, 0.99) * 1000:.2f} ms "
                 f"(CPU p50 {_percentile(ev.cpu_seconds, 0.5) * 1000:.2f} ms, "
                 f"p99 {_percentile(ev.cpu_seconds, 0.99) * 1000:.2f} ms)")
    return lines
