"""Idle connections must not take a service down (issue 16, "Idle connections kill the platform").

One real reporting process runs with the common limit of 1,024 open files; the test opens
thousands of TCP connections to it that never send a request. Before the hardened web server,
``accept()`` failed with ``EMFILE`` inside a managed thread and the service exited. Now the
server caps its connections, drops the idle ones first when at the cap, and keeps accepting:
the process stays up and ``/health`` answers promptly.
"""
from __future__ import annotations

import resource
import socket
import sys
import time

import pytest
import requests

from tests.support.platform import Platform

IDLE_CONNECTIONS = 3000
REQUEST_TIMEOUT_SECONDS = 3
OPEN_FILES_LIMIT = 1024   # the common default soft and hard limit of a service account


class LowFileLimitPlatform(Platform):
    """Starts services with ``RLIMIT_NOFILE`` lowered to 1,024 (soft and hard), as on a host
    with the common default, whatever the test machine's own limit is."""

    def start(self, service: str, wait: bool = True, timeout: float = 60) -> None:
        limited = ("import os, resource, sys; "
                   f"resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILES_LIMIT}, {OPEN_FILES_LIMIT})); "
                   f"os.execv(sys.executable, [sys.executable, '-m', 'shared.runner', {service!r}])")
        self._spawn(service, [sys.executable, "-c", limited])
        if wait:
            self.wait_healthy(service, timeout)


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = LowFileLimitPlatform(amqp_uri, tmp_path_factory.mktemp("idle-connections"),
                                   services=("reporting",), with_sandbox=False,
                                   extra_env={"NTBCARE_HTTP_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS)}
                                   ).start_all()
    yield running
    running.stop_all()


@pytest.fixture
def enough_files_here():
    """This test process itself holds thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CONNECTIONS + 500
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the test process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle_connections(port: int, count: int) -> list[socket.socket]:
    """Connections that never send a byte. A connect the server's backlog cannot take yet
    times out quickly and is simply not counted."""
    sockets = []
    for _ in range(count):
        connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        connection.settimeout(0.5)
        try:
            connection.connect(("127.0.0.1", port))
        except OSError:
            connection.close()
            continue
        sockets.append(connection)
    return sockets


def test_thousands_of_idle_connections_leave_health_answering(platform, enough_files_here):
    port = platform.ports["reporting"]
    idle = open_idle_connections(port, IDLE_CONNECTIONS)
    try:
        assert len(idle) > 2 * OPEN_FILES_LIMIT, f"only {len(idle)} connections were accepted"
        started = time.monotonic()
        answer = requests.get(f"{platform.url('reporting')}/health", timeout=5)
        took = time.monotonic() - started
        assert answer.status_code == 200
        assert took < 2.0, f"/health took {took:.1f}s under {len(idle)} idle connections"
        assert platform.processes["reporting"].poll() is None, platform.log("reporting")[-3000:]
        # Still healthy a moment later (the accept loop survived, nothing died behind the answer).
        time.sleep(0.5)
        assert requests.get(f"{platform.url('reporting')}/health", timeout=5).status_code == 200
        assert platform.processes["reporting"].poll() is None
    finally:
        for connection in idle:
            connection.close()
    log = platform.log("reporting")
    assert "Too many open files" not in log


def closed_by_server_within(connection: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes the connection (``trickle`` is sent every half second,
    as a slow-headers client does); fails if it is still open after ``seconds``."""
    connection.settimeout(0.5)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if trickle:
            try:
                connection.sendall(trickle)
            except OSError:
                return time.monotonic() - started
        try:
            if connection.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {seconds}s")


def test_connections_without_a_complete_request_are_closed_after_the_timeout(platform):
    port = platform.ports["reporting"]
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    try:
        # The slow one keeps sending header bytes, each well within the socket timeout.
        assert closed_by_server_within(slow, REQUEST_TIMEOUT_SECONDS + 3, trickle=b"X") <= REQUEST_TIMEOUT_SECONDS + 2
        assert closed_by_server_within(idle, 3) >= 0
    finally:
        idle.close()
        slow.close()
    assert requests.get(f"{platform.url('reporting')}/health", timeout=5).status_code == 200
