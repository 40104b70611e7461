"""The rebuild's faster path changes nothing but the time (real SQLite files, a seeded history):
it equals the live projection (events handled by the consumer one by one, in any order) at every
chunk boundary, whether the logs arrive as the store's own envelopes or as plain JSON (an RPC
reply, checked by ``fast_check``); an invalid event is skipped exactly as the consumer quarantines
it; ``fast_check`` never accepts what the catalogue rejects; and ``derive``'s shortcuts (times in
the stores' one format compared as text, data it never reads left undecoded) give the same rows."""
from __future__ import annotations

import copy
import json
import random
from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, select

from services.reporting.adapters import repository, tables
from shared.core.events import fast_check
from services.reporting.domain import projections
from services.reporting.service import ReportingHandlers, build_store
from shared.core.consumer import EventConsumer
from shared.core.events import InvalidEvent, validate_envelope
from shared.core.events.catalogue import CONTRACTS
from tests.support.reporting_seed import Seeder


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Every source's log as plain JSON objects (what an RPC reply carries)."""
    seeder = Seeder(tmp_path_factory.mktemp("rebuild") / "sources")
    seeder.history(200, datetime(2020, 1, 1, tzinfo=timezone.utc), months=3)
    seeder.flush()
    out = {source: json.loads(json.dumps(store.events_since(0, 1000)))
           for source, store in seeder.stores.items()}
    seeder.dispose()
    return out


def reporting(path):
    store = build_store(f"sqlite:///{path}")
    store.prepare()
    consumer = EventConsumer(store.database, store.quarantine, ReportingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="reporting")
    return store, consumer


def dump(store) -> dict:
    with store.database.read() as connection:
        projection = tables.projection(repository.current_generation(connection))
        return {table.name.rsplit("_g", 1)[0]: sorted(map(repr, connection.execute(select(table))))
                for table in projection.tables}


def fetch_from(logs):
    def fetch(source, position, limit):
        return copy.deepcopy([event for event in logs[source] if event["position"] > position][:limit])
    return fetch


def live(path, logs):
    """The live path: the consumer's catch-up pages (``handle_many`` gives what events pushed one
    by one in any order give: ``test_reporting_catch_up``), the sources in a shuffled order."""
    store, consumer = reporting(path)
    sources = list(logs)
    random.Random(7).shuffle(sources)
    for source in sources:
        consumer.handle_many(copy.deepcopy(logs[source]), source)
    return store


@pytest.fixture(scope="module")
def live_dump(logs, tmp_path_factory):
    store = live(tmp_path_factory.mktemp("live") / "live.db", logs)
    yield dump(store)
    store.database.dispose()


@pytest.mark.parametrize("fact_chunk, complaint_chunk, page", [(97, 13, 50), (10_000, 2_000, 1000)])
def test_a_rebuild_equals_the_live_projection(tmp_path, logs, live_dump, monkeypatch, fact_chunk,
                                              complaint_chunk, page):
    monkeypatch.setattr(repository, "FACT_CHUNK", fact_chunk)
    store, _consumer = reporting(tmp_path / "rebuilt.db")
    progress: dict = {}
    result = repository.rebuild(store.database, fetch_from(logs), store.checkpoints, store.processed,
                                store.failures, page=page, chunk=complaint_chunk, progress=progress)
    assert result["events"] == sum(map(len, logs.values())) and result["skipped"] == 0
    assert dump(store) == live_dump
    assert {"read_seconds", "derive_seconds"} <= set(progress)
    with store.database.read() as connection:
        indexes = {index["name"] for name in ("facts_g2", "complaints_g2", "assignments_g2")
                   for index in inspect(connection).get_indexes(name)}
    assert indexes == {"ux_complaints_g2_tracking_code", "ix_complaints_g2_month", "ix_complaints_g2_status",
                       "ix_assignments_g2_agency"}
    # The facts are keyed by complaint first and, on SQLite, stored in that key's own tree.
    with store.database.read() as connection:
        assert inspect(connection).get_pk_constraint("facts_g2")["constrained_columns"] == [
            "complaint_id", "source", "version"]
        assert "WITHOUT ROWID" in connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'facts_g2'").scalar_one()


def test_the_stores_own_envelopes_rebuild_the_same(tmp_path, logs):
    """In-process reads (the bench, ``StoredEnvelope``s) and RPC-shaped plain dicts agree."""
    plain, _ = reporting(tmp_path / "plain.db")
    repository.rebuild(plain.database, fetch_from(logs), plain.checkpoints, plain.processed, plain.failures)
    checked, _ = reporting(tmp_path / "checked.db")

    def fetch(source, position, limit):  # a dict subclass: the quick check is not used for it
        class Envelope(dict):
            pass
        return [Envelope(event) for event in fetch_from(logs)(source, position, limit)]
    repository.rebuild(checked.database, fetch, checked.checkpoints, checked.processed, checked.failures)
    assert dump(plain) == dump(checked)


def test_an_invalid_event_is_skipped_as_the_consumer_quarantines_it(tmp_path, logs):
    broken = copy.deepcopy(logs)
    routed = next(event for event in broken["routing"] if event["event_type"] == "ComplaintResponded")
    routed["data"]["lifecycle"]["status"] = "not-a-status"
    live_store = live(tmp_path / "live.db", broken)
    store, _consumer = reporting(tmp_path / "rebuilt.db")
    result = repository.rebuild(store.database, fetch_from(broken), store.checkpoints, store.processed,
                                store.failures)
    assert result["skipped"] == 1
    assert dump(store) == dump(live_store)


# -- fast_check: True only where the catalogue says valid ----------------------------------------
def test_every_valid_event_is_accepted_by_the_quick_check(logs):
    seen = set()
    for source, events in logs.items():
        for event in events:
            assert fast_check.accepts(event, source), event
            validate_envelope(event, expected_source=source)
            seen.add(event["event_type"])
            assert not fast_check.accepts(event, "intake" if source != "intake" else "routing")
    assert {event_type for event_type in projections.KEPT_FIELDS} <= seen


_ODD_VALUES = (None, 0, -1, True, "", "2024-13-01T00:00:00Z", "2024-01-01T00:00:00", [1], {"x": 1})


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


def _mutations(event):
    for path in _paths(event):
        for odd in _ODD_VALUES + ("DELETE",):
            mutated = copy.deepcopy(event)
            holder = mutated
            for step in path[:-1]:
                holder = holder[step]
            if odd == "DELETE":
                if isinstance(holder, list):
                    continue
                del holder[path[-1]]
            else:
                holder[path[-1]] = odd
            yield mutated
        if isinstance(event, dict):
            mutated = copy.deepcopy(event)
            holder = mutated
            for step in path:
                holder = holder[step]
            if isinstance(holder, dict):
                holder["unexpected"] = "field"
                yield mutated
    extra = copy.deepcopy(event)
    extra["unexpected"] = 1
    yield extra


def test_the_quick_check_never_accepts_what_the_catalogue_rejects(logs):
    by_type = {}
    for source, events in logs.items():
        for event in events:
            by_type.setdefault(event["event_type"], (source, event))
    assert set(by_type) == set(CONTRACTS)
    accepted = rejected = 0
    for source, event in by_type.values():
        for mutated in _mutations(event):
            if fast_check.accepts(mutated, source):
                accepted += 1
                validate_envelope(mutated, expected_source=source)  # must not raise
            else:
                rejected += 1
                try:
                    validate_envelope(mutated, expected_source=source)
                except (InvalidEvent, KeyError, TypeError):
                    pass
    assert accepted > 100 and rejected > 500, (accepted, rejected)


# -- derive's shortcuts --------------------------------------------------------------------------
def _facts_by_complaint(logs):
    out: dict[str, list] = {}
    for events in logs.values():
        for event in events:
            fact = projections.fact_from_event(event)
            if fact is not None:
                out.setdefault(fact["complaint_id"], []).append(fact)
    return out


def test_times_compared_as_text_give_what_parsing_gives(logs, monkeypatch):
    facts = _facts_by_complaint(logs)
    fast = {cid: projections.derive(cid, items) for cid, items in facts.items()}
    monkeypatch.setattr(projections, "_all_canonical", lambda moments: False)
    assert {cid: projections.derive(cid, items) for cid, items in facts.items()} == fast
    monkeypatch.undo()
    # Other forms (offsets, fewer digits) are compared by their time.
    assert projections._earliest_of(["2024-01-01T08:00:00+07:00", "2024-01-01T01:30:00.000000Z"]) \
        == "2024-01-01T08:00:00+07:00"
    assert projections._latest_of(["2024-01-01T01:30:00.000000Z", "2024-01-01T08:00:00+07:00"]) \
        == "2024-01-01T01:30:00.000000Z"
    assert projections.next_deadline({"open": True, "deadlines": {
        "follow_up": "2024-01-02T00:00:00.000000Z", "first_response": "2024-01-02T06:00:00+07:00"}}) \
        == ("first_response", "2024-01-02T06:00:00+07:00")


def test_derive_never_reads_the_data_of_facts_it_only_counts(logs):
    for cid, items in _facts_by_complaint(logs).items():
        blank = [dict(fact, data={}) if fact["event_type"] in projections.DATA_UNUSED else fact
                 for fact in items]
        assert projections.derive(cid, blank) == projections.derive(cid, items)


def test_fact_data_keeps_what_the_kept_fields_say(logs):
    """``fact_data`` works from a plan made once per type; a fact is still exactly the kept fields
    (computed ones computed, the lifecycle cut to ``LIFECYCLE_FIELDS``), in their order."""
    def by_definition(event_type, data):
        kept = projections.KEPT_FIELDS.get(event_type)
        if kept is None:
            return None
        out = {name: projections.DERIVED_FIELDS[name](data) if name in projections.DERIVED_FIELDS
               else data.get(name) for name in kept}
        if "lifecycle" in kept:
            out["lifecycle"] = {name: data["lifecycle"].get(name) for name in projections.LIFECYCLE_FIELDS}
        return out
    for events in logs.values():
        for event in events:
            made = projections.fact_data(event["event_type"], event["data"])
            expected = by_definition(event["event_type"], event["data"])
            assert made == expected and list(made or ()) == list(expected or ())


def test_the_month_of_a_time_in_the_stores_format_is_read_from_its_text():
    """``month_key`` takes the month from the text of an early-in-the-day UTC time; every other
    time is converted to WITA as before — at the day's and the month's edges the same month."""
    from datetime import timedelta
    from shared.core.events import isoformat_utc, parse_iso
    from shared.core.reference import month_key as converted
    moments = [datetime(2024, month, day, tzinfo=timezone.utc) + timedelta(hours=hour, minutes=minute)
               for month in (1, 2, 12) for day in (1, 28, 29) for hour in (0, 15, 16, 23)
               for minute in (0, 59)]
    moments += [datetime(1969, 12, 31, 15, tzinfo=timezone.utc), datetime(1900, 1, 1, tzinfo=timezone.utc)]
    for moment in moments:
        text = isoformat_utc(moment)
        assert projections.month_key(text) == converted(moment), text
        assert projections.month_key(text.replace("Z", "+00:00")) == converted(moment)
        assert projections.month_key(text[:19] + "Z") == converted(parse_iso(text[:19] + "Z"))


def test_the_live_path_and_the_rebuild_write_the_same_json_text(logs):
    """Facts and complaint columns are encoded by ``jsontext.dumps_sorted`` on both paths: the
    standard library reads the text back as the same value, and equal values (whatever their
    keys' order) give equal text, so a rebuilt row equals a live one byte for byte."""
    values = [projections.fact_data(event["event_type"], event["data"])
              for events in logs.values() for event in events]
    values = [value for value in values if value is not None]
    values += [["diskominfotik", "dpupr"], {"dikes": "Dinas Kesehatan", "a": "ü é"}, {}, [], "ü", None, 1.5]
    for value in values:
        text = repository._encode_fact_data(value)
        assert json.loads(text) == value
        assert repository._decode_fact_data(text) == value
        assert repository._fact_row({"data": value})["data"] == text
        assert repository._encode_sorted(value) == text
        if isinstance(value, dict):
            assert repository._encode_fact_data(dict(reversed(list(value.items())))) == text


def test_the_collector_is_paused_while_a_rebuild_runs_and_back_after(monkeypatch):
    import gc
    seen = []


    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        with repository._collector_paused():   # a second rebuild at the same time
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())             # still off: the first is still running
        raise RuntimeError("source down")

    monkeypatch.setattr(repository, "_rebuild", spy)
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        repository.rebuild(None, None, None, None, None)
    assert seen == [False, False, False]
    assert gc.isenabled()
    gc.disable()                                # off by the caller's choice: left off
    try:
        with repository._collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("complaint_chunk", [13, 2_000])
def test_a_rebuild_with_a_derive_helper_equals_the_live_projection(tmp_path, logs, live_dump, monkeypatch,
                                                                   complaint_chunk):
    """The second half of the complaints derived by a real helper process and copied in: the
    same rows as the live path, and the helper's file gone after."""
    monkeypatch.setattr(repository, "DERIVE_HELPER_MIN_FACTS", 1)
    store, _consumer = reporting(tmp_path / "rebuilt.db")
    progress: dict = {}
    repository.rebuild(store.database, fetch_from(logs), store.checkpoints, store.processed,
                       store.failures, chunk=complaint_chunk, progress=progress)
    assert progress["derive_helper"] is True
    helped = progress["derive_helper_result"]["complaints"]
    assert 0 < helped < len(live_dump["complaints"])
    assert dump(store) == live_dump
    assert sorted(path.name for path in tmp_path.iterdir() if "helper" in path.name) == []
    store.database.dispose()


def test_a_failing_derive_helper_fails_the_rebuild_and_the_live_generation_stays(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(repository, "DERIVE_HELPER_MIN_FACTS", 1)
    store, consumer = reporting(tmp_path / "rebuilt.db")
    consumer.handle_many(copy.deepcopy(logs["intake"][:5]), "intake")
    before = dump(store)
    monkeypatch.setattr(repository.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="derive helper failed"):
        repository.rebuild(store.database, fetch_from(logs), store.checkpoints, store.processed, store.failures)
    assert dump(store) == before
    with store.database.read() as connection:
        assert repository.current_generation(connection) == 1
    assert [path.name for path in tmp_path.iterdir() if "helper" in path.name] == []
    store.database.dispose()


def test_a_rebuild_with_a_read_helper_equals_the_live_projection(tmp_path):
    """Routing's log read by a real helper process straight from its store while the rebuild reads
    the others, both sorted into the facts together: the same rows as the live path, the checkpoints
    where the logs end, and the helper's file gone after."""
    seeder = Seeder(tmp_path / "sources")
    seeder.history(200, datetime(2020, 1, 1, tzinfo=timezone.utc), months=3)
    seeder.flush()
    logs = {source: json.loads(json.dumps(source_store.events_since(0, 1000)))
            for source, source_store in seeder.stores.items()}
    seeder.dispose()
    store, _consumer = reporting(tmp_path / "rebuilt.db")
    progress: dict = {}
    result = repository.rebuild(store.database, fetch_from(logs), store.checkpoints, store.processed,
                                store.failures, page=50, progress=progress,
                                helper_reads={"routing": f"sqlite:///{tmp_path / 'sources' / 'routing.db'}"})
    assert progress["read_helper"] is True
    assert progress["read_helper_result"]["events"] == len(logs["routing"]) > 0
    assert result["events"] == sum(map(len, logs.values())) and result["skipped"] == 0
    live_store = live(tmp_path / "live.db", logs)
    assert dump(store) == dump(live_store)
    live_store.database.dispose()
    with store.database.read() as connection:
        assert dict(connection.execute(select(store.checkpoints.c.source, store.checkpoints.c.position)).all()) == \
            {source: log[-1]["position"] for source, log in logs.items()}
    assert [path.name for path in tmp_path.iterdir() if "helper" in path.name] == []
    store.database.dispose()


def test_a_failing_read_helper_leaves_its_log_to_the_rebuild_itself(tmp_path, logs, live_dump, caplog):
    store, _consumer = reporting(tmp_path / "rebuilt.db")
    progress: dict = {}
    result = repository.rebuild(store.database, fetch_from(logs), store.checkpoints, store.processed,
                                store.failures, progress=progress,
                                helper_reads={"routing": f"sqlite:///{tmp_path / 'no-such-dir' / 'routing.db'}"})
    assert progress["read_helper"] is False and "read helper failed" in caplog.text
    assert result["events"] == sum(map(len, logs.values()))
    assert dump(store) == live_dump
    assert [path.name for path in tmp_path.iterdir() if "helper" in path.name] == []
    store.database.dispose()
