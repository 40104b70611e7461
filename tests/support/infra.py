"""Talks to the real RabbitMQ (management API) and PostgreSQL the tests use."""
from __future__ import annotations

import os
import socket
import time
import uuid
import warnings
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, text

RABBIT_HOST = os.environ.get("NTBCARE_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_MANAGEMENT = os.environ.get("NTBCARE_TEST_RABBIT_MANAGEMENT", f"http://{RABBIT_HOST}:15672")
RABBIT_AUTH = ("guest", "guest")
POSTGRES_ADMIN_URL = os.environ.get("NTBCARE_TEST_POSTGRES_URL",
                                    "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def create_vhost(name: str) -> None:
    response = requests.put(f"{RABBIT_MANAGEMENT}/api/vhosts/{quote(name, safe='')}", auth=RABBIT_AUTH, timeout=10)
    response.raise_for_status()
    response = requests.put(f"{RABBIT_MANAGEMENT}/api/permissions/{quote(name, safe='')}/guest",
                            json={"configure": ".*", "write": ".*", "read": ".*"}, auth=RABBIT_AUTH, timeout=10)
    response.raise_for_status()


def delete_vhost(name: str) -> None:
    """Clean-up after a test. Deleting a vhost deletes its quorum queues, which a busy broker may
    take far longer than 10 s to do (CI: the management API's answer timed out and failed tests
    that had passed); so wait up to a minute, and if the broker has still not answered, leave the
    deletion running there and warn instead of failing the test."""
    try:
        requests.delete(f"{RABBIT_MANAGEMENT}/api/vhosts/{quote(name, safe='')}", auth=RABBIT_AUTH, timeout=60)
    except requests.Timeout:
        warnings.warn(f"RabbitMQ did not confirm deleting vhost {name} within 60 s", stacklevel=2)


def amqp_uri(vhost: str) -> str:
    return f"amqp://guest:guest@{RABBIT_HOST}:5672/{quote(vhost, safe='')}"


def queues(vhost: str, tries: int = 6) -> list[dict]:
    """The vhost's queues as the management API lists them. RabbitMQ 3.10's listing answers 500
    for a moment while a quorum queue is being declared (its leader not yet a node name: a
    ``badarg`` in ``rabbit_mgmt_util:augment_resources``, in the broker's log): asked again."""
    for attempt in range(tries):
        response = requests.get(f"{RABBIT_MANAGEMENT}/api/queues/{quote(vhost, safe='')}", auth=RABBIT_AUTH,
                                timeout=10)
        if response.status_code < 500 or attempt == tries - 1:
            break
        time.sleep(0.5)
    response.raise_for_status()
    return response.json()


def create_postgres_database() -> str:
    name = f"ntbcare_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


#: When `make test` runs the suite in parallel shards (scripts/run_tests.py), each shard takes its
#: ports from a range of its own, below the kernel's ephemeral range (32768+), so two shards never
#: pick the same free port before either binds it.
_SHARD_PORT_BASE, _SHARD_PORT_SPAN = 20000, 1500
_next_shard_port: dict[str, int] = {}


def free_port() -> int:
    shard = os.environ.get("NTBCARE_TEST_SHARD", "")
    if shard.isdigit():
        start = _SHARD_PORT_BASE + int(shard) * _SHARD_PORT_SPAN
        for _ in range(_SHARD_PORT_SPAN):
            port = _next_shard_port.get(shard, start)
            _next_shard_port[shard] = start + (port + 1 - start) % _SHARD_PORT_SPAN
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use (another process, or RabbitMQ's 25672)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
