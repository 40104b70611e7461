"""Starts the real platform for end-to-end and fault tests: each service in its own process
(``python -m shared.runner <service>``, the same command ``make run`` and the containers use),
the Graph API sandbox, a RabbitMQ vhost of the test's own and a fresh data directory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types for callers
from tests.support.infra import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "routing", "notification", "reporting")
DEV_PAGE_ID = "100000000000001"
DEV_PAGE_TOKEN = "sandbox-page-token"


class Platform:
    def __init__(self, amqp_uri: str, data_dir: Path, extra_env: dict | None = None,
                 services=SERVICES, with_sandbox: bool = True, service_amqp_uris: dict | None = None):
        self.amqp_uri = amqp_uri
        # A service named here connects with its own broker user (least privilege); the others,
        # and the test's own RPC, with ``amqp_uri``.
        self.service_amqp_uris = dict(service_amqp_uris or {})
        self.data_dir = Path(data_dir)
        self.logs_dir = self.data_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.services = tuple(services)
        self.ports = {name: free_port() for name in self.services}
        self.sandbox_port = free_port() if with_sandbox else None
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ)
        self.env.update({
            "AMQP_URI": amqp_uri,
            "NTBCARE_DATA_DIR": str(self.data_dir),
            "NTBCARE_ENV": "development",
            "NTBCARE_CATCHUP_SECONDS": "2",
            "NTBCARE_OUTBOX_POLL_SECONDS": "0.5",
            "FACEBOOK_APP_SECRET": "test-app-secret",
            "FACEBOOK_VERIFY_TOKEN": "test-verify-token",
            "FACEBOOK_PAGES": f"{DEV_PAGE_ID}:{DEV_PAGE_TOKEN},200000000000002:second-page-token",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        })
        for name, port in self.ports.items():
            self.env[f"{name.upper()}_WEB_ADDRESS"] = f"127.0.0.1:{port}"
        if self.sandbox_port:
            self.env["GRAPH_SANDBOX_ADDRESS"] = f"127.0.0.1:{self.sandbox_port}"
            self.env["FACEBOOK_GRAPH_URL"] = f"http://127.0.0.1:{self.sandbox_port}"
        self.env.update(extra_env or {})

    # -- processes -------------------------------------------------------------------------
    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start_all(self, timeout: float = 60) -> "Platform":
        if self.sandbox_port:
            self._spawn("sandbox", [sys.executable, "-m", "sandbox"])
            self._wait_http(f"{self.sandbox_url}/_sandbox/health", timeout)
        for name in self.services:
            self.start(name, wait=False)
        for name in self.services:
            self.wait_healthy(name, timeout)
        return self

    def start(self, service: str, wait: bool = True, timeout: float = 60) -> None:
        self._spawn(service, [sys.executable, "-m", "shared.runner", service])
        if wait:
            self.wait_healthy(service, timeout)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.logs_dir / f"{name}.log", "ab")
        env = dict(self.env, AMQP_URI=self.service_amqp_uris[name]) if name in self.service_amqp_uris else self.env
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_replica(self, service: str, wait: bool = True, timeout: float = 90) -> str:
        """A second process of ``service``: the same databases and queues, another web port;
        returns its base URL."""
        name = f"{service}-2"
        port = free_port()
        env = dict(self.env, **{f"{service.upper()}_WEB_ADDRESS": f"127.0.0.1:{port}"})
        log = open(self.logs_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "shared.runner", service], cwd=ROOT,
                                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        if wait:
            self._wait_http(f"http://127.0.0.1:{port}/health", timeout, name)
        return f"http://127.0.0.1:{port}"

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        """Until ``/health`` answers 200 and the service consumes its RPC queue: nameko starts
        the web server before the RPC consumer, and a call in between fails ``UnknownService``
        (seen in CI under load)."""
        started = time.monotonic()
        self._wait_http(f"{self.url(service)}/health", timeout, service)
        if service in SERVICES:
            self.wait_rpc_consumer(service, max(5.0, timeout - (time.monotonic() - started)))

    def wait_rpc_consumer(self, service: str, timeout: float = 30) -> None:
        def consuming():
            with Connection(self.amqp_uri, connect_timeout=5) as connection:
                channel = connection.channel()
                try:
                    _, _, consumers = channel.queue_declare(queue=f"rpc-{service}", passive=True)
                finally:
                    channel.close()
            return consumers > 0
        wait_for(consuming, timeout, interval=0.1, message=f"a consumer on rpc-{service}")

    def _wait_http(self, url: str, timeout: float, name: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            process = self.processes.get(name) if name else None
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except requests.RequestException as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"{url} not healthy after {timeout}s: {last}\n{self.log(name or 'sandbox')[-3000:]}")

    def kill(self, service: str, sig=signal.SIGKILL) -> None:
        process = self.processes.pop(service)
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self, service: str) -> None:
        self.kill(service, signal.SIGTERM)

    def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM everything at once (a graceful nameko stop), then SIGKILL what lingers."""
        processes, self.processes = self.processes, {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, name: str) -> str:
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def checkpoint(self, service: str, source: str) -> int:
        """How far ``service`` has handled ``source``'s log: its consumer checkpoint, read by the
        test from the service's SQLite file (read-only). For a test that acts on what a consumer
        must have handled first — consumers that linger take their time (shared.glue.batching)."""
        import sqlite3
        with sqlite3.connect(f"file:{self.data_dir / f'{service}.db'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT position FROM consumer_checkpoints WHERE source = ?", (source,)).fetchone()
        return int(row[0]) if row else 0

    # -- talking to it ---------------------------------------------------------------------
    @contextmanager
    def rpc(self, timeout: float = 30):
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri, "serializer": "json"}, timeout=timeout) as proxy:
            yield proxy

    def sandbox_calls(self, **filters) -> list[dict]:
        response = requests.get(f"{self.sandbox_url}/_sandbox/calls", params=filters, timeout=10)
        response.raise_for_status()
        return response.json()["calls"]


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Poll until ``predicate()`` returns something truthy; return it, or fail with ``message``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # the thing polled may not be up yet
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last error: {last_error})")
