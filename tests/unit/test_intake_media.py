"""The pure rules of intake's media store (services/intake/domain/media.py): which attachments are
kept, which addresses may be fetched, what the first bytes prove, the size limit, names, and what a
failed download leads to (retry with backoff, or lost with the reason)."""
from __future__ import annotations

import hashlib

import pytest

from services.intake.domain import media
from services.intake.domain.media import MediaFailure, MediaSettings
from tests.support.media_server import JPEG, MP4, PDF, PNG

pytestmark = pytest.mark.unit


# --- sniffing: the bytes decide, never the server's header ------------------------------------------

@pytest.mark.parametrize("head, expected", [
    (JPEG, "image/jpeg"),
    (PNG, "image/png"),
    (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    (b"GIF87a\x01\x00\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
    (MP4, "video/mp4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "video/quicktime"),
    (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00isom3gp4", "video/3gpp"),
    (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isommp42", "audio/mp4"),
    (b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00isomiso2avc1mp41", "video/mp4"),   # Messenger's videos
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm", "video/webm"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"OggS\x00\x02\x00\x00", "audio/ogg"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x64\x00", "audio/mpeg"),
    (b"\xff\xf1\x50\x80\x02\x1f\xfc", "audio/aac"),
    (b"#!AMR\n", "audio/amr"),
    (PDF, "application/pdf"),
])
def test_the_first_bytes_prove_the_type(head, expected):
    assert media.sniff(head[:media.SNIFF_BYTES]) == expected
    assert expected in media.ALLOWED_TYPES


@pytest.mark.parametrize("head", [
    b"<!doctype html><html><script>alert(1)</script>",
    b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
    b"<?xml version='1.0'?><svg/>",
    b"PK\x03\x04\x14\x00\x00\x00",                      # zip (and docx, apk …)
    b"MZ\x90\x00\x03\x00",                               # a Windows program
    b"\x7fELF\x02\x01\x01",
    b"#!/bin/sh\nrm -rf /",
    b'{"error": "expired"}',
    b"RIFF\x24\x00\x00\x00XXXX",                         # RIFF of no kind we keep
    b"",
    b"\xff",
])
def test_anything_else_is_not_recognised_whatever_the_server_claims(head):
    assert media.sniff(head) is None
    with pytest.raises(MediaFailure) as refused:
        media.checked_type(head, max(1, len(head)), 1000)
    assert refused.value.permanent


def test_checked_type_refuses_empty_and_over_the_limit():
    with pytest.raises(MediaFailure, match="no bytes") as empty:
        media.checked_type(b"", 0, 1000)
    assert empty.value.permanent
    with pytest.raises(MediaFailure, match="limit of 1000 bytes") as large:
        media.checked_type(JPEG, 1001, 1000)
    assert large.value.permanent
    assert media.checked_type(JPEG[:media.SNIFF_BYTES], 1000, 1000) == "image/jpeg"


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    assert media.declared_too_large("26214401", media.DEFAULT_MAX_BYTES)
    assert not media.declared_too_large("26214400", media.DEFAULT_MAX_BYTES)
    assert not media.declared_too_large(None, 10) and not media.declared_too_large("lots", 10)
    assert media.DEFAULT_MAX_BYTES == 25 * 1024 * 1024


# --- which attachments, and from where ----------------------------------------------------------------

def test_only_web_links_of_meta_channels_are_kept():
    photo = {"type": "image", "url": "https://scontent.xx.fbcdn.net/v/t1/a.jpg?oh=1&oe=2"}
    assert media.wanted(photo, from_meta=True)
    assert not media.wanted(photo, from_meta=False)                         # a web form's link
    assert not media.wanted({"type": "location", "url": "geo:-8.58,116.1"}, from_meta=True)
    assert not media.wanted({"type": "file", "url": "javascript:alert(1)"}, from_meta=True)
    assert not media.wanted({"type": "image"}, from_meta=True)
    assert set(media.MEDIA_CHANNELS) == {"facebook_messenger", "facebook_comment", "instagram_direct"}


def test_targets_are_http_or_https_with_a_host_and_no_credentials():
    target = media.target_of("https://Scontent.XX.fbcdn.net/v/t1/a.jpg?oh=00_x&oe=6600")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https", "scontent.xx.fbcdn.net", 443, "/v/t1/a.jpg?oh=00_x&oe=6600")
    assert target.host_header == "scontent.xx.fbcdn.net"
    local = media.target_of("http://127.0.0.1:8005/cdn/v/x_n.jpg")
    assert (local.port, local.host_header, local.path) == (8005, "127.0.0.1:8005", "/cdn/v/x_n.jpg")
    assert media.target_of("http://[::1]:81/").host_header == "[::1]:81"
    for url in ("ftp://example.org/a.jpg", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)",
                "geo:1,2", "http:///nohost", "https://user:pw@example.org/a.jpg", "http://example.org:99999/"):
        with pytest.raises(MediaFailure) as refused:
            media.target_of(url)
        assert refused.value.permanent, url


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.8.8", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fc00::1", "fe80::1%eth0", "::ffff:127.0.0.1",
    "::ffff:10.1.2.3", "2002:7f00:0001::1", "::", "not-an-address",
])
def test_internal_addresses_are_not_public(address):
    assert not media.public_address(address)


@pytest.mark.parametrize("address", ["157.240.1.1", "31.13.64.35", "2a03:2880:f12f:83:face:b00c:0:25de"])
def test_metas_cdn_addresses_are_public(address):
    assert media.public_address(address)


def test_a_name_resolving_to_any_internal_address_is_refused_unless_allowed_by_name():
    cdn = media.target_of("https://scontent.xx.fbcdn.net/a.jpg")
    assert media.pick_address(cdn, ["157.240.1.1", "157.240.1.2"], frozenset()) == "157.240.1.1"
    with pytest.raises(MediaFailure, match="private or local") as mixed:
        media.pick_address(cdn, ["157.240.1.1", "10.0.0.7"], frozenset())
    assert mixed.value.permanent
    with pytest.raises(MediaFailure, match="did not resolve") as unresolved:
        media.pick_address(cdn, [], frozenset())
    assert not unresolved.value.permanent                    # DNS may come back

    sandbox = media.target_of("http://127.0.0.1:8005/cdn/v/x_n.jpg")
    assert media.pick_address(sandbox, ["127.0.0.1"], frozenset({"127.0.0.1:8005"})) == "127.0.0.1"
    assert media.pick_address(sandbox, ["127.0.0.1"], frozenset({"127.0.0.1"})) == "127.0.0.1"
    with pytest.raises(MediaFailure):
        media.pick_address(sandbox, ["127.0.0.1"], frozenset({"127.0.0.1:9999"}))   # another port


def test_allow_hosts_setting_is_parsed_as_names_and_ports():
    assert media.parse_allow_hosts(" sandbox:8005, 127.0.0.1 ,,Graph-Sandbox ") == frozenset(
        {"sandbox:8005", "127.0.0.1", "graph-sandbox"})
    assert media.parse_allow_hosts(None) == frozenset()


# --- failures: expired, temporary, permanent; backoff ----------------------------------------------------

@pytest.mark.parametrize("status, permanent, words", [
    (403, True, "expired"), (404, True, "expired"), (410, True, "expired"),
    (400, True, "HTTP 400"), (401, True, "HTTP 401"), (451, True, "HTTP 451"),
    (408, False, "HTTP 408"), (429, False, "HTTP 429"), (500, False, "HTTP 500"), (503, False, "HTTP 503"),
])
def test_what_a_cdn_status_means(status, permanent, words):
    failure = media.failure_for_status(status)
    assert failure.permanent is permanent and words in failure.reason


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [media.retry_delay(n, 15) for n in range(1, 6)] == [15, 30, 60, 120, 240]
    assert media.retry_delay(30, 15) == media.MAX_RETRY_DELAY_SECONDS


def test_after_a_failure_lost_at_once_when_permanent_or_the_last_attempt_else_retry():
    settings = MediaSettings(directory="/nonexistent", max_attempts=3, retry_seconds=10)
    expired = media.after_failure(media.failure_for_status(410), 1, settings)
    assert (expired.state, expired.reason) == (media.LOST, "link expired or removed (HTTP 410)")
    again = media.after_failure(MediaFailure("timed out", permanent=False), 2, settings)
    assert (again.state, again.reason, again.delay_seconds) == (media.PENDING, "timed out", 20)
    last = media.after_failure(MediaFailure("timed out", permanent=False), 3, settings)
    assert (last.state, last.reason) == (media.LOST, "gave up after 3 attempts: timed out")


# --- names -------------------------------------------------------------------------------------------------

def test_files_are_named_by_the_sha256_of_their_bytes():
    digest = hashlib.sha256(JPEG).hexdigest()
    assert media.is_digest(digest) and media.relative_path(digest) == f"{digest[:2]}/{digest}"
    for bad in ("../../etc/passwd", digest.upper(), digest[:-1], digest + "0", "", None, 42):
        assert not media.is_digest(bad)
    with pytest.raises(ValueError):
        media.relative_path("../" + digest[3:])
    assert media.file_name("NTB-7KQ2XM", digest, "image/jpeg") == f"NTB-7KQ2XM-{digest[:12]}.jpg"
    assert media.file_name('x"; evil', digest, "application/pdf") == f"xevil-{digest[:12]}.pdf"


def test_an_rpc_chunk_is_at_most_four_mebibytes():
    assert media.chunk_limit(None) == media.CHUNK_BYTES == 1024 * 1024
    assert media.chunk_limit(10) == 10
    assert media.chunk_limit(10 ** 9) == media.MAX_CHUNK_BYTES == 4 * 1024 * 1024
    assert media.chunk_limit(0) == media.chunk_limit(-5) == media.chunk_limit(True) == media.CHUNK_BYTES
    assert media.chunk_limit("9") == media.CHUNK_BYTES
