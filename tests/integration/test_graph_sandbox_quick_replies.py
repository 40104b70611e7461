"""The sandbox takes Messenger quick replies exactly as Meta's Send API reference has them
(``message.quick_replies``: at most 13; ``content_type`` text / user_phone_number / user_email;
a text one with a non-empty ``title`` of at most 20 characters and a ``payload`` of at most 1000)
and refuses anything else with Meta's code 100 in Meta's error shape, recording what was sent.
A real HTTP server on a free port (issue 19)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from sandbox import start_sandbox

PAGE, TOKEN, PSID = "104857600123457", "EAAG-page-token-quick", "6543210987654322"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def sb():
    server = start_sandbox(pages={PAGE: TOKEN}, env={"FACEBOOK_APP_SECRET": "sandbox-app-secret"})
    for path, payload in (("clock", {"now": iso(T0)}),
                          ("conversations", {"page_id": PAGE, "psid": PSID, "last_message_at": iso(T0)})):
        requests.post(f"{server.url}/_sandbox/{path}", json=payload, timeout=5).raise_for_status()
    yield server
    server.stop()


def send(sb, quick_replies):
    return requests.post(f"{sb.url}/v23.0/{PAGE}/messages", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                               "message": {"text": "Apakah sudah selesai?", "quick_replies": quick_replies}})


def text_reply(title="Sudah", payload="NTBCARE_DONE:x:YES", **more):
    return {"content_type": "text", "title": title, "payload": payload, **more}


def test_quick_replies_within_meta_s_limits_are_accepted_and_recorded(sb):
    replies = [text_reply(str(n), f"NTBCARE_RATE:x:{n}") for n in range(1, 13)] + [
        {"content_type": "user_email"}]
    answer = send(sb, replies)
    assert answer.status_code == 200 and answer.json()["recipient_id"] == PSID
    assert send(sb, [text_reply("x" * 20, "p" * 1000)]).status_code == 200
    assert send(sb, [text_reply("Pilih", "", image_url="https://example.org/i.png")]).status_code == 200
    assert send(sb, [text_reply("Lima", 5)]).status_code == 200          # a number is a payload too
    calls = requests.get(f"{sb.url}/_sandbox/calls", params={"status": 200}, timeout=5).json()["calls"]
    assert calls[-4]["quick_replies"] == replies


@pytest.mark.parametrize("quick_replies, says", [
    ([text_reply(str(n)) for n in range(14)], "at most 13"),
    ([text_reply("x" * 21)], "[title] must be at most 20"),
    ([text_reply("")], "[title] is required"),
    ([text_reply("Ok", "p" * 1001)], "[payload] must be at most 1000"),
    ([text_reply("Ok", "")], "may be empty only with an image_url"),
    ([{"content_type": "text", "title": "Ok"}], "[payload] is required"),
    ([{"content_type": "location", "title": "Lokasi", "payload": "L"}], "[content_type] must be one of"),
    ([], "non-empty array"),
    ("Sudah", "non-empty array"),
    (["Sudah"], "must be an object"),
])
def test_what_meta_refuses_is_refused_with_code_100_in_meta_s_shape(sb, quick_replies, says):
    answer = send(sb, quick_replies)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == 100 and error["type"] and error["fbtrace_id"] and says in error["message"]
