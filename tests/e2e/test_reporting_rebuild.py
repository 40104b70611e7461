"""A history of 3,000 complaints with every event type, seeded through the services' own event
stores before the platform starts: reporting catches up live (pulling every source's log), a
rebuild from scratch — while the live projection serves — equals it row for row, and a projection
built with another shape is rebuilt by reporting itself when it starts."""
from __future__ import annotations

import re
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from services.reporting.adapters.repository import shape_fingerprint
from shared.core.events.catalogue import CONTRACTS
from tests.support.platform import Platform, wait_for
from tests.support.reporting_seed import Seeder

COMPLAINTS = 3_000  # several pages of every source's log; the 1M-event figures live in bench/


@pytest.fixture(scope="module")
def seeded(amqp_uri, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("reporting-rebuild")
    seeder = Seeder(data_dir)
    seeder.history(COMPLAINTS, datetime(2019, 1, 1, tzinfo=timezone.utc), months=24)
    last = seeder.flush()
    seeder.mark_consumed()
    seeder.dispose()
    platform = Platform(amqp_uri, data_dir, with_sandbox=False).start_all()
    yield platform, seeder, last
    platform.stop_all()


def reporting_db(platform) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(platform.data_dir) / 'reporting.db'}?mode=ro", uri=True)


def checkpoints(platform) -> dict:
    with reporting_db(platform) as connection:
        return dict(connection.execute("SELECT source, position FROM consumer_checkpoints").fetchall())


def snapshot(platform) -> dict:
    """Every projection table of the live generation, as sorted rows."""
    with reporting_db(platform) as connection:
        generation = connection.execute("SELECT generation FROM projection_state").fetchone()[0]
        out = {}
        for name in ("facts", "complaints", "assignments", "answers"):
            rows = connection.execute(f"SELECT * FROM {name}_g{generation}").fetchall()
            out[name] = sorted(rows, key=repr)
        return generation, out


def test_live_catch_up_then_rebuild_equals_live(seeded):
    platform, seeder, last = seeded
    assert len(seeder.complaints) >= COMPLAINTS
    event_types = set()
    for store in seeder.stores.values():
        with store.database.read() as connection:
            event_types |= {row[0] for row in connection.exec_driver_sql("SELECT DISTINCT event_type FROM events")}
    assert event_types == set(CONTRACTS), event_types  # every type in the catalogue

    started = time.monotonic()
    wait_for(lambda: all(checkpoints(platform).get(s, 0) >= last[s] for s in last), timeout=400,
             interval=1, message="reporting caught up with the seeded history")
    caught_up_in = time.monotonic() - started

    live_generation, live = snapshot(platform)
    assert len([r for r in live["complaints"]]) == COMPLAINTS

    with platform.rpc(timeout=240) as rpc:
        totals_before = [rpc.reporting.monthly_summary(2019 + m // 12, m % 12 + 1) for m in range(24)]
        result = rpc.reporting.rebuild()
        totals_after = [rpc.reporting.monthly_summary(2019 + m // 12, m % 12 + 1) for m in range(24)]
    assert result["events"] == sum(last.values())
    assert result["seconds"] > 0
    rebuilt_generation, rebuilt = snapshot(platform)
    assert rebuilt_generation == live_generation + 1
    for name in live:
        assert rebuilt[name] == live[name], name
    assert sum(month["total"] for month in totals_before) == COMPLAINTS
    # Volatile only through "now" (deadlines passed): none here, the history is in the past.
    assert totals_after == totals_before
    print(f"caught up in {caught_up_in:.1f}s; rebuild {result}")


def test_a_rebuild_keeps_serving_and_nothing_personal_is_projected(seeded):
    platform, seeder, _last = seeded
    code = seeder.complaints[0]["tracking_code"]
    url = f"{platform.url('reporting')}/api/complaints/{code}"
    assert requests.get(url, timeout=10).status_code == 200
    with platform.rpc(timeout=240) as rpc:
        pending = rpc.reporting.rebuild.call_async()
        answered_during = []
        while len(answered_during) < 3:
            answered_during.append(requests.get(url, timeout=30).status_code)
        result = pending.result()
    assert answered_during == [200, 200, 200] and result["events"] > 0

    with reporting_db(platform) as connection:
        dump = "\n".join(connection.iterdump())
    words = set(re.findall(r"[A-Za-z0-9_]+", dump))
    leaked = [secret for secret in seeder.secrets if secret.split()[0] in words]
    assert not leaked, leaked[:5]
    assert "Nama saya" not in dump and "officer:andi" not in dump


def test_a_changed_shape_is_rebuilt_at_start_up_while_the_old_generation_serves(seeded):
    platform, seeder, last = seeded
    platform.stop("reporting")
    generation, before = snapshot(platform)
    # As if the projection had been built by a release with another shape.
    with sqlite3.connect(Path(platform.data_dir) / "reporting.db") as connection:
        connection.execute("UPDATE projection_state SET fingerprint = 'an-older-shape'")
    platform.start("reporting")
    code = seeder.complaints[0]["tracking_code"]
    assert requests.get(f"{platform.url('reporting')}/api/complaints/{code}", timeout=30).status_code == 200

    def rebuilt():
        with reporting_db(platform) as connection:
            row = connection.execute("SELECT generation, fingerprint FROM projection_state").fetchone()
        return row if row == (generation + 1, shape_fingerprint()) else None
    wait_for(rebuilt, timeout=300, interval=1, message="reporting rebuilt its projection for the new shape")
    wait_for(lambda: all(checkpoints(platform).get(s, 0) >= last[s] for s in last), timeout=60,
             interval=1, message="reporting's checkpoints at the end of the logs")
    _generation, after = snapshot(platform)
    for name in before:
        assert after[name] == before[name], name
    assert "rebuilding it from the sources' logs" in platform.log("reporting")
