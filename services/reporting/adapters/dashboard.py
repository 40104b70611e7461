"""The dashboard page for the desk and the governor's office: renders figures the service has
already computed into HTML with server-side SVG charts (pygal, no JavaScript, nothing from a CDN).
No tracking codes and nothing personal: open complaints are shown by an internal short reference.

``PageCache`` keeps each rendered page for ``REPORTING_DASHBOARD_CACHE_SECONDS``: the page is
public and costs several aggregate queries and charts, so a flood of requests must not mean a
flood of rebuilds."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Callable, Hashable

import pygal
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pygal.style import Style

from shared.core.events import parse_iso
from shared.core.reference import MONTH_NAMES, category_label, short_wita, status_label
from services.reporting.domain.labels import agency_name, region_name
from shared.core.config import ConfigError, env

CACHE_VARIABLE = "REPORTING_DASHBOARD_CACHE_SECONDS"
CACHE_DEFAULT = "30"

HERE = Path(__file__).resolve().parents[1]  # the service folder: templates/, static/
STATIC_DIR = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

_environment = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                           autoescape=select_autoescape(["html"]))

CHART_STYLE = Style(background="transparent", plot_background="transparent",
                    foreground="#1f2933", foreground_strong="#1f2933", foreground_subtle="#9aa5b1",
                    font_family="DejaVu Sans, Arial, sans-serif", label_font_size=12,
                    major_label_font_size=12, value_font_size=11, legend_font_size=12,
                    colors=("#0b6e4f", "#e07a1f", "#2f5d9e", "#b23a48", "#6c757d", "#8e5ea2",
                            "#3c9d9b", "#c9a227"))


def _chart(kind, title: str, **options):
    return kind(js=[], disable_xml_declaration=True, style=CHART_STYLE, title=title,
                width=options.pop("width", 640), height=options.pop("height", 320),
                print_values=options.pop("print_values", True), show_legend=options.pop("show_legend", False),
                **options)


def month_title(month_key: str) -> str:
    year, month = month_key.split("-")
    return f"{MONTH_NAMES[int(month) - 1]} {year}"


def trend_chart(trend: dict) -> str:
    chart = _chart(pygal.StackedBar, "Aduan per bulan menurut kategori", show_legend=True,
                   legend_at_bottom=True, legend_at_bottom_columns=4, print_values=False, height=340,
                   width=1100, truncate_label=-1, truncate_legend=-1)
    months = list(trend)
    chart.x_labels = [month_title(m)[:3] + " " + m[2:4] for m in months]
    categories = list(next(iter(trend.values()))["by_category"]) if trend else []
    for code in categories:
        chart.add(category_label(code), [trend[m]["by_category"].get(code, 0) or None for m in months])
    return chart.render(is_unicode=True)


def breakdown_chart(title: str, counts: dict[str, int]) -> str:
    chart = _chart(pygal.HorizontalBar, title, height=max(180, 60 + 30 * max(1, len(counts))),
                   truncate_label=-1, margin_left=8)
    ordered = sorted(counts.items(), key=lambda item: item[1])
    chart.x_labels = [label for label, _n in ordered]
    chart.add("Aduan", [n for _label, n in ordered])
    return chart.render(is_unicode=True)


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f}%".replace(".", ",")


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} jam".replace(".", ",")


def _wita(moment: str | None) -> str:
    return short_wita(parse_iso(moment)) if moment else "—"


def render(month_key: str, summary: dict, trend: dict, agencies: list[dict], nearing: list[dict],
           narrative: str, now: datetime, agency_names: dict[str, str] | None = None) -> str:
    categories = {category_label(code): n for code, n in summary["by_category"].items()}
    regions = {region_name(code): n for code, n in summary["by_region"].items()}
    agency_rows = [{
        "code": line["agency_code"], "name": agency_name(line["agency_code"], agency_names),
        "assigned": line["assigned"], "acknowledged": line["acknowledged"], "answered": line["answered"],
        "resolved": line["resolved"],
        "first_response": _percent(line["within_first_response_deadline"]),
        "follow_up": _percent(line["within_follow_up_deadline"]),
        "median": _hours(line["median_hours_to_first_answer"]),
        "escalations": line["escalations"], "rejections": line["rejections"],
        "rating": "—" if line.get("average_rating") is None else f"{line['average_rating']:.1f}".replace(".", ","),
        "reopened": line.get("reopened", 0),
    } for line in agencies]
    nearing_rows = [{
        "ref": row["complaint_id"][:8], "category": category_label(row["category"]),
        "region": region_name(row["region_code"]),
        "agencies": ", ".join(agency_name(code, row.get("agency_names") or agency_names)
                              for code in row["lead_agencies"]) or "—",
        "status": status_label(row["public_status"]),
        "deadline": {"triage": "telaah desk", "first_response": "tanggapan pertama",
                     "follow_up": "tindak lanjut"}.get(row["next_due_kind"], row["next_due_kind"]),
        "due": _wita(row["next_due_at"]),
        "hours_left": round((parse_iso(row["next_due_at"]) - now).total_seconds() / 3600, 1),
    } for row in nearing]
    return _environment.get_template("dashboard.html").render(
        month_key=month_key, month_title=month_title(month_key), summary=summary,
        follow_up_rate=_percent(summary["follow_up_rate"] if summary["total"] else None),
        sla=_percent(summary["within_first_response_sla"]),
        rating=("—" if summary["satisfaction"]["average_rating"] is None
                else f"{summary['satisfaction']['average_rating']:.1f}".replace(".", ",")),
        rated_share=_percent(summary["satisfaction"]["rated_share"]),
        reopen_rate=_percent(summary["satisfaction"]["reopen_rate"]),
        median=_hours(summary["median_hours_to_first_response"]),
        trend_svg=trend_chart(trend),
        category_svg=breakdown_chart("Menurut kategori", categories),
        region_svg=breakdown_chart("Menurut kabupaten/kota", regions) if regions else "",
        categories=[(category_label(code), code, n) for code, n in summary["by_category"].items()],
        regions=[(region_name(code), code, n) for code, n in summary["by_region"].items()],
        agencies=agency_rows, nearing=nearing_rows, narrative=narrative,
        generated=short_wita(now) + " WITA")


def static_file(name: str) -> tuple[bytes, str] | None:
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
        return None
    return path.read_bytes(), STATIC_TYPES[path.suffix]


class PageCache:
    """Rendered pages by key (the month asked for), each rebuilt at most every ``seconds``
    (0: never kept). At most ``max_pages`` are kept, the least recently used dropped first.
    One build at a time: requests arriving during a build wait for it and get its page, instead
    of each building the same page again; a fresh page is answered without waiting."""

    def __init__(self, seconds: float, max_pages: int = 36, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.max_pages = max_pages
        self.clock = clock
        self.builds = 0
        self._pages: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()   # a green lock under eventlet

    @classmethod
    def from_env(cls) -> "PageCache":
        raw = env(CACHE_VARIABLE, CACHE_DEFAULT)
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 86400:
            raise ConfigError(f"{CACHE_VARIABLE} must be a number of seconds (0 to rebuild on every "
                              f"request), not {raw!r}")
        return cls(seconds)

    def _fresh(self, key: Hashable) -> str | None:
        kept = self._pages.get(key)
        if kept is None or self.clock() - kept[0] >= self.seconds:
            return None
        self._pages.move_to_end(key)
        return kept[1]

    def get(self, key: Hashable, build: Callable[[], str]) -> str:
        if self.seconds <= 0:
            self.builds += 1
            return build()
        page = self._fresh(key)
        if page is not None:
            return page
        with self._lock:
            page = self._fresh(key)   # built by the request this one waited for
            if page is not None:
                return page
            started = self.clock()
            self.builds += 1
            page = build()
            self._pages[key] = (started, page)
            self._pages.move_to_end(key)
            while len(self._pages) > self.max_pages:
                self._pages.popitem(last=False)
            return page
