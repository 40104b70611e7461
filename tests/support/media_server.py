"""A tiny CDN for evidence tests: a real HTTP server on 127.0.0.1 (a thread of the test process)
serving files at ``/<name>`` the way Meta's CDN does — 200 with the bytes until a file "expires"
(then 403, as an expired ``oe`` signature), temporary failures on demand (503 n times, or a
stalled answer), redirects, and a lying ``Content-Type``. It counts the requests it gets.

    with MediaServer() as cdn:
        url = cdn.add("foto.jpg", JPEG)           # http://127.0.0.1:<port>/foto.jpg?oh=…&oe=…
        cdn.expire("foto.jpg")                    # now 403
        cdn.fail("foto.jpg", 2)                   # the next two requests get 503
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Real signatures of each format (enough for sniffing; not decodable pictures).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08mdat" + b"\x01" * 512
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n%%EOF\n"
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Served:
    body: bytes
    content_type: str
    status: int = 200               # 403 once expired
    failures_left: int = 0          # answer 503 this many times first
    stall_seconds: float = 0.0      # sleep before answering
    redirect_to: str | None = None  # answer 302 to this path
    requests: int = 0


class MediaServer:
    def __init__(self):
        self.files: dict[str, Served] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                name = urlsplit(self.path).path.lstrip("/")
                with server.lock:
                    served = server.files.get(name)
                    if served is not None:
                        served.requests += 1
                        failing = served.failures_left > 0
                        if failing:
                            served.failures_left -= 1
                if served is None:
                    return self._answer(404, b"not found", "text/plain")
                if served.stall_seconds:
                    time.sleep(served.stall_seconds)
                if failing:
                    return self._answer(503, b"try later", "text/plain")
                if served.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", served.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if served.status != 200:
                    return self._answer(served.status, b"URL signature expired", "text/plain")
                return self._answer(200, served.body, served.content_type)

            def _answer(self, status: int, body: bytes, content_type: str):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "MediaServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "MediaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, name: str, body: bytes, content_type: str = "image/jpeg", **options) -> str:
        """Serve ``body`` at ``/<name>``; returns a CDN-shaped URL (signature and expiry in the query)."""
        with self.lock:
            self.files[name] = Served(body, content_type, **options)
        return self.url(name)

    def url(self, name: str) -> str:
        return (f"http://127.0.0.1:{self.port}/{name}?_nc_cat=1&_nc_sid=test&oh=00_{secrets.token_hex(8)}"
                f"&oe={int(time.time()) + 3600:x}")

    def expire(self, name: str, status: int = 403) -> None:
        with self.lock:
            self.files[name].status = status

    def fail(self, name: str, times: int) -> None:
        with self.lock:
            self.files[name].failures_left = times

    def requests(self, name: str) -> int:
        with self.lock:
            served = self.files.get(name)
            return served.requests if served else 0
