"""Evidence that lasts: the rules for keeping a citizen's photos, videos, voice notes and files.
Pure code (no network, no files, no database); the fetching and the files are in
``services.intake.adapters.media_fetch`` / ``media_files``, the use case in
``services.intake.application.evidence``.

Meta's attachment URLs point at its CDN and expire (hours to days), so intake downloads every
attachment of a Facebook message or comment when it arrives and keeps the bytes:

* **which**: attachments of Meta's channels with an ``http``/``https`` URL (``wanted``);
  a web form's or an API client's links are not fetched (intake would fetch any address a
  stranger typed);
* **where from**: only public addresses (``public_address``) — never loopback, private,
  link-local, multicast or reserved ones — unless the host is in ``INTAKE_MEDIA_ALLOW_HOSTS``
  (development: the Graph sandbox on 127.0.0.1);
* **what**: at most ``max_bytes``, and only a type the first bytes prove (``sniff``): images,
  videos, audio and PDF. What the server's ``Content-Type`` claims decides nothing;
* **named**: by the SHA-256 of the bytes (``relative_path``), so the same photo sent twice is one
  file and a file's name proves its content;
* **retried**: a temporary failure (timeout, 5xx, 429) waits ``retry_delay`` (doubling) up to
  ``max_attempts``; an expired link (403/404/410 from the CDN) or anything permanent is *lost*
  at once, with its reason. Reasons never quote the URL (it is a bearer of access).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

PENDING, STORED, LOST = "pending", "stored", "lost"
STATES = (PENDING, STORED, LOST)
# Channels whose attachments are Meta CDN links (kept); a web form's or an API client's links are not.
MEDIA_CHANNELS = ("facebook_messenger", "facebook_comment", "instagram_direct")

DEFAULT_MAX_BYTES = 25 * 1024 * 1024      # Messenger's own attachment limit is 25 MB
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_SECONDS = 15.0              # 15 s, 30 s, 1 min … : about half an hour in all
MAX_RETRY_DELAY_SECONDS = 30 * 60.0
MAX_REDIRECTS = 3
SNIFF_BYTES = 64                          # enough for every signature below
CHUNK_BYTES = 1024 * 1024                 # what one ``intake.media`` call returns at most
MAX_CHUNK_BYTES = 4 * 1024 * 1024

# Content type → file extension (for a download's name). These are the only types kept.
ALLOWED_TYPES: dict[str, str] = {
    "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
    "image/heic": "heic", "image/heif": "heif", "image/bmp": "bmp", "image/tiff": "tiff",
    "video/mp4": "mp4", "video/quicktime": "mov", "video/3gpp": "3gp", "video/webm": "webm",
    "video/x-matroska": "mkv", "video/x-msvideo": "avi",
    "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "aac", "audio/ogg": "ogg",
    "audio/wav": "wav", "audio/amr": "amr", "audio/flac": "flac",
    "application/pdf": "pdf",
}

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "image/heic", b"heix": "image/heic", b"hevc": "image/heic", b"heim": "image/heic",
    b"heis": "image/heic", b"mif1": "image/heif", b"msf1": "image/heif", b"avif": "image/heif",
    b"M4A ": "audio/mp4", b"M4B ": "audio/mp4", b"F4A ": "audio/mp4",
    b"qt  ": "video/quicktime",
    b"3gp4": "video/3gpp", b"3gp5": "video/3gpp", b"3gp6": "video/3gpp", b"3gp7": "video/3gpp",
    b"3gs7": "video/3gpp", b"3ge6": "video/3gpp", b"3ge7": "video/3gpp", b"3gg6": "video/3gpp",
    b"3g2a": "video/3gpp",
}


class MediaFailure(Exception):
    """A download that did not give evidence. ``reason`` is short, for people, and never holds
    the URL; ``permanent``: trying again cannot help (lost at once)."""

    def __init__(self, reason: str, permanent: bool):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class MediaSettings:
    directory: str
    max_bytes: int = DEFAULT_MAX_BYTES
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    timeout_seconds: float = 60.0
    allow_hosts: frozenset[str] = frozenset()


# --- which attachments, from where ------------------------------------------------------------

def wanted(attachment: Mapping[str, Any], from_meta: bool) -> bool:
    """Whether intake keeps this attachment's bytes: it came from Meta (a Messenger, Instagram
    or comment webhook, or a complaint of those channels) and has a web URL (not ``geo:``)."""
    url = attachment.get("url")
    return from_meta and isinstance(url, str) and web_url(url)


def web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class Target:
    """Where one request goes: the host (for DNS, TLS and the ``Host`` header), the port, and the
    path with its query (what the request line carries)."""
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def target_of(url: str) -> Target:
    """The request target of an ``http``/``https`` URL; anything else is refused (permanent)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MediaFailure("not a valid URL", permanent=True) from None
    if parts.scheme not in ("http", "https"):
        raise MediaFailure(f"only http and https links are fetched, not {parts.scheme or 'none'!r}",
                           permanent=True)
    if not parts.hostname:
        raise MediaFailure("the link has no host", permanent=True)
    if parts.username or parts.password:
        raise MediaFailure("links with credentials are not fetched", permanent=True)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), path)


def parse_allow_hosts(value: str | None) -> frozenset[str]:
    """``INTAKE_MEDIA_ALLOW_HOSTS``: ``host`` or ``host:port`` items, comma-separated."""
    return frozenset(item.strip().lower() for item in (value or "").split(",") if item.strip())


def allowed_anyway(target: Target, allow_hosts: Iterable[str]) -> bool:
    """Whether the host was named in ``INTAKE_MEDIA_ALLOW_HOSTS`` (then its address is not checked)."""
    allowed = set(allow_hosts)
    return target.host in allowed or f"{target.host}:{target.port}" in allowed


def public_address(address: str) -> bool:
    """Only globally routable unicast addresses: no loopback, private (RFC 1918, fc00::/7),
    link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast or reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return bool(ip.is_global) and not ip.is_multicast


def pick_address(target: Target, addresses: Iterable[str], allow_hosts: Iterable[str]) -> str:
    """The address to connect to. Every address the name resolves to must be public (a name
    that also resolves to an internal address is refused), unless the host is allowed anyway."""
    found = list(dict.fromkeys(addresses))
    if not found:
        raise MediaFailure("the host name did not resolve", permanent=False)
    if allowed_anyway(target, allow_hosts):
        return found[0]
    if not all(public_address(address) for address in found):
        raise MediaFailure("the link points at a private or local address", permanent=True)
    return found[0]


# --- what the answer means ------------------------------------------------------------------------

def failure_for_status(status: int) -> MediaFailure:
    """The CDN answered ``status`` instead of 200. 403/404/410: the link expired (Meta's CDN
    answers 403 for an expired signature); 408/425/429/5xx: try again later; others: permanent."""
    if status in (403, 404, 410):
        return MediaFailure(f"link expired or removed (HTTP {status})", permanent=True)
    if status in (408, 425, 429) or 500 <= status <= 599:
        return MediaFailure(f"the server answered HTTP {status}", permanent=False)
    return MediaFailure(f"the server answered HTTP {status}", permanent=True)


def redirect_status(status: int) -> bool:
    return status in (301, 302, 303, 307, 308)


def declared_too_large(content_length: str | None, max_bytes: int) -> bool:
    try:
        return content_length is not None and int(content_length.strip()) > max_bytes
    except ValueError:
        return False


def too_large(max_bytes: int) -> MediaFailure:
    return MediaFailure(f"larger than the limit of {max_bytes} bytes", permanent=True)


def sniff(head: bytes) -> str | None:
    """The content type the first bytes prove, or None. Only types in ``ALLOWED_TYPES``; HTML,
    SVG, scripts and archives are never recognised, whatever the server claims."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and len(head) >= 12:
        kind = head[8:12]
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(kind)
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        return _ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:SNIFF_BYTES] else "video/x-matroska"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if head[:2] in (b"BM",) and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] in (0xF1, 0xF9):
            return "audio/aac"                  # ADTS
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "audio/mpeg"                 # an MPEG audio frame (MP3 without ID3)
    return None


def _ftyp(head: bytes) -> str:
    """ISO base media files (MP4, MOV, 3GP, HEIC, M4A): the major brand, then the compatible
    brands, decide; a file of this family with no brand we know is an MP4 video."""
    box_size = int.from_bytes(head[0:4], "big")
    end = min(len(head), box_size if 16 <= box_size <= 4096 else len(head))
    brands = [head[8:12]] + [head[i:i + 4] for i in range(16, end - 3, 4)]
    for brand in brands:
        if brand in _FTYP_BRANDS:
            return _FTYP_BRANDS[brand]
    return "video/mp4"


def checked_type(head: bytes, size: int, max_bytes: int) -> str:
    """The content type to keep the bytes as; refuses (permanently) empty, over-large and
    unrecognised content."""
    if size == 0:
        raise MediaFailure("the server sent no bytes", permanent=True)
    if size > max_bytes:
        raise too_large(max_bytes)
    content_type = sniff(head)
    if content_type is None or content_type not in ALLOWED_TYPES:
        raise MediaFailure("not an image, video, audio or PDF file", permanent=True)
    return content_type


# --- names and retries -------------------------------------------------------------------------------

def is_digest(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGEST.match(value))


def relative_path(digest: str) -> str:
    """Where a file lives under the media directory: ``ab/abcdef…`` (two-character fan-out)."""
    if not is_digest(digest):
        raise ValueError("not a SHA-256 hex digest")
    return f"{digest[:2]}/{digest}"


def file_name(tracking_code: str, digest: str, content_type: str) -> str:
    """A download's name for people: ``<tracking code>-<first 12 of the digest>.<ext>``."""
    safe = re.sub(r"[^A-Za-z0-9-]", "", tracking_code)[:32] or "bukti"
    return f"{safe}-{digest[:12]}.{ALLOWED_TYPES.get(content_type, 'bin')}"


def retry_delay(attempts: int, base_seconds: float, cap_seconds: float = MAX_RETRY_DELAY_SECONDS) -> float:
    """Seconds to wait after ``attempts`` failed tries: base, 2×base, 4×base … up to the cap."""
    return float(min(cap_seconds, base_seconds * (2 ** max(0, attempts - 1))))


@dataclass(frozen=True)
class Next:
    """What to do after a failed try: ``state`` LOST (with the reason) or PENDING (retry after
    ``delay_seconds``)."""
    state: str
    reason: str
    delay_seconds: float = 0.0


def after_failure(failure: MediaFailure, attempts: int, settings: MediaSettings) -> Next:
    if failure.permanent:
        return Next(LOST, failure.reason)
    if attempts >= settings.max_attempts:
        return Next(LOST, f"gave up after {attempts} attempts: {failure.reason}")
    return Next(PENDING, failure.reason, retry_delay(attempts, settings.retry_seconds))


def chunk_limit(limit: Any) -> int:
    """``intake.media``'s ``limit``, kept between 1 byte and ``MAX_CHUNK_BYTES``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        return CHUNK_BYTES
    return min(limit, MAX_CHUNK_BYTES)
