"""The desk and agency console in real headless Chromium, against intake, routing and
notification running as separate processes with the Graph API sandbox: the desk signs in, opens
a complaint from its triage queue, reads the reporter's contact (with a reason) and routes it;
the agency officer signs in, sees only their complaints, acknowledges, previews and sends the
answer, which reaches the citizen through the sandbox; to another agency's officer that complaint
does not exist (404, as an unknown one); a form posted without its CSRF token is refused. Saves
the screenshots in docs/img."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from sandbox.control import citizen_wrote
from shared.core.events import isoformat_utc, utc_now
from tests.support.browser import headless_chromium, require_chromium
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "img"
DESK = "diskominfotik"
TOKENS = {DESK: "desk-console-token-1", "dpupr": "dpupr-console-token-1",
          "pemkab-loteng": "loteng-console-token-1"}
REPORTER = "Siti Aminah Pelapor"
ANSWER = "Kami sudah menghubungi pihak sekolah; ijazah dapat diambil mulai Senin di ruang tata usaha."


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    require_chromium()
    running = Platform(amqp_uri, tmp_path_factory.mktemp("console"),
                       services=("intake", "routing", "notification"), extra_env={
                           "ROUTING_TOKENS": ",".join(f"{c}:{t}" for c, t in TOKENS.items()),
                           "ROUTING_CONSOLE_SECRET": "console-test-secret-" + "x" * 20,
                       }).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def browser(platform):
    with headless_chromium() as driver:
        # A form's submit may return before the next page is there: look for elements that
        # only the next page has, for up to 10 s.
        driver.implicitly_wait(10)
        yield driver


def file_complaint(platform, text, psid=None, category=None, region=None, reporter=None) -> dict:
    payload = {"text": text, "channel": "api"}
    if category:
        payload["category"] = category
    if region:
        payload["location"] = {"region_code": region}
    if reporter:
        payload["reporter"] = reporter
    if psid:
        payload["reply_to"] = {"page_id": DEV_PAGE_ID, "psid": psid}
        payload["last_citizen_message_at"] = isoformat_utc(utc_now())
        citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid)  # the sandbox, like Meta, knows who wrote
    with platform.rpc() as rpc:
        return rpc.intake.file_complaint(payload)


def routed(platform, complaint_id) -> dict:
    def ready():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(complaint_id)
        return complaint if complaint["decided_by"] else None
    return wait_for(ready, 30, message=f"routing of {complaint_id}")


def sign_in(driver, platform, agency, name):
    driver.delete_all_cookies()
    driver.get(f"{platform.url('routing')}/console/login")
    by_id(driver, "nama").send_keys(name)
    by_id(driver, "token").send_keys(TOKENS[agency])
    by_id(driver, "masuk").click()
    assert name in by_id(driver, "petugas").text


def by_id(driver, element_id):
    """The element, or a failure that shows what the page said instead."""
    found = driver.find_elements(By.ID, element_id)
    assert found, f"no #{element_id} on {driver.current_url}:\n{driver.find_element(By.TAG_NAME, 'main').text[:2000]}"
    return found[0]


def session_cookie(driver) -> dict:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


def test_desk_routes_and_the_agency_answers_through_the_console(platform, browser):
    base = platform.url("routing")
    psid = str(7_000_000_000_000_000 + uuid.uuid4().int % 10**15)  # Meta-shaped: digits
    filed = file_complaint(platform, "Ijazah anak saya ditahan sekolah karena belum bayar uang gedung, "
                                     "mohon dibantu.", psid=psid, category="lainnya",
                           reporter={"name": REPORTER, "phone": "081234567890"})
    others = [file_complaint(platform, text, category=category, region=region) for text, category, region in [
        ("Mohon info cara mengurus surat pindah domisili", "lainnya", None),
        ("Lampu penerangan di taman kota sering mati", "lainnya", "5271"),
        ("Jalan provinsi menuju Sembalun longsor, tidak bisa dilewati", "infrastruktur", "5203"),
    ]]
    complaint = routed(platform, filed["complaint_id"])
    assert complaint["at_desk"], complaint
    for other in others:
        routed(platform, other["complaint_id"])

    # Without a session every console page sends the browser to sign in.
    browser.get(f"{base}/console/antrian")
    assert browser.current_url.endswith("/console/login")

    # --- the desk: queue, complaint page, reporter contact, route ---------------------------
    sign_in(browser, platform, DESK, "Sari Operator")
    assert browser.current_url.endswith("/console/antrian")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-tracking-code="{filed["tracking_code"]}"]')
    assert "Belum ditriase" in row.text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "console-desk-queue.png"))
    row.find_element(By.CSS_SELECTOR, "a.buka").click()
    assert by_id(browser, "kode-aduan").text == filed["tracking_code"]
    assert "uang gedung" in by_id(browser, "teks-aduan").text

    by_id(browser, "alasan-kontak").send_keys("Perlu konfirmasi nama sekolah")
    by_id(browser, "lihat-kontak").click()
    assert REPORTER in by_id(browser, "kontak-pelapor").text

    Select(by_id(browser, "utama")).select_by_value("dpupr")
    by_id(browser, "catatan").send_keys("Dinas menangani sekolah menengah; mohon ditindaklanjuti.")
    by_id(browser, "teruskan").click()
    assert "diteruskan" in by_id(browser, "pesan").text
    with platform.rpc() as rpc:
        after = rpc.routing.get_complaint(filed["complaint_id"])
    assert after["lead_agencies"] == ["dpupr"] and after["decided_by"] == "operator:diskominfotik:Sari Operator"

    # --- the agency: inbox with only its complaints, acknowledge, preview, answer -------------
    sign_in(browser, platform, "dpupr", "Budi Petugas")
    assert browser.current_url.endswith("/console/kotak-masuk")
    inbox = by_id(browser, "kotak-masuk")
    listed = {row.get_attribute("data-tracking-code") for row in inbox.find_elements(By.CSS_SELECTOR, "tbody tr")}
    with platform.rpc() as rpc:
        own = {item["tracking_code"] for item in rpc.routing.complaints_for("dpupr")}
    assert filed["tracking_code"] in listed and listed <= own
    assert not {o["tracking_code"] for o in others[:2]} & listed  # not routed to dpupr
    browser.save_screenshot(str(SCREENSHOTS / "console-agency-inbox.png"))

    inbox.find_element(By.CSS_SELECTOR, f'tr[data-tracking-code="{filed["tracking_code"]}"] a.buka').click()
    assert REPORTER not in browser.page_source and "081234567890" not in browser.page_source
    by_id(browser, "terima").click()
    assert "diterima" in by_id(browser, "pesan").text.lower()

    answer_box = by_id(browser, "jawaban")
    counter_before = by_id(browser, "penghitung").text
    answer_box.send_keys(ANSWER)
    assert by_id(browser, "penghitung").text != counter_before  # the live counter
    by_id(browser, "pratinjau-tombol").click()
    preview = by_id(browser, "pratinjau").text
    assert ANSWER in preview and f"Kode aduan {filed['tracking_code']}" in preview
    by_id(browser, "kirim-jawaban").click()
    assert "Jawaban dicatat" in by_id(browser, "pesan").text

    def answer_delivered():
        return [call for call in platform.sandbox_calls()
                if (call.get("recipient") or {}).get("id") == psid and ANSWER in (call.get("text") or "")]
    calls = wait_for(answer_delivered, 30, message="the answer at the Graph API sandbox")
    assert calls[0]["text"].startswith("Jawaban dari ")

    # --- CSRF: the agency's own session, a form posted without its token ----------------------
    cookies = session_cookie(browser)
    with platform.rpc() as rpc:
        events_before = len(rpc.routing.timeline(filed["complaint_id"]))
    refused = requests.post(f"{base}/console/aduan/{filed['complaint_id']}/jawab", cookies=cookies,
                            data={"jawaban": "Dikirim tanpa token", "aksi": "kirim"},
                            allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and "token keamanan (CSRF)" in refused.text
    with platform.rpc() as rpc:
        assert len(rpc.routing.timeline(filed["complaint_id"])) == events_before

    # --- another agency's officer: that complaint is "not found" (404), as an unknown one -------
    sign_in(browser, platform, "pemkab-loteng", "Lalu Petugas")
    browser.get(f"{base}/console/aduan/{filed['complaint_id']}")
    assert "Tidak ditemukan" in browser.find_element(By.TAG_NAME, "h1").text
    assert ANSWER not in browser.page_source
    forbidden = requests.get(f"{base}/console/aduan/{filed['complaint_id']}",
                             cookies=session_cookie(browser), allow_redirects=False, timeout=10)
    assert forbidden.status_code == 404
