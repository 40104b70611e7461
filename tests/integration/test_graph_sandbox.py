"""The Graph API sandbox and the real GraphClient, over real HTTP on a free local port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from sandbox import start_sandbox
from sandbox.graph_sandbox import commenter_psid
from services.notification.adapters.graph_client import (
    INVALID_TOKEN,
    OUTSIDE_WINDOW,
    PERMANENT,
    RATE_LIMITED,
    TEMPORARY,
    GraphApiError,
    GraphClient,
    classify_error,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = "104857600123456"
TOKEN = "EAAG-page-token-ntb"
OTHER_PAGE = "209715200654321"
OTHER_TOKEN = "EAAG-governor-token"
PSID = "6543210987654321"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def server():
    srv = start_sandbox(pages={PAGE: TOKEN, OTHER_PAGE: OTHER_TOKEN}, env={})
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(server):
    requests.post(f"{server.url}/_sandbox/reset", timeout=5).raise_for_status()
    # Meta answers only people who wrote to the Page: PSID wrote to both Pages just now.
    for page in (PAGE, OTHER_PAGE):
        requests.post(f"{server.url}/_sandbox/conversations", json={"page_id": page, "psid": PSID},
                      timeout=5).raise_for_status()
    yield server
    requests.post(f"{server.url}/_sandbox/reset", timeout=5)


@pytest.fixture
def client(sandbox):
    c = GraphClient(sandbox.url, timeout=5.0)
    yield c
    c.close()


def control(sandbox, path, payload=None, method="POST"):
    resp = requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=payload, timeout=5)
    resp.raise_for_status()
    return resp.json()


def calls(sandbox, **filters):
    resp = requests.get(f"{sandbox.url}/_sandbox/calls", params=filters, timeout=5)
    resp.raise_for_status()
    return resp.json()


def send(client, text="Aduan Anda sudah diteruskan ke Dinas PUPR.", **kw):
    kw.setdefault("recipient", {"id": PSID})
    return client.send_message(PAGE, kw.pop("token", TOKEN), kw.pop("recipient"), text, **kw)


def test_messenger_send_is_delivered_and_recorded(sandbox, client):
    result = send(client, text="Terima kasih, aduan NTB-7KQ2 diterima.")
    assert result.recipient_id == PSID
    assert result.message_id.startswith("m_")

    recorded = calls(sandbox)["calls"]
    assert len(recorded) == 1
    call = recorded[0]
    assert call["method"] == "POST"
    assert call["path"] == f"/v23.0/{PAGE}/messages"
    assert call["page_id"] == PAGE
    assert call["kind"] == "messenger"
    assert call["recipient"] == {"id": PSID}
    assert call["comment_id"] is None
    assert call["messaging_type"] == "RESPONSE"
    assert call["tag"] is None
    assert call["text"] == "Terima kasih, aduan NTB-7KQ2 diterima."
    assert call["token_ok"] is True
    assert call["status"] == 200
    assert call["response"] == {"recipient_id": PSID, "message_id": result.message_id}
    datetime.fromisoformat(call["at"].replace("Z", "+00:00"))
    assert isinstance(call["seq"], int)


def test_calls_filters(sandbox, client):
    send(client)
    with pytest.raises(GraphApiError):
        send(client, messaging_type="BROADCAST")
    client.reply_to_comment("111_222", TOKEN, "Sudah kami teruskan.")
    first_seq = calls(sandbox)["calls"][0]["seq"]
    assert [c["status"] for c in calls(sandbox, status=200)["calls"]] == [200, 200]
    assert [c["kind"] for c in calls(sandbox, kind="comment_reply")["calls"]] == ["comment_reply"]
    assert len(calls(sandbox, page_id=PAGE)["calls"]) == 3
    assert len(calls(sandbox, page_id=OTHER_PAGE)["calls"]) == 0
    assert len(calls(sandbox, since_seq=first_seq)["calls"]) == 2
    every = [c["seq"] for c in calls(sandbox)["calls"]]
    assert [c["seq"] for c in calls(sandbox, since_seq=0)["calls"]] == every   # oldest first
    assert [c["seq"] for c in calls(sandbox, since_seq=first_seq)["calls"]] == every[1:]
    assert calls(sandbox, since_seq=every[-1])["calls"] == []
    assert [c["kind"] for c in calls(sandbox, since_seq=first_seq, status=200)["calls"]] == ["comment_reply"]


def test_private_reply_returns_psid_and_only_once(sandbox, client):
    comment_id = "305419896_1122334455"
    first = client.send_message(PAGE, TOKEN, {"comment_id": comment_id}, "Kami hubungi via DM.")
    assert first.recipient_id == commenter_psid(comment_id)
    assert first.message_id.startswith("m_")

    with pytest.raises(GraphApiError) as exc:
        client.send_message(PAGE, TOKEN, {"comment_id": comment_id}, "Sekali lagi.")
    assert exc.value.code == 10900
    assert exc.value.http_status == 400  # what the platform makes of it is notification's table

    # A commenter registered through the control API gets that PSID back.
    control(sandbox, "comments", {"comment_id": "99_88", "psid": "5550001112223334",
                                  "created_time": iso(datetime.now(timezone.utc))})
    assert client.send_message(PAGE, TOKEN, {"comment_id": "99_88"}, "Halo").recipient_id \
        == "5550001112223334"

    private = calls(sandbox, kind="private_reply")["calls"]
    assert [c["status"] for c in private] == [200, 400, 200]
    assert private[0]["comment_id"] == comment_id
    assert private[0]["recipient"] == {"comment_id": comment_id}


def test_public_comment_reply(sandbox, client):
    result = client.reply_to_comment("777_888", TOKEN, "Aduan diteruskan ke DLHK.")
    assert result.comment_id.startswith("777_888_")
    call = calls(sandbox, kind="comment_reply")["calls"][0]
    assert call["path"] == "/v23.0/777_888/comments"
    assert call["comment_id"] == "777_888"
    assert call["page_id"] == PAGE
    assert call["text"] == "Aduan diteruskan ke DLHK."
    assert call["response"] == {"id": result.comment_id}


@pytest.mark.parametrize("kwargs", [
    {"text": "x" * 2000},
    {"text": "é" * 2500},
    {"text": ""},
    {"messaging_type": "MESSAGE_TAG"},
    {"messaging_type": "MESSAGE_TAG", "tag": "PAYMENT_UPDATE"},
    {"messaging_type": "BROADCAST"},
    {"recipient": {"id": PSID, "comment_id": "1_2"}},
    {"recipient": {}},
], ids=["2000-chars", "2500-chars", "empty", "tag-missing", "tag-unknown", "bad-type",
        "two-recipients", "no-recipient"])
def test_validation_errors_are_permanent(sandbox, client, kwargs):
    with pytest.raises(GraphApiError) as exc:
        send(client, **kwargs)
    err = exc.value
    assert (err.http_status, err.code, err.kind) == (400, 100, PERMANENT)
    assert err.message and "(#100)" in err.message
    body = calls(sandbox)["calls"][-1]["response"]["error"]
    assert body["type"] == "OAuthException" and body["code"] == 100 and body["fbtrace_id"]


def test_text_just_under_limit_is_accepted(client):
    assert send(client, text="y" * 1999).message_id


def test_form_encoded_send_with_query_token_and_me_path(sandbox):
    resp = requests.post(
        f"{sandbox.url}/v23.0/me/messages", params={"access_token": OTHER_TOKEN},
        data={"recipient": json.dumps({"id": PSID}), "messaging_type": "UPDATE",
              "message": json.dumps({"text": "Status: diproses"})}, timeout=5)
    assert resp.status_code == 200, resp.text
    assert resp.json()["recipient_id"] == PSID
    call = calls(sandbox)["calls"][-1]
    assert call["page_id"] == OTHER_PAGE and call["messaging_type"] == "UPDATE"

    # Unversioned paths are Graph's default version.
    resp = requests.post(f"{sandbox.url}/{PAGE}/messages",
                         headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                               "message": {"text": "ok"}}, timeout=5)
    assert resp.status_code == 200


@pytest.mark.parametrize("code,subcode,http_status,kind", [
    (1200, None, 400, TEMPORARY),
    (2, None, 400, TEMPORARY),
    (4, None, 400, RATE_LIMITED),
    (613, None, 400, RATE_LIMITED),
    (100, 2018022, 400, RATE_LIMITED),
    (10, 2018278, 400, OUTSIDE_WINDOW),
    (551, None, 400, PERMANENT),
    (190, None, 400, INVALID_TOKEN),
    (100, None, 400, PERMANENT),
    (None, None, 503, TEMPORARY),
], ids=["1200", "2", "4", "613", "100/2018022", "10/2018278", "551", "190", "100", "http503"])
def test_injected_errors_are_classified(sandbox, client, code, subcode, http_status, kind):
    control(sandbox, "faults", {"code": code, "subcode": subcode, "http_status": http_status,
                                "times": 1})
    with pytest.raises(GraphApiError) as exc:
        send(client)
    err = exc.value
    assert (err.code, err.subcode, err.http_status, err.kind) == (code, subcode, http_status,
                                                                    kind)
    assert classify_error(http_status, code, subcode) == kind
    assert TOKEN not in str(err) and "Dinas PUPR" not in str(err)
    # times=1: the next call goes through.
    assert send(client).message_id
    statuses = [c["status"] for c in calls(sandbox)["calls"]]
    assert statuses == [http_status, 200]


def test_injected_5xx_bodies_and_filters(sandbox, client):
    control(sandbox, "faults", {"http_status": 500, "body": "empty", "times": 1,
                                "kind": "comment_reply"})
    control(sandbox, "faults", {"code": 613, "times": 1, "page_id": OTHER_PAGE})
    # Neither fault matches a Messenger send on PAGE.
    assert send(client).message_id
    with pytest.raises(GraphApiError) as exc:
        client.reply_to_comment("1_2", TOKEN, "hai")
    assert (exc.value.http_status, exc.value.code, exc.value.kind) == (500, None, TEMPORARY)
    with pytest.raises(GraphApiError) as exc:
        client.send_message(OTHER_PAGE, OTHER_TOKEN, {"id": PSID}, "hai")
    assert exc.value.kind == RATE_LIMITED

    control(sandbox, "faults", {"http_status": 502, "times": 1})
    resp = requests.post(f"{sandbox.url}/v23.0/{PAGE}/messages", json={}, timeout=5)
    assert resp.status_code == 502 and resp.headers["Content-Type"].startswith("text/html")


def test_rate_injection_fails_about_that_fraction(sandbox, client):
    control(sandbox, "faults", {"code": 1200, "rate": 0.3})
    failures = 0
    for _ in range(200):
        try:
            send(client)
        except GraphApiError as err:
            assert err.kind == TEMPORARY
            failures += 1
    assert 40 <= failures <= 80, failures
    control(sandbox, "faults", method="DELETE")
    assert send(client).message_id


def test_wrong_token_revoke_and_restore(sandbox, client):
    with pytest.raises(GraphApiError) as exc:
        send(client, token="not-the-token")
    assert (exc.value.code, exc.value.kind) == (190, INVALID_TOKEN)
    # A Page's token does not work for another Page.
    with pytest.raises(GraphApiError) as exc:
        send(client, token=OTHER_TOKEN)
    assert exc.value.kind == INVALID_TOKEN
    assert calls(sandbox)["calls"][-1]["token_ok"] is False

    control(sandbox, "revoke", {"page_id": PAGE})
    with pytest.raises(GraphApiError) as exc:
        send(client)
    assert exc.value.kind == INVALID_TOKEN
    with pytest.raises(GraphApiError) as exc:
        client.reply_to_comment("5_6", TOKEN, "hai")
    assert exc.value.kind == INVALID_TOKEN
    # Only that Page is affected.
    assert client.send_message(OTHER_PAGE, OTHER_TOKEN, {"id": PSID}, "hai").message_id

    control(sandbox, "restore", {"page_id": PAGE})
    assert send(client).message_id


def test_missing_token(sandbox):
    resp = requests.post(f"{sandbox.url}/v23.0/{PAGE}/messages",
                         json={"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                               "message": {"text": "hai"}}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 190
    assert resp.json()["error"]["type"] == "OAuthException"


@pytest.mark.parametrize("elapsed,messaging_type,tag,ok", [
    (timedelta(hours=23, minutes=59), "RESPONSE", None, True),
    (timedelta(hours=24, minutes=1), "RESPONSE", None, False),
    (timedelta(hours=24, minutes=1), "UPDATE", None, False),
    (timedelta(days=6), "MESSAGE_TAG", "HUMAN_AGENT", True),
    (timedelta(days=7, minutes=1), "MESSAGE_TAG", "HUMAN_AGENT", False),
], ids=["response-23h59", "response-24h01", "update-24h01", "human-agent-6d",
        "human-agent-7d1m"])
def test_messaging_windows(sandbox, client, elapsed, messaging_type, tag, ok):
    control(sandbox, "settings", {"human_agent_approved": True})
    control(sandbox, "conversations", {"page_id": PAGE, "psid": PSID,
                                       "last_message_at": iso(T0)})
    control(sandbox, "clock", {"now": iso(T0 + elapsed)})
    if ok:
        assert send(client, messaging_type=messaging_type, tag=tag).message_id
    else:
        with pytest.raises(GraphApiError) as exc:
            send(client, messaging_type=messaging_type, tag=tag)
        assert (exc.value.code, exc.value.subcode, exc.value.kind) == (10, 2018278,
                                                                       OUTSIDE_WINDOW)
    # A PSID that never wrote to the Page is outside every window.
    with pytest.raises(GraphApiError) as exc:
        client.send_message(PAGE, TOKEN, {"id": "1234567890123456"}, "hai")
    assert (exc.value.code, exc.value.subcode) == (10, 2018278)


def test_private_reply_window_and_clock_reset(sandbox, client):
    control(sandbox, "comments", {"comment_id": "40_41", "created_time": iso(T0)})
    control(sandbox, "comments", {"comment_id": "40_42", "created_time": iso(T0)})
    control(sandbox, "clock", {"now": iso(T0 + timedelta(days=7, minutes=1))})
    with pytest.raises(GraphApiError) as exc:
        client.send_message(PAGE, TOKEN, {"comment_id": "40_41"}, "hai")
    assert (exc.value.subcode, exc.value.kind) == (2018278, OUTSIDE_WINDOW)
    control(sandbox, "clock", {"now": iso(T0 + timedelta(days=6, hours=23))})
    assert client.send_message(PAGE, TOKEN, {"comment_id": "40_42"}, "hai").message_id
    now = control(sandbox, "clock", {"now": None})
    assert now["overridden"] is False


def test_delay_makes_a_short_timeout_temporary(sandbox):
    control(sandbox, "faults", {"delay_seconds": 1.5, "times": 1})
    impatient = GraphClient(sandbox.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(GraphApiError) as exc:
        send(impatient)
    assert time.monotonic() - started < 1.4
    assert (exc.value.kind, exc.value.http_status, exc.value.code) == (TEMPORARY, None, None)
    impatient.close()


def test_connection_refused_is_temporary():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GraphApiError) as exc:
        send(GraphClient(f"http://127.0.0.1:{port}", timeout=2))
    assert exc.value.kind == TEMPORARY


def test_unsupported_path(sandbox):
    resp = requests.post(f"{sandbox.url}/v23.0/{PAGE}/feed", json={"message": "x"},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 100
    assert calls(sandbox)["calls"][-1]["kind"] == "unknown"


def test_record_file_and_dev_mode_any_token(tmp_path):
    record = tmp_path / "graph.jsonl"
    srv = start_sandbox(env={"GRAPH_SANDBOX_RECORD_FILE": str(record)})
    try:
        requests.post(f"{srv.url}/_sandbox/conversations", json={"psid": PSID},
                      timeout=5).raise_for_status()
        c = GraphClient(srv.url)
        # No Page registered: any non-empty token is accepted (development convenience).
        assert c.send_message("12345", "anything", {"id": PSID}, "hai").message_id
        with pytest.raises(GraphApiError):
            c.send_message("12345", "", {"id": PSID}, "hai")
        c.close()
    finally:
        srv.stop()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["status"] for line in lines] == [200, 400]
    assert lines[0]["page_id"] == "12345" and lines[0]["text"] == "hai"


def test_pages_from_env():
    srv = start_sandbox(env={"FACEBOOK_PAGES": f"{PAGE}:{TOKEN},{OTHER_PAGE}:{OTHER_TOKEN}"})
    try:
        pages = requests.get(f"{srv.url}/_sandbox/pages", timeout=5).json()["pages"]
        assert sorted(p["page_id"] for p in pages) == sorted([PAGE, OTHER_PAGE])
        assert TOKEN not in json.dumps(pages)
        with pytest.raises(GraphApiError) as exc:
            GraphClient(srv.url).send_message(PAGE, "wrong", {"id": PSID}, "hai")
        assert exc.value.kind == INVALID_TOKEN
    finally:
        srv.stop()


def test_python_m_sandbox_serves_health():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACEBOOK_", "GRAPH_SANDBOX_"))}
    env["GRAPH_SANDBOX_ADDRESS"] = f"127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        assert resp.json() == {"status": "ok"}
        requests.post(f"http://127.0.0.1:{port}/_sandbox/conversations",
                      json={"page_id": "42", "psid": PSID}, timeout=5).raise_for_status()
        GraphClient(f"http://127.0.0.1:{port}").send_message("42", "tok-SECRET-42", {"id": PSID},
                                                             "rahasia warga")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "listening on" in out
    graph_lines = [line for line in out.splitlines() if "kind=messenger" in line]
    assert len(graph_lines) == 1 and "status=200" in graph_lines[0]
    assert "rahasia" not in out and PSID not in out and "SECRET" not in out


def test_a_connection_carries_many_calls_as_graph_facebook_com_does(sandbox):
    """Keep-alive: the sender's pooled connection is reused from call to call (werkzeug alone
    answers every call with "Connection: close"), also after an error and after a body the app
    refused without reading it all; and answers without a delayed-ACK stall."""
    import http.client

    host, port = sandbox.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps({"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                       "message": {"text": "Laporan Anda kami terima."}})
    sockets = []
    started = time.monotonic()
    for payload in (body, "{not json", body) + (body,) * 17:
        connection.request("POST", f"/v21.0/{PAGE}/messages", body=payload,
                           headers={"Authorization": f"Bearer {TOKEN}",
                                    "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.getheader("Connection") != "close"
        assert not response.will_close
        sockets.append(connection.sock)
    assert all(sock is sockets[0] for sock in sockets)
    # A kept connection must not wait for the client's delayed ACK between an answer's headers
    # and its body (Nagle's algorithm): that cost 40 ms a call, 0.8 s for these twenty.
    assert time.monotonic() - started < 0.5
    assert len(sandbox.state.get_calls()) >= 2   # the calls themselves were answered by the app
    connection.close()
