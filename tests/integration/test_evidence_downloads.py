"""Intake's media store against a real HTTP server (a tiny CDN in the test process) and a real
database: an attachment filed with a Messenger complaint is downloaded behind the filing, kept under
the SHA-256 of its bytes and announced (``EvidenceStored``); a temporary failure is retried with
backoff; an expired link (403/404/410), content that is not media, a file over the limit, a private
address or exhausted retries leave it *lost* with the reason. No transaction is open while a file is
fetched, and Meta's link never reaches a log line."""
from __future__ import annotations

import base64
import logging
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from shared.core.errors import NotFound, ValidationFailed
from shared.core.events import utc_now
from services.intake.adapters import media as ledger
from services.intake.adapters import tables
from services.intake.adapters.media_fetch import MediaFetcher
from services.intake.adapters.store import build_store
from services.intake.application.complaints import Complaints
from services.intake.application.evidence import Evidence
from services.intake.domain.media import MediaSettings
from tests.support.media_server import HTML, JPEG, MP4, PDF, MediaServer, sha256
from tests.support.platform import DEV_PAGE_ID


@pytest.fixture
def cdn():
    with MediaServer() as server:
        yield server


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBCARE_ENV", "development")   # migrates the new file on prepare()
    built = build_store(f"sqlite:///{tmp_path / 'intake.db'}")
    built.prepare()
    yield built
    built.database.dispose()


def evidence(store, tmp_path, cdn, **overrides) -> Evidence:
    settings = MediaSettings(**{"directory": str(tmp_path / "media"), "max_bytes": 64 * 1024, "max_attempts": 3,
                                "retry_seconds": 0.05, "timeout_seconds": 5,
                                "allow_hosts": frozenset({cdn.host}) if cdn else frozenset(), **overrides})
    return Evidence(store, settings, MediaFetcher(settings))


def file_photo(store, *urls, channel="facebook_messenger") -> dict:
    reply_to = {"page_id": DEV_PAGE_ID, "psid": "7000000000000042"} if channel.startswith("facebook") else None
    payload = {"text": "Jalan provinsi rusak parah di Praya, lihat fotonya", "channel": channel,
               "reply_to": reply_to, "attachments": [{"type": "image", "url": url} for url in urls]}
    return Complaints(store).file(payload)


def log_of(store, event_type=None) -> list[dict]:
    return [e for e in store.events_since(0, 1000) if event_type in (None, e["event_type"])]


def media_rows(store) -> list[dict]:
    with store.database.read() as connection:
        return [dict(r) for r in connection.execute(tables.media.select().order_by(tables.media.c.created_at))
                .mappings()]


def settle_all(service: Evidence, rounds: int = 20) -> None:
    """Run the downloader until nothing is pending (retries wait their short backoff)."""
    for _ in range(rounds):
        service.run_due()
        if service.pending() == 0:
            return
        time.sleep(0.06)
    raise AssertionError("downloads still pending")


def test_a_messenger_photo_is_downloaded_named_by_its_digest_and_announced(store, tmp_path, cdn, caplog):
    caplog.set_level(logging.DEBUG)
    url = cdn.add("foto_n.jpg", JPEG, content_type="application/octet-stream")   # the header decides nothing
    filed = file_photo(store, url)

    [complaint_filed] = log_of(store, "ComplaintFiled")
    [attachment] = complaint_filed["data"]["attachments"]
    [row] = media_rows(store)
    assert attachment == {"type": "image", "url": url, "media_id": row["media_id"]}
    assert (row["state"], row["attempts"], row["complaint_id"]) == ("pending", 0, filed["complaint_id"])
    assert cdn.requests("foto_n.jpg") == 0                        # nothing fetched inside the filing

    service = evidence(store, tmp_path, cdn)
    assert service.run_due() == {"stored": 1}
    digest = sha256(JPEG)
    [row] = media_rows(store)
    assert (row["state"], row["digest"], row["content_type"], row["size"], row["attempts"], row["url"]) == (
        "stored", digest, "image/jpeg", len(JPEG), 1, None)    # the expiring link is not kept
    kept = tmp_path / "media" / digest[:2] / digest
    assert kept.read_bytes() == JPEG
    assert list((tmp_path / "media" / ".staging").iterdir()) == []
    [announced] = log_of(store, "EvidenceStored")
    assert announced["complaint_id"] == filed["complaint_id"]
    assert announced["data"] == {"media_id": row["media_id"], "type": "image", "state": "stored", "digest": digest,
                                 "content_type": "image/jpeg", "size": len(JPEG), "reason": None}

    assert service.run_due() == {}                                  # nothing due any more
    assert cdn.requests("foto_n.jpg") == 1

    chunk = service.chunk(filed["complaint_id"], digest)
    assert (chunk["content_type"], chunk["size"], chunk["offset"], base64.b64decode(chunk["data"])) == (
        "image/jpeg", len(JPEG), 0, JPEG)
    parts, offset = b"", 0
    while offset < len(JPEG):
        piece = base64.b64decode(service.chunk(filed["complaint_id"], digest, offset, 500)["data"])
        parts, offset = parts + piece, offset + len(piece)
    assert parts == JPEG

    assert "foto_n" not in caplog.text and "oh=" not in caplog.text   # Meta's link is never logged


def test_the_same_bytes_are_kept_once_and_belong_to_each_complaint_that_sent_them(store, tmp_path, cdn):
    first = file_photo(store, cdn.add("a_n.jpg", JPEG))
    second = file_photo(store, cdn.add("b_n.jpg", JPEG), cdn.add("c_n.mp4", MP4, content_type="video/mp4"))
    service = evidence(store, tmp_path, cdn)
    assert service.run_due() == {"stored": 3}
    digest = sha256(JPEG)
    assert sorted(p.name for p in (tmp_path / "media").glob("*/*")) == sorted({digest, sha256(MP4)})
    assert base64.b64decode(service.chunk(first["complaint_id"], digest)["data"]) == JPEG
    assert base64.b64decode(service.chunk(second["complaint_id"], sha256(MP4))["data"]) == MP4
    with pytest.raises(NotFound):
        service.chunk(first["complaint_id"], sha256(MP4))           # not this complaint's evidence


def test_a_temporary_failure_is_retried_with_backoff_then_stored(store, tmp_path, cdn):
    url = cdn.add("later_n.jpg", JPEG)
    cdn.fail("later_n.jpg", 2)
    file_photo(store, url)
    service = evidence(store, tmp_path, cdn, retry_seconds=30)
    assert service.run_due() == {"retry": 1}
    [row] = media_rows(store)
    assert (row["state"], row["attempts"], row["reason"]) == ("pending", 1, "the server answered HTTP 503")
    assert service.run_due() == {}                                  # waits its backoff (30 s)
    assert cdn.requests("later_n.jpg") == 1

    def due_now():
        with store.database.transaction() as tx:
            tx.execute(update(tables.media).values(next_attempt_at="2000-01-01T00:00:00.000000Z"))

    due_now()
    assert service.run_due() == {"retry": 1}
    due_now()
    assert service.run_due() == {"stored": 1}
    [row] = media_rows(store)
    assert (row["state"], row["attempts"], row["digest"]) == ("stored", 3, sha256(JPEG))
    assert [e["data"]["state"] for e in log_of(store, "EvidenceStored")] == ["stored"]   # announced once


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_link_is_lost_at_once_with_the_reason(store, tmp_path, cdn, status):
    url = cdn.add("old_n.jpg", JPEG)
    cdn.expire("old_n.jpg", status)
    filed = file_photo(store, url)
    service = evidence(store, tmp_path, cdn)
    assert service.run_due() == {"lost": 1}
    [row] = media_rows(store)
    assert (row["state"], row["attempts"], row["reason"], row["digest"], row["url"]) == (
        "lost", 1, f"link expired or removed (HTTP {status})", None, None)
    [announced] = log_of(store, "EvidenceStored")
    assert (announced["complaint_id"], announced["data"]["state"], announced["data"]["reason"]) == (
        filed["complaint_id"], "lost", f"link expired or removed (HTTP {status})")
    assert service.run_due() == {} and cdn.requests("old_n.jpg") == 1   # never tried again


def test_retries_run_out_and_the_evidence_is_lost_with_the_last_reason(store, tmp_path, cdn):
    url = cdn.add("down_n.jpg", JPEG)
    cdn.fail("down_n.jpg", 100)
    file_photo(store, url)
    settle_all(evidence(store, tmp_path, cdn, max_attempts=3))
    [row] = media_rows(store)
    assert (row["state"], row["attempts"], row["reason"]) == (
        "lost", 3, "gave up after 3 attempts: the server answered HTTP 503")
    assert cdn.requests("down_n.jpg") == 3


def test_a_stalled_download_times_out_and_is_retried(store, tmp_path, cdn):
    url = cdn.add("slow_n.jpg", JPEG, stall_seconds=2.5)
    file_photo(store, url)
    assert evidence(store, tmp_path, cdn, timeout_seconds=1).run_due() == {"retry": 1}
    assert media_rows(store)[0]["reason"] == "timed out"


@pytest.mark.parametrize("body, content_type, max_bytes, reason", [
    (HTML, "image/jpeg", 64 * 1024, "not an image, video, audio or PDF file"),        # a lying header
    (b"", "image/jpeg", 64 * 1024, "the server sent no bytes"),
    (JPEG + b"\x00" * 5000, "image/jpeg", 4096, "larger than the limit of 4096 bytes"),
])
def test_what_is_not_media_or_too_large_is_lost_and_never_kept(store, tmp_path, cdn, body, content_type,
                                                                max_bytes, reason):
    file_photo(store, cdn.add("x_n.jpg", body, content_type=content_type))
    assert evidence(store, tmp_path, cdn, max_bytes=max_bytes).run_due() == {"lost": 1}
    [row] = media_rows(store)
    assert (row["state"], row["reason"]) == ("lost", reason)
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []


def test_private_and_local_addresses_are_refused_unless_allowed_by_name(store, tmp_path, cdn):
    file_photo(store, cdn.add("local_n.jpg", JPEG))
    assert evidence(store, tmp_path, cdn, allow_hosts=frozenset()).run_due() == {"lost": 1}
    [row] = media_rows(store)
    assert (row["state"], row["reason"]) == ("lost", "the link points at a private or local address")
    assert cdn.requests("local_n.jpg") == 0                         # never contacted


def test_redirects_are_followed_and_each_hop_is_checked(store, tmp_path, cdn):
    cdn.add("real_n.pdf", PDF, content_type="application/pdf")
    file_photo(store, cdn.add("hop_n.pdf", b"", redirect_to="/real_n.pdf"))
    assert evidence(store, tmp_path, cdn).run_due() == {"stored": 1}
    assert media_rows(store)[0]["content_type"] == "application/pdf"

    with MediaServer() as elsewhere:                               # 127.0.0.1, another port: not allowed
        elsewhere.add("inside_n.jpg", JPEG)
        file_photo(store, cdn.add("away_n.jpg", b"", redirect_to=elsewhere.url("inside_n.jpg")))
        assert evidence(store, tmp_path, cdn).run_due() == {"lost": 1}
        assert elsewhere.requests("inside_n.jpg") == 0
    assert media_rows(store)[-1]["reason"] == "the link points at a private or local address"


def test_web_and_api_links_are_not_fetched(store, tmp_path, cdn):
    url = cdn.add("web_n.jpg", JPEG)
    Complaints(store).file({"text": "Jalan rusak di Praya, foto terlampir", "channel": "web",
                            "attachments": [{"type": "image", "url": url}]})
    assert media_rows(store) == []
    assert "media_id" not in log_of(store, "ComplaintFiled")[0]["data"]["attachments"][0]


def test_two_downloaders_never_both_take_one_download(store, tmp_path, cdn):
    file_photo(store, cdn.add("once_n.jpg", JPEG))
    [row] = media_rows(store)
    first, second = evidence(store, tmp_path, cdn), evidence(store, tmp_path, cdn)
    assert first.attempt(row["media_id"], 0, row["next_attempt_at"]) == "stored"
    assert second.attempt(row["media_id"], 0, row["next_attempt_at"]) == "skipped"
    assert cdn.requests("once_n.jpg") == 1 and len(log_of(store, "EvidenceStored")) == 1


def test_a_claimed_download_whose_process_died_comes_back_after_its_lease(store, tmp_path, cdn):
    file_photo(store, cdn.add("crash_n.jpg", JPEG))
    [row] = media_rows(store)
    with store.database.transaction() as tx:                        # claimed, then the process died
        assert ledger.claim(tx, row["media_id"], 0, row["next_attempt_at"], utc_now() - timedelta(hours=1), 60)
    assert evidence(store, tmp_path, cdn).run_due() == {"stored": 1}
    assert media_rows(store)[0]["attempts"] == 2


def test_no_write_transaction_is_open_while_a_file_is_fetched(store, tmp_path, cdn):
    """The CDN, while answering, takes SQLite's write lock itself: it gets it at once."""
    database_file = Path(str(store.database.url).removeprefix("sqlite:///"))
    locks: list[bool] = []

    class Probe(MediaFetcher):
        def fetch(self, url, write):
            connection = sqlite3.connect(database_file, timeout=0.5, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                locks.append(True)
            except sqlite3.OperationalError:
                locks.append(False)
            finally:
                connection.close()
            return super().fetch(url, write)

    file_photo(store, cdn.add("lock_n.jpg", JPEG))
    service = evidence(store, tmp_path, cdn)
    service.fetcher = Probe(service.settings)
    assert service.run_due() == {"stored": 1} and locks == [True]


def test_chunk_refuses_malformed_requests(store, tmp_path, cdn):
    filed = file_photo(store, cdn.add("c_n.jpg", JPEG))
    service = evidence(store, tmp_path, cdn)
    service.run_due()
    digest = sha256(JPEG)
    for bad_digest in ("../../etc/passwd", digest.upper(), "abc"):
        with pytest.raises(ValidationFailed):
            service.chunk(filed["complaint_id"], bad_digest)
    for bad_offset in (-1, "0", 1.5, True):
        with pytest.raises(ValidationFailed):
            service.chunk(filed["complaint_id"], digest, bad_offset)
    with pytest.raises(NotFound):
        service.chunk("00000000-0000-0000-0000-000000000000", digest)
    (tmp_path / "media" / digest[:2] / digest).unlink()            # the disk lost it
    with pytest.raises(NotFound, match="missing"):
        service.chunk(filed["complaint_id"], digest)


def test_downloads_of_one_tick_run_while_other_threads_use_the_database(store, tmp_path, cdn):
    """A slow CDN does not hold the database: filings go on while a download stalls."""
    file_photo(store, cdn.add("stall_n.jpg", JPEG, stall_seconds=1.0))
    service = evidence(store, tmp_path, cdn)
    worker = threading.Thread(target=service.run_due)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    file_photo(store, cdn.add("meanwhile_n.jpg", JPEG))
    assert time.monotonic() - started < 0.8
    worker.join(10)
    assert [r["state"] for r in media_rows(store)] == ["stored", "pending"]


def test_the_graph_sandboxs_expiring_media_are_kept_while_their_links_work(store, tmp_path):
    """Against the Graph sandbox's CDN (``/_sandbox/media``: Meta-shaped links with ``oh``/``oe``
    that stop working when they expire or are altered)."""
    import requests
    from sandbox.graph_sandbox import start_sandbox
    with start_sandbox() as sandbox:
        def medium(**spec) -> dict:
            answer = requests.post(f"{sandbox.url}/_sandbox/media", json=spec, timeout=5)
            answer.raise_for_status()
            return answer.json()["media"]

        fresh, video, stale = medium(content_type="image/png"), medium(content_type="video/mp4"), \
            medium(content_type="image/jpeg", expired_status=410)
        requests.post(f"{sandbox.url}/_sandbox/media/{stale['id']}/expire", timeout=5).raise_for_status()
        forged = video["url"].replace("oh=00_", "oh=00_0")
        filed = file_photo(store, fresh["url"], video["url"], stale["url"], forged)
        host = sandbox.url.split("://", 1)[1].rstrip("/")
        service = evidence(store, tmp_path, cdn=None, allow_hosts=frozenset({host}))
        assert service.run_due() == {"stored": 2, "lost": 2}
        rows = {r["url_hash"]: r for r in media_rows(store)}
        assert [(rows[ledger.url_hash(url)]["state"], rows[ledger.url_hash(url)]["content_type"],
                 rows[ledger.url_hash(url)]["digest"], rows[ledger.url_hash(url)]["reason"])
                for url in (fresh["url"], video["url"], stale["url"], forged)] == [
            ("stored", "image/png", fresh["sha256"], None), ("stored", "video/mp4", video["sha256"], None),
            ("lost", None, None, "link expired or removed (HTTP 410)"),
            ("lost", None, None, "link expired or removed (HTTP 403)")]         # a forged ``oh``
        assert base64.b64decode(service.chunk(filed["complaint_id"], video["sha256"])["data"])[4:8] == b"ftyp"


def test_a_link_no_request_line_can_carry_is_lost_without_a_request(store, tmp_path, cdn):
    cdn.add("a b_n.jpg", JPEG)
    file_photo(store, f"http://{cdn.host}/a b_n.jpg?oe=1")
    assert evidence(store, tmp_path, cdn).run_due() == {"lost": 1}
    assert media_rows(store)[0]["reason"] == "not a valid URL" and cdn.requests("a b_n.jpg") == 0


def test_a_failure_on_our_side_never_loses_the_evidence(store, tmp_path, cdn, monkeypatch):
    """The disk refuses the file: the download stays pending (its lease brings it back), not lost."""
    file_photo(store, cdn.add("disk_n.jpg", JPEG))
    service = evidence(store, tmp_path, cdn)

    def disk_full(staged):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(service.files, "keep", disk_full)
    assert service.run_due() == {"error": 1}
    [row] = media_rows(store)
    assert (row["state"], row["attempts"]) == ("pending", 1) and log_of(store, "EvidenceStored") == []
    assert list((tmp_path / "media" / ".staging").iterdir()) == []
