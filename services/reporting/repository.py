"""Reporting's persistence: applying facts to the live projection, reading it for the reports,
and rebuilding a new generation from the sources' logs while the live one keeps serving."""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from functools import lru_cache
from typing import Callable, Iterable

from sqlalchemy import bindparam, delete, func, inspect, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.db import Database
from shared.events import InvalidEvent, isoformat_utc, utc_now, validate_envelope
from services.reporting import tables
from services.reporting.projections import OPEN_STATUSES, derive, fact_from_event

log = logging.getLogger("reporting")

SOURCES = ("intake", "routing", "notification")
Fetch = Callable[[str, int, int], list]


# -- the live generation ------------------------------------------------------------------------
def current_generation(connection) -> int:
    row = connection.execute(select(tables.projection_state.c.generation)
                             .where(tables.projection_state.c.name == "live")).first()
    return int(row[0]) if row else 1


def ensure_live(database: Database, consumer_tables: Iterable) -> None:
    """Create the live generation's tables. On a database that has none yet, forget what the
    consumer handled before (an older projection), so catch-up fills the new one from the logs."""
    with database.transaction() as tx:
        state = tx.execute(select(tables.projection_state)).first()
        if state is None:
            tx.execute(tables.projection_state.insert().values(name="live", generation=1))
            for table in consumer_tables:
                tx.execute(delete(table))
        generation = current_generation(tx.connection)
    tables.projection(generation).metadata.create_all(database.engine)


# -- applying one event (the live path) --------------------------------------------------------
def apply_event(tx, envelope: dict) -> None:
    # A catch-up page is one transaction: read the generation once for it.
    generation = getattr(tx, "reporting_generation", None)
    if generation is None:
        generation = tx.reporting_generation = current_generation(tx.connection)
    apply_to(tx.connection, tables.projection(generation), envelope)


class _Statements:
    """Statements built once per generation and dialect (building them per event costs more
    than running them)."""

    def __init__(self, projection: tables.Projection, dialect: str):
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        facts, complaints = projection.facts, projection.complaints
        self.insert_fact = insert(facts).on_conflict_do_nothing()
        self.facts_of = select(facts).where(facts.c.complaint_id == bindparam("cid"))
        upsert = insert(complaints)
        self.upsert_complaint = upsert.on_conflict_do_update(
            index_elements=[complaints.c.complaint_id],
            set_={column.name: upsert.excluded[column.name] for column in complaints.columns
                  if column.name != "complaint_id"})
        self.delete_assignments = delete(projection.assignments).where(
            projection.assignments.c.complaint_id == bindparam("cid"))
        self.delete_answers = delete(projection.answers).where(
            projection.answers.c.complaint_id == bindparam("cid"))
        self.insert_assignments = projection.assignments.insert()
        self.insert_answers = projection.answers.insert()


@lru_cache(maxsize=None)
def _statements(generation: int, dialect: str) -> _Statements:
    return _Statements(tables.projection(generation), dialect)


def apply_to(connection, projection: tables.Projection, envelope: dict) -> None:
    fact = fact_from_event(envelope)
    if fact is None:
        return
    sql = _statements(projection.generation, connection.dialect.name)
    cid = fact["complaint_id"]
    connection.execute(sql.insert_fact, _fact_row(fact))
    derived = derive(cid, [_fact_from_row(row) for row in connection.execute(sql.facts_of, {"cid": cid}).mappings()])
    connection.execute(sql.upsert_complaint, _complaint_row(derived["complaint"]))
    # Only routing facts shape assignments and answers.
    if fact["source"] == "routing":
        connection.execute(sql.delete_assignments, {"cid": cid})
        if derived["assignments"]:
            connection.execute(sql.insert_assignments, derived["assignments"])
        if fact["event_type"] == "ComplaintResponded":
            connection.execute(sql.delete_answers, {"cid": cid})
            if derived["answers"]:
                connection.execute(sql.insert_answers, derived["answers"])


def _fact_row(fact: dict) -> dict:
    return dict(fact, data=json.dumps(fact["data"], ensure_ascii=False, sort_keys=True))


def _fact_from_row(row) -> dict:
    fact = dict(row)
    fact["data"] = json.loads(fact["data"])
    return fact


def _complaint_row(row: dict) -> dict:
    return dict(row, lead_agencies=json.dumps(row["lead_agencies"]),
                coordinating_agencies=json.dumps(row["coordinating_agencies"]))


def _insert_derived(connection, projection: tables.Projection, derived: list[dict]) -> None:
    complaints = [_complaint_row(item["complaint"]) for item in derived]
    assignments = [row for item in derived for row in item["assignments"]]
    answers = [row for item in derived for row in item["answers"]]
    if complaints:
        connection.execute(projection.complaints.insert(), complaints)
    if assignments:
        connection.execute(projection.assignments.insert(), assignments)
    if answers:
        connection.execute(projection.answers.insert(), answers)


# -- reading -----------------------------------------------------------------------------------
def decode_complaint(row) -> dict:
    row = dict(row)
    row["lead_agencies"] = json.loads(row["lead_agencies"])
    row["coordinating_agencies"] = json.loads(row["coordinating_agencies"])
    return row


def live(connection) -> tables.Projection:
    return tables.projection(current_generation(connection))


def month_complaints(connection, month: str) -> list[dict]:
    c = live(connection).complaints
    rows = connection.execute(select(c).where(c.c.filed.is_(True), c.c.month == month)).mappings()
    return [decode_complaint(row) for row in rows]


def complaint_by_tracking_code(connection, tracking_code: str) -> tuple[dict, list[dict]] | None:
    projection = live(connection)
    c, a = projection.complaints, projection.answers
    row = connection.execute(select(c).where(c.c.tracking_code == tracking_code, c.c.filed.is_(True))).mappings().first()
    if row is None:
        return None
    answers = connection.execute(select(a).where(a.c.complaint_id == row["complaint_id"])
                                 .order_by(a.c.version)).mappings().all()
    return decode_complaint(row), [dict(answer) for answer in answers]


def agency_assignments(connection, agency_code: str) -> list[dict]:
    a = live(connection).assignments
    return [dict(row) for row in connection.execute(select(a).where(a.c.agency_code == agency_code)).mappings()]


def month_assignments(connection, month: str) -> list[dict]:
    projection = live(connection)
    a, c = projection.assignments, projection.complaints
    query = (select(a).join(c, c.c.complaint_id == a.c.complaint_id)
             .where(c.c.filed.is_(True), c.c.month == month))
    return [dict(row) for row in connection.execute(query).mappings()]


def trend_counts(connection, months: list[str]) -> list[dict]:
    c = live(connection).complaints
    query = (select(c.c.month, c.c.category, c.c.region_code, func.count().label("n"))
             .where(c.c.filed.is_(True), c.c.month.in_(months))
             .group_by(c.c.month, c.c.category, c.c.region_code))
    return [dict(row) for row in connection.execute(query).mappings()]


def open_complaints_with_deadline(connection) -> list[dict]:
    c = live(connection).complaints
    query = select(c).where(c.c.filed.is_(True), c.c.public_status.in_(OPEN_STATUSES),
                            c.c.next_due_at.is_not(None))
    return [decode_complaint(row) for row in connection.execute(query).mappings()]


# -- rebuilding --------------------------------------------------------------------------------
def rebuild(database: Database, fetch: Fetch, checkpoints, processed, failures,
            sources: Iterable[str] = SOURCES, page: int = 1000, chunk: int = 2000,
            progress: dict | None = None) -> dict:
    """Fill generation n+1 from every source's log, switch to it in one transaction (with the
    consumer's checkpoints set to where the rebuild read up to), drop the old generation."""
    started = time.monotonic()
    sources = list(sources)
    with database.read() as connection:
        old_generation = current_generation(connection)
    new = tables.projection(old_generation + 1)
    new.metadata.drop_all(database.engine)     # a leftover of an interrupted rebuild
    new.metadata.create_all(database.engine)

    positions = {source: 0 for source in sources}
    events = skipped = 0
    progress = progress if progress is not None else {}
    progress.update(events=0, phase="reading")

    # Memory stays flat whatever the history's size: facts go to the new generation's table in
    # chunks as they are read, then complaints are derived from it in complaint order.
    buffer: list[dict] = []

    def write_facts() -> None:
        if buffer:
            with database.transaction() as tx:
                tx.execute(new.facts.insert(), buffer)
            buffer.clear()
            time.sleep(0)  # let the live service answer between chunks (green under eventlet)

    for source in sources:
        for envelope in _pull(fetch, source, positions, page):
            events += 1
            if events % 1000 == 0:
                progress["events"] = events
            if envelope is None:
                skipped += 1
                continue
            fact = fact_from_event(envelope)
            if fact is not None:
                buffer.append(_fact_row(fact))
                if len(buffer) >= 5 * chunk:
                    write_facts()
    write_facts()

    progress.update(events=events, phase="writing")
    derived: list[dict] = []

    def write_derived() -> None:
        if derived:
            with database.transaction() as tx:
                _insert_derived(tx.connection, new, derived)
            derived.clear()
            time.sleep(0)

    with database.read() as reader:
        rows = reader.execution_options(stream_results=True, yield_per=chunk).execute(
            select(new.facts).order_by(new.facts.c.complaint_id)).mappings()
        current_id, current = None, []
        for row in rows:
            if row["complaint_id"] != current_id:
                if current_id is not None:
                    derived.append(derive(current_id, current))
                    if len(derived) >= chunk:
                        write_derived()
                current_id, current = row["complaint_id"], []
            current.append(_fact_from_row(row))
        if current_id is not None:
            derived.append(derive(current_id, current))
    write_derived()

    # Events recorded while the bulk was written: read them now (no RPC inside a transaction),
    # apply them and switch in one transaction.
    tail = [(source, envelope) for source in sources
            for envelope in _pull(fetch, source, positions, page)]
    with database.transaction() as tx:
        for _source, envelope in tail:
            events += 1
            if envelope is None:
                skipped += 1
            else:
                apply_to(tx.connection, new, envelope)
        tx.execute(update(tables.projection_state).where(tables.projection_state.c.name == "live")
                   .values(generation=new.generation, rebuilt_at=isoformat_utc(utc_now()),
                           rebuilt_events=events))
        # From here the consumer continues where the rebuild stopped reading; whatever the old
        # generation handled after that is handled again, into the new one.
        tx.execute(delete(processed))
        tx.execute(delete(failures))
        now = isoformat_utc(utc_now())
        for source, position in positions.items():
            tx.execute(delete(checkpoints).where(checkpoints.c.source == source))
            tx.execute(checkpoints.insert().values(source=source, position=position, updated_at=now))
    drop_other_generations(database, new.generation)
    seconds = round(time.monotonic() - started, 3)
    log.info("projections rebuilt: generation %s, %s events (%s skipped) in %ss",
             new.generation, events, skipped, seconds)
    return {"events": events, "seconds": seconds, "generation": new.generation, "skipped": skipped}


def _pull(fetch: Fetch, source: str, positions: dict, page: int):
    """Yields validated envelopes (None for an invalid one) after positions[source], advancing it."""
    while True:
        batch = fetch(source, positions[source], page)
        for raw in batch:
            try:
                envelope = validate_envelope(raw, expected_source=source)
            except InvalidEvent:
                envelope = None
            if isinstance(raw, dict) and isinstance(raw.get("position"), int):
                positions[source] = max(positions[source], raw["position"])
            yield envelope
        if len(batch) < page:
            return


def drop_other_generations(database: Database, keep: int) -> None:
    names = inspect(database.engine).get_table_names()
    for generation in sorted({int(name.rsplit("_g", 1)[1]) for name in names
                              if name.startswith("complaints_g") and name.rsplit("_g", 1)[1].isdigit()}):
        if generation == keep:
            continue
        try:
            tables.projection(generation).metadata.drop_all(database.engine)
        except Exception as error:  # a reader still on it: the next rebuild drops it
            log.warning("could not drop projection generation %s: %s", generation, error)


def find_complaints(connection, tracking_codes=None, category=None, filed_from=None, filed_to=None,
                    open_only=None, limit: int = 200) -> list[tuple[dict, list[dict]]]:
    """Complaints for Open311's ``GET requests``: newest first, with their answers."""
    projection = live(connection)
    c, a = projection.complaints, projection.answers
    query = select(c).where(c.c.filed.is_(True))
    if tracking_codes:
        query = query.where(c.c.tracking_code.in_(list(tracking_codes)))
    if category:
        query = query.where(c.c.category == category)
    if filed_from:
        query = query.where(c.c.filed_at >= filed_from)
    if filed_to:
        query = query.where(c.c.filed_at <= filed_to)
    if open_only is True:
        query = query.where(c.c.public_status.in_(("diterima", "disetujui", "diproses")))
    elif open_only is False:
        query = query.where(c.c.public_status.in_(("ditolak", "selesai")))
    rows = connection.execute(query.order_by(c.c.filed_at.desc()).limit(limit)).mappings().all()
    found = []
    for row in rows:
        answers = connection.execute(select(a).where(a.c.complaint_id == row["complaint_id"])
                                     .order_by(a.c.version)).mappings().all()
        found.append((decode_complaint(row), [dict(answer) for answer in answers]))
    return found
