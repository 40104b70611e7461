"""Media that expires, like Meta's CDN: an attachment's ``payload.url`` points at
``scontent.xx.fbcdn.net/v/...?...&oh=<signature>&oe=<expiry, hex Unix time>`` and stops working
when ``oe`` passes (see ``sandbox.meta.WEBHOOK_MESSAGES_URL`` and design.md: "media URLs point
at Meta's CDN and expire, so evidence must be downloaded on arrival").

The sandbox serves registered media under ``/cdn/v/...`` with the same query shape. Until it
expires (by the sandbox clock) the URL answers 200 with the bytes; afterwards 403 ``URL signature
expired`` (or the status asked for); a URL whose ``oh``/``oe`` was altered answers 403 ``Bad URL
hash``; removed or unknown media 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

MAX_MEDIA_BYTES = 100 * 1024 * 1024
DEFAULT_TTL_SECONDS = 3600


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# A real 1x1 picture for PNG and GIF; for JPEG and MP4 the format's signature and framing
# (enough for type sniffing, not a decodable picture or film).
SAMPLES: dict[str, tuple[bytes, str]] = {
    "image/png": (_png_1x1(), "png"),
    "image/gif": (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00"
                  b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", "gif"),
    "image/jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
                   b"\xff\xd9", "jpg"),
    "video/mp4": (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08mdat",
                  "mp4"),
    "audio/mpeg": (b"ID3\x03\x00\x00\x00\x00\x00\x00", "mp3"),
    "application/pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n%%EOF\n", "pdf"),
}
_EXT = {ctype: ext for ctype, (_, ext) in SAMPLES.items()}
_PATH_RE = re.compile(r"^/cdn/v/t[0-9.]+-[0-9]+/(?P<token>[A-Za-z0-9_-]+)_n\.[a-z0-9]+$")


@dataclass
class MediaItem:
    id: int
    token: str
    content: bytes = field(repr=False)
    content_type: str
    ext: str
    created_at: datetime
    expires_at: datetime
    expired_status: int
    page_id: str | None
    oe: str = ""  # the signed expiry in the URL: fixed at creation, as Meta's links are
    removed: bool = False
    fetches: int = 0
    refused: int = 0

    def describe(self, base_url: str, secret: bytes) -> dict:
        return {"id": self.id, "url": self.url(base_url, secret), "content_type": self.content_type,
                "size": len(self.content), "sha256": hashlib.sha256(self.content).hexdigest(),
                "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
                "expired_status": self.expired_status, "removed": self.removed,
                "page_id": self.page_id, "fetches": self.fetches, "refused": self.refused}

    def url(self, base_url: str, secret: bytes) -> str:
        return (f"{base_url.rstrip('/')}/cdn/v/t39.1997-6/{self.token}_n.{self.ext}"
                f"?_nc_cat=1&ccb=1-7&_nc_sid=sandbox&oh={_sign(secret, self.token, self.oe)}"
                f"&oe={self.oe}")


def _sign(secret: bytes, token: str, oe: str) -> str:
    return "00_" + hmac.new(secret, f"{token}:{oe}".encode(), hashlib.sha256).hexdigest()[:40]


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class MediaStore:
    """Registered media; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(16)
        self._ids = 0
        self._by_token: dict[str, MediaItem] = {}
        self._by_id: dict[int, MediaItem] = {}

    def add(self, spec: Mapping[str, Any], now: datetime, base_url: str) -> dict:
        ctype = str(spec.get("content_type") or "image/jpeg")
        if spec.get("content_base64") is not None:
            content = base64.b64decode(str(spec["content_base64"]), validate=True)
        elif spec.get("text") is not None:
            content = str(spec["text"]).encode("utf-8")
        else:
            sample = SAMPLES.get(ctype)
            if sample is None:
                raise ValueError(f"content_type {ctype!r} has no sample: give content_base64")
            content = sample[0]
        with self._lock:
            self._ids += 1
            media_id = self._ids
        if spec.get("content_base64") is None and spec.get("text") is None \
                and not spec.get("identical"):
            # Each medium differs from the others unless asked to be identical (for
            # content-addressed stores, which must keep one copy of equal bytes).
            content += f"\nsandbox-media-{media_id}".encode()
        size = spec.get("size")
        if size is not None:
            size = int(size)
            if size < len(content):
                raise ValueError(f"size must be at least {len(content)} for this content")
            if size > MAX_MEDIA_BYTES:
                raise ValueError(f"size must be at most {MAX_MEDIA_BYTES}")
            content += b"\x00" * (size - len(content))
        ttl = spec.get("expires_in_seconds", DEFAULT_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
            raise ValueError("expires_in_seconds must be a number >= 0")
        expired_status = int(spec.get("expired_status") or 403)
        if expired_status not in (403, 404, 410):
            raise ValueError("expired_status must be 403, 404 or 410")
        # oe has one-second resolution, as Meta's has.
        expires_at = (now + timedelta(seconds=float(ttl))).replace(microsecond=0)
        item = MediaItem(id=media_id, token=secrets.token_urlsafe(18).replace("-", "x"),
                         content=content, content_type=ctype,
                         ext=str(spec.get("ext") or _EXT.get(ctype, "bin")), created_at=now,
                         expires_at=expires_at, expired_status=expired_status,
                         page_id=str(spec["page_id"]) if spec.get("page_id") else None,
                         oe=format(int(expires_at.timestamp()), "x").upper())
        with self._lock:
            self._by_token[item.token] = item
            self._by_id[item.id] = item
        return item.describe(base_url, self._secret)

    def list(self, base_url: str) -> list[dict]:
        with self._lock:
            items = list(self._by_id.values())
        return [i.describe(base_url, self._secret) for i in items]

    def update(self, media_id: int, *, expire: bool, remove: bool, now: datetime,
               base_url: str) -> dict:
        with self._lock:
            item = self._by_id.get(int(media_id))
            if item is None:
                raise KeyError(media_id)
            if expire:
                item.expires_at = now.replace(microsecond=0) - timedelta(seconds=1)
            if remove:
                item.removed = True
        return item.describe(base_url, self._secret)

    def clear(self) -> None:
        with self._lock:
            self._by_token.clear()
            self._by_id.clear()

    def serve(self, path: str, args: Mapping[str, str], now: datetime
              ) -> tuple[int, bytes, str, dict[str, str]]:
        """(status, body, content type, headers) for a GET of a CDN path."""
        match = _PATH_RE.match(path)
        if not match:
            return 404, b"Not Found", "text/plain", {}
        with self._lock:
            item = self._by_token.get(match.group("token"))
            if item is None or item.removed:
                return 404, b"Not Found", "text/plain", {}
            oe = args.get("oe") or ""
            if not hmac.compare_digest(args.get("oh") or "", _sign(self._secret, item.token, oe)):
                item.refused += 1
                return 403, b"Bad URL hash", "text/plain", {}
            try:
                expiry = datetime.fromtimestamp(int(oe, 16), tz=timezone.utc)
            except ValueError:
                item.refused += 1
                return 403, b"Bad URL hash", "text/plain", {}
            if now > expiry or now > item.expires_at:
                item.refused += 1
                body = b"URL signature expired" if item.expired_status == 403 else b"Not Found"
                return item.expired_status, body, "text/plain", {}
            item.fetches += 1
            return 200, item.content, item.content_type, {
                "Cache-Control": "max-age=1209600, no-transform",
                "Last-Modified": item.created_at.strftime("%a, %d %b %Y %H:%M:%S GMT")}
