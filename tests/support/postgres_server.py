"""A PostgreSQL server of the test's own, so a test can stop and restart PostgreSQL without
disturbing anyone else on the machine: ``initdb`` into a temporary data directory, ``pg_ctl``
start on a free loopback port (trust authentication, ``fsync`` on — a restart must keep what was
committed, as a real one does), a database per service on it, and ``restart`` with ``pg_ctl
stop -m fast`` (clients disconnected, a clean shutdown) or ``-m immediate`` (no shutdown
checkpoint: crash recovery on the next start, what a killed server looks like)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support.infra import free_port

BIN = Path(os.environ.get("NTBCARE_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


class PostgresServer:
    """``directory``: where its data lives (default: a new directory under the system's temporary
    directory — as root the server runs as ``postgres``, which cannot enter pytest's private
    temporary directories)."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="ntbcare-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self.user = "postgres"
        self._env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        self._as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root

    # -- processes -----------------------------------------------------------------------------
    def _run(self, *command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        argv = list(command)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, env=self._env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def start(self) -> "PostgresServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                      "-E", "UTF8", "--no-instructions")
        self._start()
        return self

    def _start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
                   "-c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB")
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> float:
        """Stop (``fast`` or ``immediate``), stay down ``down_seconds``, start again; returns the
        seconds PostgreSQL was not accepting connections."""
        stopped = time.monotonic()
        self.stop(mode)
        time.sleep(down_seconds)
        self._start()
        return time.monotonic() - stopped

    def running(self) -> bool:
        return self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run(str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                         check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"PostgreSQL on port {self.port} not ready:\n{self.log.read_text()[-2000:]}")

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------------
    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        name = f"ntbcare_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.admin_url.rsplit("/", 1)[0] + "/" + name
