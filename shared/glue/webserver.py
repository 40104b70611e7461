"""The web server behind every service's ``@http`` entrypoints, hardened against connections
that cost nothing to open and never send a request.

nameko's ``WebServer`` runs ``eventlet.wsgi`` with no socket timeout and no limit on open
connections: a few hundred idle connections exhaust the process's open files, ``accept()`` then
raises ``EMFILE`` inside a managed thread and nameko stops the whole service (issue 16). This
server, installed by ``shared.runner`` for all four services (``install()``), differs in four
ways:

* **Timeouts.** Every socket operation times out after ``NTBCARE_HTTP_TIMEOUT_SECONDS``, and a
  connection must deliver a complete request line and headers within that time (a reaper closes
  connections that keep dribbling bytes, and keep-alive connections idle for as long).
* **A connection cap** (``NTBCARE_HTTP_MAX_CONNECTIONS``, never more than the open-file limit
  leaves room for). At the cap, the connection that has waited longest *without a request in
  progress* is dropped to make room, so a flood of idle connections can never keep a real
  request (``/health``, a citizen's form) out. If every open connection is busy, the new one
  gets a ``503`` and is closed.
* **Accept never kills the service**: ``EMFILE``/``ENFILE`` (or any other accept error) drops an
  idle connection, backs off briefly and accepts again; a failing connection ends only itself.
* The soft ``RLIMIT_NOFILE`` is raised to the hard limit at start.

Settings are documented in docs/operations-web.md.
"""
from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Optional

import eventlet
from eventlet import wsgi
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer

from shared.core.config import ConfigError, env

log = logging.getLogger(__name__)

TIMEOUT_VARIABLE = "NTBCARE_HTTP_TIMEOUT_SECONDS"
TIMEOUT_DEFAULT = 30.0
MAX_CONNECTIONS_VARIABLE = "NTBCARE_HTTP_MAX_CONNECTIONS"
MAX_CONNECTIONS_DEFAULT = 1000
# Files the process needs besides client connections: database and broker connections, the
# listening socket, logs, media files being written.
RESERVED_FILES = 128
LISTEN_BACKLOG = 1024            # the kernel caps it at net.core.somaxconn
ACCEPT_BACKOFF_SECONDS = 0.05
WARN_EVERY_SECONDS = 60.0        # under a flood, one warning a minute, not one per connection
SERVICE_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
                       b"Content-Type: text/plain\r\nContent-Length: 21\r\n\r\ntoo many connections\n")
OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class WebServerSettings:
    timeout_seconds: float
    max_connections: int

    @classmethod
    def from_env(cls, open_files_limit: Optional[int] = None) -> "WebServerSettings":
        """The settings, with the cap lowered to what the open-file limit leaves room for; a
        malformed value is a ``ConfigError`` (the service refuses to start and says which)."""
        timeout = _number(TIMEOUT_VARIABLE, str(TIMEOUT_DEFAULT), float)
        if not 0 < timeout <= 3600:
            raise ConfigError(f"{TIMEOUT_VARIABLE} must be a number of seconds between 0 and 3600, not {timeout}")
        cap = int(_number(MAX_CONNECTIONS_VARIABLE, str(MAX_CONNECTIONS_DEFAULT), int))
        if cap < 1:
            raise ConfigError(f"{MAX_CONNECTIONS_VARIABLE} must be a positive number of connections, not {cap}")
        limit = open_files_limit if open_files_limit is not None else _open_files_limit()
        room = max(16, limit - RESERVED_FILES)
        if cap > room:
            if env(MAX_CONNECTIONS_VARIABLE) is not None:   # the default is lowered silently
                log.warning("%s=%d is more than the open-file limit (%d) leaves room for; using %d",
                            MAX_CONNECTIONS_VARIABLE, cap, limit, room)
            cap = room
        return cls(timeout, cap)


def _number(variable: str, default: str, kind):
    raw = env(variable, default)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, not {raw!r}") from None


def _open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit (as far as the kernel allows);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return _open_files_limit()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, wanted, error)
    return _open_files_limit()


@dataclass(eq=False)
class Connection:
    """One accepted connection, as the cap and the reaper see it."""
    sock: socket.socket
    accepted_at: float
    waiting_since: Optional[float]   # waiting for a complete request; None while one is served

    def drop(self) -> None:
        """Wake the connection's green thread with end-of-file; it closes the socket itself."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class GuardedProtocol(HttpOnlyProtocol):
    """eventlet's HTTP protocol telling the server when a connection waits for a request
    (droppable) and when it is serving one (kept). ``conn_state[3]`` is its ``Connection``."""

    def handle_one_request(self):
        self.conn_state[3].waiting_since = time.monotonic()
        return super().handle_one_request()

    def get_environ(self, *args, **kwargs):
        # Called once the request line and headers are complete: from now on it is being served.
        self.conn_state[3].waiting_since = None
        return super().get_environ(*args, **kwargs)


class HardenedWebServer(WebServer):
    """nameko's ``WebServer`` with timeouts, a connection cap and an accept loop that survives
    running out of files (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.settings: Optional[WebServerSettings] = None
        self.open: dict[int, Connection] = {}
        self._reaper = None
        self._last_warning = 0.0
        self.dropped = 0   # connections dropped to make room or for idling too long

    def start(self):
        if not self._starting:
            limit = raise_open_files_limit()
            self.settings = WebServerSettings.from_env(limit)
            self._starting = True
            self._sock = eventlet.listen(self.bind_addr, backlog=LISTEN_BACKLOG)
            self._sock.settimeout(None)   # work around https://github.com/celery/kombu/issues/838
            self._serv = self.get_wsgi_server(self._sock, self.get_wsgi_app())
            self._gt = self.container.spawn_managed_thread(self.run, identifier="web server accept loop")
            self._reaper = self.container.spawn_managed_thread(self.reap, identifier="web server reaper")

    def get_wsgi_server(self, sock, wsgi_app, protocol=GuardedProtocol, debug=False):
        assert self.settings is not None
        return wsgi.Server(sock, sock.getsockname(), wsgi_app, protocol=protocol, debug=debug,
                           log=logging.getLogger("nameko.web.server"),
                           socket_timeout=self.settings.timeout_seconds)

    def stop(self):
        if self._reaper is not None:
            self._reaper.kill()
        super().stop()

    # --- accepting ----------------------------------------------------------------------------

    def run(self):
        while self._is_accepting:
            try:
                sock, address = self._sock.accept()
            except OSError as error:
                if not self._is_accepting:
                    return
                if error.errno in OUT_OF_FILES:
                    self._warn("out of open files while accepting (%s); dropping the longest-idle "
                               "connection", errno.errorcode.get(error.errno, error.errno))
                    self._drop_longest_waiting()
                else:
                    self._warn("accept failed: %s", error)
                eventlet.sleep(ACCEPT_BACKOFF_SECONDS)
                continue
            self._admit(sock, address)

    def _admit(self, sock, address) -> None:
        assert self.settings is not None
        if len(self.open) >= self.settings.max_connections:
            if not self._drop_longest_waiting():
                self._refuse(sock)
                return
            self._warn("%d connections open (the cap); dropping the longest-idle ones to make room",
                       len(self.open))
            eventlet.sleep(0)   # let the dropped connections close (and free their files) now
        now = time.monotonic()
        connection = Connection(sock, now, now)
        self.open[id(connection)] = connection
        sock.settimeout(self.settings.timeout_seconds)
        self.container.spawn_managed_thread(partial(self.serve_connection, connection, address),
                                            identifier="web connection")

    def serve_connection(self, connection: Connection, address) -> None:
        """One connection, start to end. Nothing a client does here may end the service."""
        try:
            self._serv.process_request([address, connection.sock, wsgi.STATE_IDLE, connection])
        except Exception as error:  # a broken client connection; it ends here, alone
            log.debug("web connection ended with %s", type(error).__name__)
        finally:
            self.open.pop(id(connection), None)
            try:
                connection.sock.close()
            except OSError:
                pass

    def _refuse(self, sock) -> None:
        try:
            sock.setblocking(False)
            sock.send(SERVICE_UNAVAILABLE)
        except OSError:
            pass
        finally:
            sock.close()
        self._warn("%d connections open, all of them serving a request; refusing new ones with 503",
                   len(self.open))

    def _drop_longest_waiting(self) -> bool:
        waiting = [c for c in self.open.values() if c.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        self._drop(oldest)
        return True

    def _drop(self, connection: Connection) -> None:
        self.open.pop(id(connection), None)
        self.dropped += 1
        connection.drop()

    # --- reaping ------------------------------------------------------------------------------

    def reap(self) -> None:
        """Close connections that have waited longer than the timeout for a complete request
        (idle, keep-alive left open, or headers sent a byte at a time)."""
        assert self.settings is not None
        interval = min(1.0, self.settings.timeout_seconds / 4)
        while True:
            eventlet.sleep(interval)
            try:
                deadline = time.monotonic() - self.settings.timeout_seconds
                for connection in list(self.open.values()):
                    if connection.waiting_since is not None and connection.waiting_since < deadline:
                        self._drop(connection)
            except Exception:   # never let the reaper take the service down
                log.exception("web server reaper failed; continuing")

    def _warn(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning(message, *args)


def install() -> WebServerSettings:
    """Make every ``@http`` entrypoint (nameko's ``HttpRequestHandler``) use the hardened server;
    called by ``shared.runner`` before a service starts. Checks the settings now, so a malformed
    value stops the service at start with a clear message."""
    settings = WebServerSettings.from_env(raise_open_files_limit())
    if not isinstance(HttpRequestHandler.server, HardenedWebServer):
        HttpRequestHandler.server = HardenedWebServer()
    return settings
