"""Evidence that lasts, end to end (intake and routing as processes, real broker, real HTTP): a
citizen's Messenger photo arrives at the signed webhook, intake downloads it from the "CDN" (a tiny
HTTP server of the test, serving links that expire like Meta's) into its media store, announces it
(``EvidenceStored``), and routing lets the assigned agency open it with its token — through the API
and the console — while a request without a token, or with another agency's, is refused. A photo
whose link had already expired is recorded as lost, with the reason, for the agency to see."""
from __future__ import annotations

import re
import uuid

import pytest
import requests

from tests.support import facebook as fb
from tests.support.media_server import JPEG, MediaServer, sha256
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

DESK = "diskominfotik"
TOKENS = {DESK: "desk-evidence-token-1", "dpupr": "dpupr-evidence-token-1",
          "pemkab-loteng": "loteng-evidence-token-1"}


@pytest.fixture(scope="module")
def cdn():
    with MediaServer() as server:
        yield server


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory, cdn):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("evidence"), services=("intake", "routing"),
                       with_sandbox=False, extra_env={
                           "ROUTING_TOKENS": ",".join(f"{code}:{token}" for code, token in TOKENS.items()),
                           "INTAKE_MEDIA_ALLOW_HOSTS": cdn.host,      # the test's CDN listens on 127.0.0.1
                           "INTAKE_MEDIA_POLL_SECONDS": "0.5",
                           "INTAKE_INBOX_RETRY_SECONDS": "1",
                       })
    running.start_all()
    yield running
    running.stop_all()


def api(platform, path: str, agency: str | None = None, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or TOKENS[agency]}"} if (agency or token) else {}
    return requests.get(f"{platform.url('routing')}{path}", headers=headers, timeout=15)


def intake_events(platform, event_type: str, complaint_id: str) -> list[dict]:
    with platform.rpc() as rpc:
        found = rpc.intake.events_since(0, 1000)
    return [e for e in found if e["event_type"] == event_type and e["complaint_id"] == complaint_id]


def test_a_messenger_photo_is_kept_and_opened_only_by_the_assigned_agency(platform, cdn):
    marker = uuid.uuid4().hex[:8]
    photo = cdn.add(f"{marker}_n.jpg", JPEG)
    expired = cdn.add(f"{marker}_old_n.jpg", JPEG[:-4] + b"old!")
    cdn.expire(f"{marker}_old_n.jpg")                               # Meta's 403 for a passed ``oe``
    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.attachment_message(
        DEV_PAGE_ID, fb.new_psid(), [photo, expired], text=f"Jalan provinsi rusak parah di Praya {marker}")))
    assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200

    def filed():
        with platform.rpc() as rpc:
            found = rpc.intake.events_since(0, 1000)
        return next((e for e in found if e["event_type"] == "ComplaintFiled" and marker in e["data"]["text"]), None)
    complaint_id = wait_for(filed, 30, message="the complaint filed from Messenger")["complaint_id"]

    settled = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        intake_events(platform, "EvidenceStored", complaint_id)), 60, message="both downloads settled")
    by_state = {e["data"]["state"]: e["data"] for e in settled}
    digest = sha256(JPEG)
    assert (by_state["stored"]["digest"], by_state["stored"]["content_type"], by_state["stored"]["size"]) == (
        digest, "image/jpeg", len(JPEG))
    assert by_state["lost"]["reason"] == "link expired or removed (HTTP 403)"
    assert cdn.requests(f"{marker}_n.jpg") == 1
    kept = platform.data_dir / "media" / digest[:2] / digest
    assert kept.read_bytes() == JPEG                                 # under NTBCARE_DATA_DIR by default

    def listed():
        answer = api(platform, f"/api/complaints/{complaint_id}/evidence", "dpupr")
        items = answer.json().get("evidence", []) if answer.status_code == 200 else []
        return items if sorted(i["state"] for i in items) == ["lost", "stored"] else None
    items = {i["state"]: i for i in wait_for(listed, 30, message="routing knows the evidence")}
    assert items["stored"]["href"] == f"/api/complaints/{complaint_id}/evidence/{digest}"
    assert items["lost"]["reason"] == "link expired or removed (HTTP 403)"

    cdn.expire(f"{marker}_n.jpg")                                    # Meta's link is gone by now …
    opened = api(platform, items["stored"]["href"], "dpupr")         # … the evidence is not
    assert (opened.status_code, opened.headers["Content-Type"], opened.content) == (200, "image/jpeg", JPEG)
    assert opened.headers["X-Content-Type-Options"] == "nosniff"
    assert cdn.requests(f"{marker}_n.jpg") == 1                      # served from the media store
    assert api(platform, items["stored"]["href"], DESK).content == JPEG

    assert api(platform, items["stored"]["href"]).status_code == 401                    # no token
    assert api(platform, items["stored"]["href"], token="guessed-token").status_code == 401
    assert api(platform, items["stored"]["href"], "pemkab-loteng").status_code == 404   # another agency's
    assert api(platform, f"/api/complaints/{complaint_id}/evidence", "pemkab-loteng").status_code == 404
    assert "_n.jpg" not in api(platform, f"/api/complaints/{complaint_id}/evidence", "dpupr").text

    # The console: the agency signs in with its token and follows the link on the complaint page.
    browser = requests.Session()
    console = platform.url("routing") + "/console"
    form = browser.get(f"{console}/login", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert browser.post(f"{console}/login", data={"csrf_token": csrf, "token": TOKENS["dpupr"], "nama": "Budi"},
                        timeout=10, allow_redirects=False).status_code == 303
    page = browser.get(f"{console}/aduan/{complaint_id}", timeout=10).text
    link = f"/console/aduan/{complaint_id}/bukti/{digest}"
    assert link in page and "_n.jpg" not in page                    # never Meta's link
    assert browser.get(platform.url("routing") + link, timeout=10).content == JPEG
    assert requests.get(platform.url("routing") + link, timeout=10, allow_redirects=False).status_code == 303

    for service in ("intake", "routing"):                            # Meta's links never reach a log
        assert f"{marker}_n.jpg" not in platform.log(service) and "oh=00_" not in platform.log(service)
