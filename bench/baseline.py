"""Baselines — the physical limits of this machine's broker and disks, measured in the same run:

* RabbitMQ: 1 KB persistent messages to a durable queue, published with publisher confirms
  (pika, one confirm round trip per message; and pipelined: a window of unconfirmed publishes,
  as the outbox relay does), then consumed with manual acks (prefetch 200).
* SQLite (WAL, synchronous=FULL): event rows of the real ``events`` schema appended one
  transaction per event and 500 per transaction; also through ``EventStore.append``.
* PostgreSQL: the same, in a database of its own.
Each measurement stops after a fixed count or a time limit, whichever comes first.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from urllib.parse import unquote

import amqp
import pika

from bench.common import log, save, temp_dir, vhost
from tests.support import infra

PAYLOAD = b"x" * 1024
EVENT_DATA = json.dumps({"text": "Jalan rusak parah di Desa Kuripan " * 8, "channel": "facebook_messenger",
                         "category": "infrastruktur", "region_code": "52.01", "priority": "normal"})
EVENTS_DDL = """CREATE TABLE events (position BIGINT PRIMARY KEY, event_id VARCHAR(36) NOT NULL UNIQUE,
 event_type VARCHAR(64) NOT NULL, schema_version INTEGER NOT NULL, source VARCHAR(32) NOT NULL,
 complaint_id VARCHAR(36) NOT NULL, version INTEGER NOT NULL, occurred_at VARCHAR(40) NOT NULL,
 data TEXT NOT NULL, CONSTRAINT uq_events_complaint_version UNIQUE (complaint_id, version))"""
OUTBOX_DDL = "CREATE TABLE outbox (position BIGINT PRIMARY KEY)"


def _row(position: int) -> tuple:
    return (position, str(uuid.uuid4()), "ComplaintFiled", 1, "intake", str(uuid.uuid4()), 1,
            "2025-01-01T00:00:00.000000Z", EVENT_DATA)


# -- RabbitMQ ----------------------------------------------------------------------------------
def rabbit(count: int = 20000, limit_s: float = 10.0) -> dict:
    out = {}
    with vhost() as uri:
        params = pika.URLParameters(uri)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.queue_declare("bench", durable=True)
        channel.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")
        # One confirm round trip per message (what kombu's confirm_publish does).
        n, started = 0, time.perf_counter()
        while n < count and time.perf_counter() - started < limit_s:
            channel.basic_publish("", "bench", PAYLOAD, props, mandatory=False)
            n += 1
        elapsed = time.perf_counter() - started
        out["publish_confirm_each_msgs_per_s"] = round(n / elapsed)
        out["publish_confirm_each_n"] = n
        sync_published = n
        connection.close()

        # Pipelined confirms: publish a window, then wait for the broker's (multiple) acks.
        conn = amqp.Connection(host=uri.split("@")[1].split("/")[0], userid="guest", password="guest",
                               virtual_host=unquote(uri.rsplit("/", 1)[1]))
        conn.connect()
        ch = conn.channel()
        ch.confirm_select()
        acked = [0]
        ch.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__(0, max(acked[0], tag)))
        window, n, started = 500, 0, time.perf_counter()
        while n < count and time.perf_counter() - started < limit_s:
            for _ in range(window):
                ch.basic_publish(amqp.Message(PAYLOAD, delivery_mode=2), exchange="", routing_key="bench")
                n += 1
            while acked[0] < n:
                conn.drain_events(timeout=10)
        elapsed = time.perf_counter() - started
        out["publish_confirm_pipelined_msgs_per_s"] = round(n / elapsed)
        out["publish_confirm_pipelined_window"] = window
        out["publish_confirm_pipelined_n"] = n
        conn.close()

        # Consume everything published with manual acks.
        total = sync_published + n
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)
        got, started = 0, time.perf_counter()
        for method, _props, _body in channel.consume("bench", inactivity_timeout=5):
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            got += 1
            if got >= total:
                break
        elapsed = time.perf_counter() - started
        channel.cancel()
        connection.close()
        out["consume_ack_msgs_per_s"] = round(got / elapsed)
        out["consume_ack_n"] = got
        out["message_bytes"] = len(PAYLOAD)
    return out


# -- SQLite --------------------------------------------------------------------------------------
def sqlite_appends(single_n: int = 3000, batched_n: int = 100_000, batch: int = 500,
                   limit_s: float = 8.0) -> dict:
    out = {}
    with temp_dir() as directory:
        db = sqlite3.connect(directory / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(EVENTS_DDL)
        db.execute(OUTBOX_DDL)
        insert = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)"
        position, n, started = 0, 0, time.perf_counter()
        while n < single_n and time.perf_counter() - started < limit_s:
            position += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute(insert, _row(position))
            db.execute("INSERT INTO outbox VALUES (?)", (position,))
            db.execute("COMMIT")
            n += 1
        out["one_per_tx_events_per_s"] = round(n / (time.perf_counter() - started))
        out["one_per_tx_n"] = n
        n, started = 0, time.perf_counter()
        while n < batched_n and time.perf_counter() - started < limit_s:
            rows = [_row(position + i + 1) for i in range(batch)]
            position += batch
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, rows)
            db.executemany("INSERT INTO outbox VALUES (?)", [(r[0],) for r in rows])
            db.execute("COMMIT")
            n += batch
        out["batched_events_per_s"] = round(n / (time.perf_counter() - started))
        out["batched_n"] = n
        out["batch"] = batch
        db.close()
        out.update({f"eventstore_{k}": v for k, v in _eventstore_appends(f"sqlite:///{directory}/store.db").items()})
    out["settings"] = "WAL, synchronous=FULL, outbox row with each event"
    return out


def _eventstore_appends(url: str, limit_s: float = 6.0, single_n: int = 2000, batch: int = 500,
                        batched_n: int = 50_000) -> dict:
    """The same through the platform's own append path (validation, versions, outbox)."""
    from sqlalchemy import MetaData

    from shared.core.db import Database
    from shared.core.eventstore import EventStore, PendingEvent

    metadata = MetaData()
    store = EventStore("intake", metadata)
    database = Database("intake", url, metadata, store)
    database.create_all()
    sample = _filed_data()
    out = {}
    n, started = 0, time.perf_counter()
    while n < single_n and time.perf_counter() - started < limit_s:
        with database.transaction() as tx:
            tx.append([PendingEvent("ComplaintFiled", str(uuid.uuid4()), sample, expected_version=0)])
        n += 1
    out["one_per_tx_events_per_s"] = round(n / (time.perf_counter() - started))
    n, started = 0, time.perf_counter()
    while n < batched_n and time.perf_counter() - started < limit_s:
        with database.transaction() as tx:
            tx.append([PendingEvent("ComplaintFiled", str(uuid.uuid4()), sample) for _ in range(batch)])
        n += batch
    out["batched_events_per_s"] = round(n / (time.perf_counter() - started))
    database.dispose()
    return out


def _filed_data() -> dict:
    """A valid ComplaintFiled data dict (the catalogue's own vocabularies)."""
    from shared.core.events import catalogue
    return {
        "tracking_code": "NTB-7K3QD-9XW2M", "channel": "facebook_messenger",
        "filed_at": "2025-01-01T00:00:00.000000Z",
        "text": "Jalan di Desa Kuripan Lombok Barat rusak parah, mohon diperbaiki.",
        "attachments": [], "category": catalogue.CATEGORIES[0], "region_code": catalogue.REGION_CODES[0],
        "priority": catalogue.PRIORITIES[0], "reasons": {"category": [], "region": [], "priority": []},
        "confidential": False, "reply_to": {"page_id": "100000000000001", "psid": "7000000000000001"},
        "last_citizen_message_at": "2025-01-01T00:00:00.000000Z", "external_ref": None,
    }


# -- PostgreSQL ----------------------------------------------------------------------------------
def postgres_appends(single_n: int = 3000, batched_n: int = 100_000, batch: int = 500,
                     limit_s: float = 8.0) -> dict:
    import psycopg2
    from psycopg2.extras import execute_values

    url = infra.create_postgres_database()
    out = {}
    try:
        dsn = url.replace("postgresql+psycopg2://", "postgresql://")
        db = psycopg2.connect(dsn)
        cur = db.cursor()
        cur.execute(EVENTS_DDL)
        cur.execute(OUTBOX_DDL)
        db.commit()
        cur.execute("SHOW synchronous_commit")
        out["synchronous_commit"] = cur.fetchone()[0]
        cur.execute("SHOW fsync")
        out["fsync"] = cur.fetchone()[0]
        insert = "INSERT INTO events VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        position, n, started = 0, 0, time.perf_counter()
        while n < single_n and time.perf_counter() - started < limit_s:
            position += 1
            cur.execute(insert, _row(position))
            cur.execute("INSERT INTO outbox VALUES (%s)", (position,))
            db.commit()
            n += 1
        out["one_per_tx_events_per_s"] = round(n / (time.perf_counter() - started))
        out["one_per_tx_n"] = n
        n, started = 0, time.perf_counter()
        while n < batched_n and time.perf_counter() - started < limit_s:
            rows = [_row(position + i + 1) for i in range(batch)]
            position += batch
            execute_values(cur, "INSERT INTO events VALUES %s", rows, page_size=batch)
            execute_values(cur, "INSERT INTO outbox VALUES %s", [(r[0],) for r in rows], page_size=batch)
            db.commit()
            n += batch
        out["batched_events_per_s"] = round(n / (time.perf_counter() - started))
        out["batched_n"] = n
        out["batch"] = batch
        db.close()
        out.update({f"eventstore_{k}": v for k, v in _eventstore_appends(url).items()})
    finally:
        infra.drop_postgres_database(url)
    return out


def run(args=None) -> dict:
    log("baseline: RabbitMQ publish with confirms / consume with acks")
    result = {"rabbitmq": rabbit()}
    log(f"  {result['rabbitmq']}")
    log("baseline: SQLite appends")
    result["sqlite"] = sqlite_appends()
    log(f"  {result['sqlite']}")
    log("baseline: PostgreSQL appends")
    result["postgresql"] = postgres_appends()
    log(f"  {result['postgresql']}")
    save("baseline", result)
    return result
