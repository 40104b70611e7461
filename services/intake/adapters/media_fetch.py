"""Fetching one attachment from Meta's CDN, safely.

Plain ``http.client`` (greened by eventlet in the service), because every hop must be checked:
the URL is parsed (``http``/``https`` only), the host name resolved once, every address it
resolves to checked (public only, unless the host is in ``INTAKE_MEDIA_ALLOW_HOSTS``), and the
connection made to the checked address itself — a name cannot resolve to a public address for
the check and to an internal one for the request. TLS still verifies the certificate against the
host name. Redirects are followed by hand (at most ``MAX_REDIRECTS``), each target checked the
same way. The body is streamed into the caller's ``write`` with the size limit enforced as it
comes, and the whole download has one deadline.

Every failure is a ``MediaFailure`` whose reason names the kind of failure, never the URL.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
from typing import Callable, Sequence
from urllib.parse import urljoin

from services.intake.domain import media as rules

USER_AGENT = "NTBCare-intake/1 (evidence download)"
ACCEPT = "image/*, video/*, audio/*, application/pdf"
READ_BYTES = 64 * 1024

Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class MediaFetcher:
    def __init__(self, settings: rules.MediaSettings, resolver: Resolver = resolve,
                 tls: ssl.SSLContext | None = None):
        self.settings = settings
        self.resolver = resolver
        self.tls = tls

    def fetch(self, url: str, write: Callable[[bytes], None]) -> str | None:
        """Stream the body of ``url`` into ``write``; returns the server's ``Content-Type`` (for
        the record only: the bytes decide the type)."""
        deadline = time.monotonic() + self.settings.timeout_seconds
        for _hop in range(rules.MAX_REDIRECTS + 1):
            target = rules.target_of(url)
            address = rules.pick_address(target, self.resolver(target.host, target.port),
                                         self.settings.allow_hosts)
            connection = self._connection(target, address, deadline)
            try:
                connection.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
                connection.putheader("Host", target.host_header)
                connection.putheader("User-Agent", USER_AGENT)
                connection.putheader("Accept", ACCEPT)
                connection.endheaders()
                response = connection.getresponse()
                if rules.redirect_status(response.status):
                    location = response.getheader("Location")
                    if not location:
                        raise rules.MediaFailure(f"redirect (HTTP {response.status}) without a Location",
                                                 permanent=True)
                    url = urljoin(url, location.strip())
                    continue
                if response.status != 200:
                    raise rules.failure_for_status(response.status)
                if rules.declared_too_large(response.getheader("Content-Length"), self.settings.max_bytes):
                    raise rules.too_large(self.settings.max_bytes)
                while True:
                    _check(deadline)
                    chunk = response.read(READ_BYTES)
                    if not chunk:
                        break
                    write(chunk)
                return response.getheader("Content-Type")
            except rules.MediaFailure:
                raise
            except (socket.timeout, TimeoutError):
                raise rules.MediaFailure("timed out", permanent=False) from None
            except ssl.SSLCertVerificationError:
                raise rules.MediaFailure("the server's TLS certificate is not valid", permanent=False) from None
            except http.client.InvalidURL:
                raise rules.MediaFailure("not a valid URL", permanent=True) from None
            except (OSError, http.client.HTTPException) as error:
                raise rules.MediaFailure(f"connection failed ({type(error).__name__})", permanent=False) from None
            except ValueError:      # a path or host no request line can carry (control characters …)
                raise rules.MediaFailure("not a valid URL", permanent=True) from None
            finally:
                connection.close()
        raise rules.MediaFailure(f"more than {rules.MAX_REDIRECTS} redirects", permanent=True)

    def _connection(self, target: rules.Target, address: str, deadline: float) -> http.client.HTTPConnection:
        timeout = max(1.0, min(30.0, deadline - time.monotonic()))
        if target.scheme == "https":
            if self.tls is None:
                self.tls = ssl.create_default_context()
            return _PinnedHTTPS(target.host, target.port, address, timeout, self.tls)
        return _PinnedHTTP(target.host, target.port, address, timeout)


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise rules.MediaFailure("the download took too long", permanent=False)
