"""Evidence from a Page comment and from Instagram Direct reaches the media store, from the webhook
body on: a ``feed`` comment with a photo or a video (Meta's ``photo``/``video`` keys, and the Graph
comment node's ``attachment`` object) and an ``object: instagram`` message with an image are parsed
by the webhook inbox, filed, downloaded from a real HTTP server (a tiny CDN in the test process)
into the content-addressed store, announced (``EvidenceStored``) and read back by the complaint's
id. (Messenger's own evidence: tests/integration/test_evidence_downloads.py.)"""
from __future__ import annotations

import base64
import json
import time

import pytest

from services.intake.adapters import tables
from services.intake.adapters.media_fetch import MediaFetcher
from services.intake.adapters.store import build_store
from services.intake.application.evidence import Evidence
from services.intake.application.inbox import WebhookInbox, WebhookSettings
from services.intake.domain.media import MediaSettings
from tests.support import facebook as fb
from tests.support.media_server import JPEG, MP4, MediaServer, sha256
from tests.support.platform import DEV_PAGE_ID

INSTAGRAM_ACCOUNT = "17841400000000015"


@pytest.fixture
def cdn():
    with MediaServer() as server:
        yield server


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBCARE_ENV", "development")
    built = build_store(f"sqlite:///{tmp_path / 'intake.db'}")
    built.prepare()
    yield built
    built.database.dispose()


def inbox(store) -> WebhookInbox:
    return WebhookInbox(store, WebhookSettings(frozenset({DEV_PAGE_ID}), 0,
                                               instagram_accounts={INSTAGRAM_ACCOUNT: DEV_PAGE_ID}))


def deliver(store, body: dict) -> dict:
    hooks = inbox(store)
    return hooks.process(hooks.store_body(json.dumps(body).encode()))


def evidence(store, tmp_path, cdn) -> Evidence:
    settings = MediaSettings(directory=str(tmp_path / "media"), max_bytes=64 * 1024, max_attempts=3,
                             retry_seconds=0.05, timeout_seconds=5, allow_hosts=frozenset({cdn.host}))
    return Evidence(store, settings, MediaFetcher(settings))


def settle(service: Evidence) -> None:
    for _ in range(20):
        service.run_due()
        if service.pending() == 0:
            return
        time.sleep(0.06)
    raise AssertionError("downloads still pending")


def filed(store) -> list[dict]:
    return [e for e in store.events_since(0, 1000) if e["event_type"] == "ComplaintFiled"]


def media_rows(store) -> list[dict]:
    with store.database.read() as connection:
        return [dict(r) for r in connection.execute(tables.media.select()).mappings()]


def stored(store) -> list[dict]:
    return [e for e in store.events_since(0, 1000) if e["event_type"] == "EvidenceStored"]


def comment_with(**media) -> dict:
    change = fb.comment_change(DEV_PAGE_ID, "Jembatan di Desa Sembalun retak, ini fotonya")
    change["value"].update(media)
    return fb.page_body(fb.changes_entry(DEV_PAGE_ID, change))


@pytest.mark.parametrize("shape", ["photo", "video", "attachment"])
def test_a_comment_s_photo_or_video_is_downloaded_into_the_media_store(store, tmp_path, cdn, shape):
    if shape == "photo":            # the feed webhook's photo comment
        url, body, kind, content_type = cdn.add("komentar_n.jpg", JPEG), JPEG, "image", "image/jpeg"
        media = {"photo": url}
    elif shape == "video":          # a video (or GIF) comment: Meta's ``video`` key
        url, body, kind, content_type = cdn.add("komentar_n.mp4", MP4, content_type="video/mp4"), MP4, "video", \
            "video/mp4"
        media = {"video": url}
    else:                           # the Graph comment node's attachment object
        url, body, kind, content_type = cdn.add("lampiran_n.jpg", JPEG), JPEG, "image", "image/jpeg"
        media = {"attachment": {"type": "photo", "media": {"image": {"src": url, "height": 720, "width": 960}},
                                "target": {"id": "1"}, "url": "https://www.facebook.com/photo.php?fbid=1"}}
    assert deliver(store, comment_with(**media)) == {"filed": 1}

    [complaint] = filed(store)
    assert complaint["data"]["channel"] == "facebook_comment"
    [attachment] = complaint["data"]["attachments"]
    assert (attachment["type"], attachment["url"]) == (kind, url) and attachment["media_id"]
    assert cdn.requests(url.rsplit("/", 1)[1].split("?")[0]) == 0      # nothing fetched inside the filing

    service = evidence(store, tmp_path, cdn)
    settle(service)
    digest = sha256(body)
    [row] = media_rows(store)
    assert (row["state"], row["digest"], row["content_type"], row["complaint_id"]) == (
        "stored", digest, content_type, complaint["complaint_id"])
    assert (tmp_path / "media" / digest[:2] / digest).read_bytes() == body
    [announced] = stored(store)
    assert announced["complaint_id"] == complaint["complaint_id"] and announced["data"]["digest"] == digest
    chunk = service.chunk(complaint["complaint_id"], digest)
    assert base64.b64decode(chunk["data"]) == body


def test_an_instagram_direct_image_is_downloaded_into_the_media_store(store, tmp_path, cdn):
    url = cdn.add("ig_n.jpg", JPEG, content_type="application/octet-stream")
    igsid = fb.new_psid()
    message = {"sender": {"id": igsid}, "recipient": {"id": INSTAGRAM_ACCOUNT}, "timestamp": fb.now_ms(),
               "message": {"mid": fb.new_mid(), "text": "Sampah menumpuk di pantai Senggigi",
                           "attachments": [{"type": "image", "payload": {"url": url}}]}}
    body = {"object": "instagram", "entry": [{"id": INSTAGRAM_ACCOUNT, "time": fb.now_ms(), "messaging": [message]}]}
    assert deliver(store, body) == {"filed": 1}

    [complaint] = filed(store)
    assert complaint["data"]["channel"] == "instagram_direct"
    [attachment] = complaint["data"]["attachments"]
    assert attachment["url"] == url and attachment["media_id"]

    service = evidence(store, tmp_path, cdn)
    settle(service)
    digest = sha256(JPEG)
    [row] = media_rows(store)
    assert (row["state"], row["digest"], row["content_type"], row["complaint_id"]) == (
        "stored", digest, "image/jpeg", complaint["complaint_id"])
    assert (tmp_path / "media" / digest[:2] / digest).read_bytes() == JPEG
    assert cdn.requests("ig_n.jpg") == 1
    assert base64.b64decode(service.chunk(complaint["complaint_id"], digest)["data"]) == JPEG
