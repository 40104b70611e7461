"""The dashboard in real headless Chromium (Debian's chromium + chromedriver, driven by selenium):
it loads with nothing from outside, shows the right numbers for a seeded history, and a
screenshot is saved to docs/img/dashboard.png."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.support.platform import Platform, wait_for
from tests.support.reporting_seed import Seeder

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
NOVEMBER = [("koperasi_umkm", "diskop-ukm", True, True), ("koperasi_umkm", "diskop-ukm", True, True),
            ("koperasi_umkm", "diskop-ukm", True, False), ("koperasi_umkm", "diskop-ukm", True, False),
            ("lingkungan_hidup", "dlhk", True, True), ("lingkungan_hidup", "dlhk", True, False),
            ("lingkungan_hidup", "dlhk", False, False), ("infrastruktur", "dpupr", True, True),
            ("pungli", "polda-ntb", True, True), ("sosial", "dinsos", True, True),
            ("kesehatan", "dikes", True, False)]
REGIONS = ["5271", "5201", "5202", "5203", "5204", "5206", "5271", "5202", "5271", "5208", None]


def seed(data_dir: Path) -> None:
    seeder = Seeder(data_dir)
    for index, ((category, agency, answered, resolved), region) in enumerate(zip(NOVEMBER, REGIONS)):
        filed_at = datetime(2020, 11, 2 + 2 * index, 1 + index, 15, tzinfo=timezone.utc)
        c = seeder.filed(filed_at, category, region, index=index)
        seeder.routed(c, filed_at + timedelta(hours=2), agency)
        if answered:
            seeder.acknowledged(c, filed_at + timedelta(hours=3 + index), agency)
            seeder.responded(c, filed_at + timedelta(hours=30 + index), agency, resolved=resolved)
    # The months before, for the trend.
    seeder.history(60, datetime(2020, 5, 1, tzinfo=timezone.utc), months=6, seed=11)
    # Open complaints whose first-response deadline is near (in the current month).
    now = datetime.now(timezone.utc)
    for index, hours_left in enumerate((-3, 2, 7)):
        c = seeder.filed(now - timedelta(hours=20), "infrastruktur", "5203", priority="normal", index=500 + index)
        seeder.add("routing", "ComplaintRouted", c["complaint_id"], now - timedelta(hours=10), {
            "lead_agencies": ["pemkab-lotim"], "coordinating_agencies": [], "decided_by": "rule:jalan-kabupaten",
            "reason": "jalan kabupaten", "priority": "normal",
            "due_at": {"first_response": (now + timedelta(hours=hours_left)).isoformat().replace("+00:00", "Z"),
                       "follow_up": (now + timedelta(days=5)).isoformat().replace("+00:00", "Z")}})
    seeder.flush()
    seeder.mark_consumed()
    seeder.dispose()


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("dashboard")
    seed(data_dir)
    running = Platform(amqp_uri, data_dir, with_sandbox=False).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="ntbcare-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
                     "--window-size=1400,2600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_shows_the_seeded_figures(platform, browser):
    import requests

    def caught_up():
        body = requests.get(f"{platform.url('reporting')}/api/reports/monthly/2020/11", timeout=10).json()
        return body["total"] == 11 and body["followed_up"] == 10
    wait_for(caught_up, 60, message="reporting caught up with the seeded history")

    browser.get(f"{platform.url('reporting')}/dashboard?month=2020-11")
    assert "Dasbor" in browser.title
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    assert text("period") == "November 2020"
    assert text("kpi-total") == "11" and text("kpi-followed-up") == "10" and text("kpi-resolved") == "6"
    assert text("kpi-follow-up-rate") == "91%"
    counts = {row.get_attribute("data-category"): row.find_element(By.CSS_SELECTOR, "td.n").text
              for row in browser.find_elements(By.CSS_SELECTOR, "#by-category tr[data-category]")}
    assert counts == {"koperasi_umkm": "4", "lingkungan_hidup": "3", "infrastruktur": "1", "pungli": "1",
                      "pelayanan_umum": "0", "sosial": "1", "kesehatan": "1", "lainnya": "0"}
    agencies = {row.get_attribute("data-agency"): (row.find_element(By.CSS_SELECTOR, "td.assigned").text,
                                                   row.find_element(By.CSS_SELECTOR, "td.answered").text)
                for row in browser.find_elements(By.CSS_SELECTOR, "#agencies tr[data-agency]")}
    assert agencies["diskop-ukm"] == ("4", "4") and agencies["dlhk"] == ("3", "2")
    nearing = browser.find_elements(By.CSS_SELECTOR, "#nearing tbody tr")
    assert len(nearing) == 3 and len(browser.find_elements(By.CSS_SELECTOR, "#nearing tr.late")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.chart svg")) >= 1
    # Every resource came from reporting itself (no CDN).
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(platform.url("reporting")) for name in resources)
    assert "Pelapor" not in browser.page_source

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(height, 900), 4000))
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000
