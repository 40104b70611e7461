"""Two replicas of notification (and of intake) against one database, the real broker and the
Graph API sandbox: the Page's send budget (``NOTIFICATION_SEND_RATE``) is one budget for both
notification processes — the sandbox sees the configured rate, not twice it — and the web form's
per-address limit (``INTAKE_WEB_RATE_PER_MINUTE``) is one limit for both intake processes."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from sandbox.control import citizen_wrote
from shared.core.events import parse_iso
from tests.support import facebook
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

RATE = 5            # sends a second for the Page, for both replicas together
COMPLAINTS = 12     # an acknowledgment each (and a routed message each), ≈ 5 s at RATE
WEB_PER_MINUTE = 3


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("replicas"),
                       services=("intake", "routing", "notification"), extra_env={
                           "NOTIFICATION_SEND_RATE": str(RATE),
                           "INTAKE_WEB_RATE_PER_MINUTE": str(WEB_PER_MINUTE),
                           "INTAKE_BUBBLE_SECONDS": "0",
                       }).start_all()
    try:
        running.replica_urls = {service: running.start_replica(service) for service in ("notification", "intake")}
        yield running
    finally:
        running.stop_all()


def sent_by(platform: Platform, name: str) -> int:
    return sum(1 for line in platform.log(name).splitlines()
               if line.startswith("{") and json.loads(line).get("message") == "citizen notified")


def test_two_notification_replicas_spend_one_send_budget(platform):
    before = max([call["seq"] for call in platform.sandbox_calls()] or [0])
    psids = []
    with platform.rpc() as rpc:
        for _ in range(COMPLAINTS):
            psid = facebook.new_psid()
            at = datetime.now(timezone.utc) - timedelta(minutes=1)
            citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid, at)
            rpc.intake.file_complaint({
                "text": "Lampu jalan di depan kantor desa mati sudah seminggu, mohon dibantu.",
                "channel": "api", "reply_to": {"page_id": DEV_PAGE_ID, "psid": psid},
                "last_citizen_message_at": at.isoformat().replace("+00:00", "Z")})
            psids.append(psid)

    def acknowledged():
        calls = [c for c in platform.sandbox_calls(page_id=DEV_PAGE_ID, status=200)
                 if c["seq"] > before and (c.get("recipient") or {}).get("id") in psids
                 and "kode pelacakan" in (c.get("text") or "")]
        return calls if len({c["recipient"]["id"] for c in calls}) == len(psids) else None
    wait_for(acknowledged, 60, message="every acknowledgment")
    time.sleep(1.0)   # let the routed messages that are already due go too

    calls = sorted(parse_iso(c["at"]).timestamp()
                   for c in platform.sandbox_calls(page_id=DEV_PAGE_ID) if c["seq"] > before)
    assert len(calls) >= COMPLAINTS
    # Both replicas sent: without the shared budget each would have had RATE of its own.
    assert sent_by(platform, "notification") > 0 and sent_by(platform, "notification-2") > 0, \
        (sent_by(platform, "notification"), sent_by(platform, "notification-2"))
    # Each send waits for its own slot of the one budget, 1/RATE s apart; it reaches the sandbox
    # after its slot, by up to the time a loaded machine takes to run it (up to a second allowed
    # here). So over the whole run, and over every stretch of at least two seconds, the Page saw
    # at most RATE a second over the stretch plus that second, plus the first call; two budgets
    # (2×RATE, each replica its own) break it on every such stretch.
    span = calls[-1] - calls[0]
    print(f"\n{len(calls)} sends to the Page in {span:.2f} s by two replicas: {(len(calls) - 1) / span:.2f}/s "
          f"(budget {RATE}/s); notification {sent_by(platform, 'notification')}, "
          f"notification-2 {sent_by(platform, 'notification-2')}; gaps "
          f"{[round(b - a, 3) for a, b in zip(calls, calls[1:])]}")
    assert span >= 2.0
    for i, first in enumerate(calls):
        for j in range(i + 1, len(calls)):
            window = calls[j] - first
            if window >= 2.0:
                assert j - i + 1 <= 1 + RATE * (window + 1.0), (j - i + 1, window)


def test_two_intake_replicas_keep_one_web_form_limit(platform):
    """The same address filing through both intake processes in turn: WEB_PER_MINUTE in all."""
    urls = [platform.url("intake"), platform.replica_urls["intake"]]
    answers = []
    for n in range(2 * WEB_PER_MINUTE):
        response = requests.post(f"{urls[n % 2]}/api/complaints", timeout=10, json={
            "text": f"Jembatan gantung di dusun kami putus nomor {n}, anak sekolah harus memutar jauh.",
            "reporter": {"name": "Warga", "phone": "081234567890"}})
        answers.append(response.status_code)
    assert answers == [201] * WEB_PER_MINUTE + [429] * WEB_PER_MINUTE, answers
