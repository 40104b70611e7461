"""Headless Chromium for browser tests: Debian's ``/usr/bin/chromium`` driven by selenium through
``/usr/bin/chromedriver`` (``scripts/ensure-infra.sh browser`` installs both). Each driver gets a
fresh profile directory, so no cookie or cache leaks between tests."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run")


def require_chromium() -> None:
    """Skip (with the command that fixes it) when chromium or chromedriver is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run scripts/ensure-infra.sh browser")


@contextmanager
def headless_chromium(window_size: tuple[int, int] = (1280, 900), page_load_timeout: float = 30):
    """A selenium Chrome driver on headless Chromium with its own throw-away profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    profile = tempfile.mkdtemp(prefix="ntbcare-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(page_load_timeout)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
