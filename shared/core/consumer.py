"""The consuming side of every service: idempotent event handling and catch-up by pulling.

``EventConsumer.handle`` runs a handler and records the event as processed *in the same
transaction*, so a redelivered or replayed event changes nothing. Per source it keeps a
contiguous checkpoint — every position up to it is handled — plus the handled positions above
it (events arrive per type on separate queues, so they come out of order). ``CatchUp`` pulls
``<source>.events_since(checkpoint, limit)`` to fill whatever push did not deliver.

An event that fails validation is quarantined; when it was pulled from the source's log it is
also counted as handled (the checkpoint moves on) — a pushed one is not believed about its position;
one whose handler keeps raising is retried on the next pulls and quarantined after
``MAX_HANDLER_FAILURES`` so nothing loops forever.

Only the source's own log says what sits at a position: anyone allowed to publish on the broker
could push an event with a position it does not own. So per source there is also a *confirmed*
position (every event up to it read from the log); pushed events are handled at once but recorded
with their event id above it, and catch-up pulls from the confirmed position, not the checkpoint.
A pulled event whose position holds a pushed one with the same id confirms it; one with another id
is applied (the pushed one was an impostor, reported in quarantine as kind ``forged``); a pushed
event that contradicts what was recorded waits for the pull.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from shared.core.fast_sql import fast
from shared.core import metrics
from shared.core.db import Database, Transaction, execute_driver
from shared.core.events import Envelope, InvalidEvent, fast_check, isoformat_utc, utc_now, validate_envelope
from shared.core.events.catalogue import NeedsHistory, upcast
from shared.core.eventstore import MAX_ID_PAGE
from shared.core.quarantine import Quarantine

log = logging.getLogger(__name__)

MAX_HANDLER_FAILURES = 3

#: The confirmed position of a source is kept as a marker row in ``processed_events`` at minus that
#: position (real positions start at 1; no schema change). No marker means "up to the checkpoint":
#: what was handled before confirmation existed, or what a rebuild set after reading the logs.
CONFIRMED = "confirmed"

Handler = Callable[[Transaction, Envelope], None]


def read_envelope(raw: Any, source: str) -> Envelope:
    """A received event checked against its own version's schema, then lifted to its type's
    latest version by the catalogue's upcasters: handlers only ever see current events. The
    compiled check vouches for nearly every event; the catalogue judges (and lifts) the rest."""
    if type(raw) is dict and fast_check.accepts(raw, source):
        return Envelope.from_dict(raw)
    return Envelope.from_dict(upcast(validate_envelope(raw, expected_source=source)))


class _NeedsSavepoints(Exception):
    """A handler raised in a batch run without savepoints: run the batch again with them."""


class HandlerRejected(Exception):
    """A handler found the event impossible to apply (e.g. it contradicts the state): the
    event is quarantined with this reason instead of being retried."""


def consumer_tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    if "consumer_checkpoints" in metadata.tables:
        tables = metadata.tables
        return tables["consumer_checkpoints"], tables["processed_events"], tables["handler_failures"]
    checkpoints = Table(
        "consumer_checkpoints", metadata,
        Column("source", String(32), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", String(40), nullable=False),
    )
    processed = Table(
        "processed_events", metadata,
        Column("source", String(32), primary_key=True),
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("event_id", String(36), nullable=False),
        Column("outcome", String(16), nullable=False),  # handled | ignored | quarantined
    )
    failures = Table(
        "handler_failures", metadata,
        Column("source", String(32), primary_key=True),
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("failures", Integer, nullable=False),
        Column("last_error", Text, nullable=False),
    )
    return checkpoints, processed, failures


#: Records read a round when the checkpoint moves over contiguous handled positions: a few at
#: first (usually the run ends at once, at the next gap), twice as many each round it goes on.
ADVANCE_FIRST_PAGE, ADVANCE_LAST_PAGE = 8, 1024


class _Statements:
    """The consumer's per-event statements, built once: building a SQLAlchemy statement (and its
    cache key) on every call cost more than running it (issue 17's profiles)."""

    def __init__(self, checkpoints: Table, processed: Table, failures: Table):
        cp, pe, fl = checkpoints, processed, failures
        self.checkpoint = select(cp.c.position).where(cp.c.source == bindparam("b_source"))
        self.checkpoint_for_update = self.checkpoint.with_for_update()
        self.insert_checkpoint = cp.insert()
        self.move_checkpoint = (update(cp).where(cp.c.source == bindparam("b_source"))
                                .values(position=bindparam("b_position"), updated_at=bindparam("b_at")))
        self.insert_processed = pe.insert()
        self.recorded_id = select(pe.c.event_id).where(pe.c.source == bindparam("b_source"),
                                                      pe.c.position == bindparam("b_position"))
        self.recorded_between = select(pe.c.position, pe.c.event_id).where(
            pe.c.source == bindparam("b_source"), pe.c.position > bindparam("b_low"),
            pe.c.position <= bindparam("b_high"))
        self.recorded_at = select(pe.c.position, pe.c.event_id).where(
            pe.c.source == bindparam("b_source"), pe.c.position.in_(bindparam("b_positions", expanding=True)))
        self.marker = select(pe.c.position).where(pe.c.source == bindparam("b_source"), pe.c.position <= 0)
        # The checkpoint and the confirmed position's marker in one statement (one round trip);
        # FOR UPDATE (PostgreSQL) locks the checkpoint row only.
        marker = pe.alias("marker")
        self.checkpoint_and_marker = (
            select(cp.c.position, marker.c.position)
            .select_from(cp.outerjoin(marker, (marker.c.source == cp.c.source) & (marker.c.position <= 0)))
            .where(cp.c.source == bindparam("b_source")))
        self.checkpoint_and_marker_for_update = self.checkpoint_and_marker.with_for_update(of=cp)
        self.above = (select(pe.c.position).where(pe.c.source == bindparam("b_source"),
                                                  pe.c.position > bindparam("b_position"))
                      .order_by(pe.c.position).limit(bindparam("b_limit")))
        self.forget_confirmed = delete(pe).where(pe.c.source == bindparam("b_source"),
                                                 pe.c.position <= bindparam("b_position"),
                                                 pe.c.position <= bindparam("b_checkpoint"))
        self.clear_failures = delete(fl).where(fl.c.source == bindparam("b_source"),
                                               fl.c.position.in_(bindparam("b_positions", expanding=True)))
        # Run straight on the driver where they can be (``shared.core.fast_sql``; the expanding
        # ``IN`` lists and the executemany inserts still go through SQLAlchemy).
        for name, statement in list(vars(self).items()):
            setattr(self, name, fast(statement))


class EventConsumer:
    def __init__(self, database: Database, quarantine: Quarantine, handlers: dict[str, Handler],
                 checkpoints: Table, processed: Table, failures: Table, service: str = "consumer"):
        self.service = service
        self.highest_seen: dict[str, int] = {}
        self.database = database
        self.quarantine = quarantine
        self.handlers = handlers
        self.checkpoints = checkpoints
        self.processed = processed
        self.failures = failures
        self.handled_count = 0
        self._sql = _Statements(checkpoints, processed, failures)

    # -- push and pull both land here ------------------------------------------------------
    def handle(self, raw: Any, source: str, pulled: bool = False) -> str:
        """Handle one received event; returns handled | ignored | duplicate | quarantined.
        ``pulled``: it was read from the source's own log (catch-up), not pushed by the broker."""
        started = time.perf_counter()
        outcome = "failed"
        try:
            outcome = self._handle(raw, source, pulled)
            return outcome
        finally:
            metrics.EVENTS_HANDLED.labels(self.service, source, outcome).inc()
            metrics.HANDLER_SECONDS.labels(self.service, source).observe(time.perf_counter() - started)

    def _handle(self, raw: Any, source: str, pulled: bool = False) -> str:
        try:
            envelope = read_envelope(raw, source)
        except NeedsHistory as error:
            if not pulled:
                # An old event still in a queue from before an upgrade: its source lifts it
                # with the complaint's history, so catch-up pulls the current version.
                return "deferred"
            return self._quarantine_invalid(raw, source, str(error), pulled)
        except (InvalidEvent, KeyError, TypeError) as error:
            return self._quarantine_invalid(raw, source, str(error), pulled)
        if envelope.position > self.highest_seen.get(source, 0):
            self.highest_seen[source] = envelope.position
        try:
            with self.database.transaction() as tx:
                checkpoint, confirmed = self._lock_and_confirmed(tx, source)
                decision = self._decide(tx, source, envelope, checkpoint, confirmed, pulled)
                if decision in ("duplicate", "deferred"):
                    if decision == "duplicate" and pulled:
                        self._confirm(tx, source, envelope.position, confirmed)
                    return decision
                outcome = self._apply(tx, envelope, source)
                self._record(tx, source, envelope, outcome, checkpoint=checkpoint,
                             replacing=decision == "replace")
                if pulled:
                    self._confirm(tx, source, envelope.position, confirmed)
            self.handled_count += 1
            return outcome
        except IntegrityError:
            # Another worker recorded the same event first (push and pull raced).
            return "duplicate"
        except Exception as error:
            self._count_failure(source, envelope, error)
            raise

    def handle_many(self, raws: list[Any], source: str) -> dict[str, int]:
        """Handle a page of pulled events in ONE transaction (catching up a long history is
        dominated by per-transaction cost): the same outcomes as ``handle`` one by one, each
        handler in its own savepoint. A handler that raises is rolled back alone and counted as
        a failure after the commit, exactly as ``handle`` would."""
        outcomes: dict[str, int] = {}

        def count(outcome: str) -> None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            metrics.EVENTS_HANDLED.labels(self.service, source, outcome).inc()

        envelopes: list[Envelope] = []
        for raw in raws:
            try:
                envelopes.append(read_envelope(raw, source))
            except (InvalidEvent, NeedsHistory, KeyError, TypeError) as error:
                count(self._quarantine_invalid(raw, source, str(error), pulled=True))
        for envelope in envelopes:
            if envelope.position > self.highest_seen.get(source, 0):
                self.highest_seen[source] = envelope.position
        failed: list[tuple[Envelope, Exception]] = []
        try:
            with self.database.transaction() as tx:
                checkpoint, confirmed = self._lock_and_confirmed(tx, source)
                confirmed, envelopes, repeated = self._confirm_repeats(tx, source, envelopes, checkpoint,
                                                                       confirmed)
                for _ in range(repeated):
                    count("duplicate")
                # The records at the page's positions, read once (the checkpoint row is locked:
                # nobody else records for the source meanwhile): each event is decided against
                # them without a read an event. The confirmed position moves in memory and is
                # written once, at the end — the same rows as moving it event by event (what it
                # forgets lies at or below it, never at a position still to decide).
                highest = max((envelope.position for envelope in envelopes), default=confirmed)
                known = {int(position): str(event_id) for position, event_id in tx.execute(
                    self._sql.recorded_between, {"b_source": source, "b_low": confirmed, "b_high": highest})} \
                    if highest > confirmed else {}
                confirmed_at_start = confirmed
                recorded: list[int] = []
                rows: list[dict[str, Any]] = []
                for envelope in envelopes:
                    if envelope.position in recorded[-1:]:
                        count("duplicate")
                        continue
                    decision = self._decide(tx, source, envelope, checkpoint, confirmed, pulled=True, known=known)
                    if decision == "duplicate":
                        confirmed = _confirmed_next(confirmed, envelope.position)
                        count("duplicate")
                        continue
                    try:
                        outcome = self._apply(tx, envelope, source)
                    except Exception as error:
                        failed.append((envelope, error))
                        continue
                    if decision == "replace":
                        self._replace_impostor(tx, source, envelope)
                    rows.append({"source": source, "position": envelope.position, "event_id": envelope.event_id,
                                 "outcome": outcome})
                    known[envelope.position] = envelope.event_id
                    confirmed = _confirmed_next(confirmed, envelope.position)
                    recorded.append(envelope.position)
                    count(outcome)
                if confirmed != confirmed_at_start:
                    tx.execute(self._sql.forget_confirmed, {"b_source": source, "b_position": confirmed,
                                                            "b_checkpoint": checkpoint})
                    # A record the move forgets is not written at all (event by event it was
                    # written, then forgotten).
                    forgotten = min(confirmed, checkpoint)
                    rows = [row for row in rows if row["position"] > forgotten]
                    rows.append({"source": source, "position": -confirmed, "event_id": CONFIRMED,
                                 "outcome": CONFIRMED})
                self._write_records(tx, rows, {source: recorded} if recorded else {})
                if recorded:
                    self._advance(tx, source, checkpoint)
            self.handled_count += sum(n for key, n in outcomes.items() if key != "duplicate")
        except IntegrityError:
            # Push recorded one of these meanwhile: fall back to one at a time.
            for envelope in envelopes:
                try:
                    outcome = self.handle(envelope.to_dict(), source)
                except Exception:
                    outcome = "failed"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            return outcomes
        for envelope, failure in failed:
            log.warning("handler for %s/%s failed: %s: %s", source, envelope.position,
                        type(failure).__name__, failure)
            self._count_failure(source, envelope, failure)
            count("failed")
        return outcomes

    def handle_batch(self, deliveries: list[tuple[Any, str]]) -> list[str]:
        """Handle several pushed events — ``(payload, source)`` as the broker delivered them — in
        ONE transaction (group commit: the commit is most of what one event costs). Returns each
        delivery's outcome, in order: handled | ignored | duplicate | deferred | quarantined | failed.

        Per event the rules of ``handle(pulled=False)``: an invalid event is quarantined (its own
        transaction, before the batch's), a pushed event is never believed about its position
        (recorded above the confirmed position, so catch-up checks it against the log), one that
        contradicts a recorded event at its position waits for catch-up. Events are handled in the
        order they were delivered; each handler runs in a savepoint, so a handler that raises is
        rolled back alone, the others commit, and its failure is counted after the commit as
        ``handle`` counts it (quarantined after ``MAX_HANDLER_FAILURES``). If the transaction itself
        fails (a push/pull race on PostgreSQL, a deadlock, a lost connection) nothing of it was
        committed and the batch is handled again one event at a time, each in its own transaction.
        Nothing is acknowledged to the broker before this returns."""
        started = time.perf_counter()
        outcomes: list[str] = ["failed"] * len(deliveries)
        readable: list[tuple[int, str, Envelope]] = []
        for index, (raw, source) in enumerate(deliveries):
            try:
                envelope = read_envelope(raw, source)
            except NeedsHistory:
                outcomes[index] = "deferred"  # catch-up pulls it lifted by its source (see ``_handle``)
                continue
            except (InvalidEvent, KeyError, TypeError) as error:
                outcomes[index] = self._quarantine_invalid(raw, source, str(error), pulled=False)
                continue
            if envelope.position > self.highest_seen.get(source, 0):
                self.highest_seen[source] = envelope.position
            readable.append((index, source, envelope))
        failed: list[tuple[int, str, Envelope, Exception]] = []
        try:
            try:
                # The common case first: no handler fails, so none needs a savepoint of its own
                # (two statements and SQLAlchemy's nested-transaction machinery an event).
                batch_outcomes, failed = self._batch_transaction(readable, outcomes, savepoints=False)
            except _NeedsSavepoints:
                # A handler raised: nothing of the batch was committed; again, each handler in a
                # savepoint, so that only its own writes are undone and the rest commit.
                batch_outcomes, failed = self._batch_transaction(readable, outcomes, savepoints=True)
            outcomes = batch_outcomes
        except Exception as error:
            log.warning("a batch of %d pushed events failed as a whole (%s: %s); handling them one "
                        "by one", len(readable), type(error).__name__, error)
            for index, source, envelope in readable:
                try:
                    outcomes[index] = self.handle(deliveries[index][0], source)
                except Exception:
                    outcomes[index] = "failed"   # counted by ``handle``; catch-up retries it
            self._observe_batch(deliveries, outcomes, started, skip={index for index, _, _ in readable})
            return outcomes
        self.handled_count += sum(1 for outcome in outcomes if outcome not in ("duplicate", "deferred", "failed"))
        for index, source, envelope, failure in failed:
            log.warning("handler for %s/%s failed: %s: %s", source, envelope.position,
                        type(failure).__name__, failure)
            self._count_failure(source, envelope, failure)
            outcomes[index] = "failed"
        self._observe_batch(deliveries, outcomes, started)
        return outcomes

    def _batch_transaction(self, readable: list[tuple[int, str, Envelope]], outcomes: list[str], savepoints: bool
                           ) -> tuple[list[str], list[tuple[int, str, Envelope, Exception]]]:
        """``handle_batch``'s transaction: the outcomes (a copy of ``outcomes`` filled in) and the
        handlers that raised. Without ``savepoints`` a handler that raises aborts the whole
        transaction with ``_NeedsSavepoints``."""
        outcomes = list(outcomes)
        failed: list[tuple[int, str, Envelope, Exception]] = []
        with self.database.transaction() as tx:
            # Every source's checkpoint row locked up front, in one order (PostgreSQL: two
            # batches never wait for each other crosswise); SQLite's BEGIN IMMEDIATE already
            # serialises writers.
            sources = sorted({source for _, source, _ in readable})
            checkpoints: dict[str, int] = {}
            confirmed: dict[str, int] = {}
            for source in sources:
                checkpoints[source], confirmed[source] = self._lock_and_confirmed(tx, source)
            # What is recorded at the batch's positions, one read a source (instead of one an
            # event); kept up to date below, so that the same event twice in one batch is a
            # duplicate the second time, exactly as if delivered twice. Only the batch's own
            # positions: everything recorded above the confirmed position is often hundreds of
            # rows (a source's events this consumer does not subscribe to wait for catch-up).
            known: dict[str, dict[int, str]] = {}
            for source in sources:
                positions = sorted({envelope.position for _, of, envelope in readable
                                    if of == source and envelope.position > confirmed[source]})
                known[source] = {int(position): str(event_id) for position, event_id in tx.execute(
                    self._sql.recorded_at, {"b_source": source, "b_positions": positions})} if positions else {}
            recorded: dict[str, list[int]] = {}
            rows: list[dict[str, Any]] = []
            for index, source, envelope in readable:
                decision = self._decide(tx, source, envelope, checkpoints[source], confirmed[source],
                                        pulled=False, known=known[source])
                if decision in ("duplicate", "deferred"):
                    outcomes[index] = decision
                    continue
                try:
                    outcome = self._apply(tx, envelope, source, savepoint=savepoints)
                except (IntegrityError, _NeedsSavepoints):
                    raise  # IntegrityError: ``handle`` gives it its own meaning, handled again one by one
                except Exception as error:
                    failed.append((index, source, envelope, error))
                    continue
                rows.append({"source": source, "position": envelope.position, "event_id": envelope.event_id,
                             "outcome": outcome})
                known[source][envelope.position] = envelope.event_id
                recorded.setdefault(source, []).append(envelope.position)
                outcomes[index] = outcome
            self._write_records(tx, rows, recorded)
            for source in recorded:
                self._advance(tx, source, checkpoints[source])
        return outcomes, failed

    def _write_records(self, tx: Transaction, rows: list[dict[str, Any]], recorded: dict[str, list[int]]) -> None:
        """A batch's records and the clearing of their failure counts: on PostgreSQL in one round
        trip (the statements sent together, straight to the driver); elsewhere statement by
        statement."""
        if tx.connection.dialect.name != "postgresql":
            if rows:
                tx.execute(self._sql.insert_processed, rows)   # one statement for the batch's records
            for source, positions in recorded.items():
                tx.execute(self._sql.clear_failures, {"b_source": source, "b_positions": positions})
            return
        statements: list[str] = []
        parameters: list[Any] = []
        if rows:
            statements.append(f"INSERT INTO {self.processed.name} (source, position, event_id, outcome) VALUES "
                              + ", ".join(["(%s, %s, %s, %s)"] * len(rows)))
            for row in rows:
                parameters += [row["source"], row["position"], row["event_id"], row["outcome"]]
        for source, positions in recorded.items():
            statements.append(f"DELETE FROM {self.failures.name} WHERE source = %s AND position = ANY(%s)")
            parameters += [source, positions]
        if statements:
            execute_driver(tx.connection, "; ".join(statements), parameters)

    def _observe_batch(self, deliveries: list[tuple[Any, str]], outcomes: list[str], started: float,
                       skip: Iterable[int] = ()) -> None:
        """Metrics of a batch, per event as ``handle`` counts them (its time shared evenly);
        ``skip``: deliveries ``handle`` already counted."""
        skipped = set(skip)
        share = (time.perf_counter() - started) / max(1, len(deliveries))
        for index, (_, source) in enumerate(deliveries):
            if index in skipped:
                continue
            metrics.EVENTS_HANDLED.labels(self.service, source, outcomes[index]).inc()
            metrics.HANDLER_SECONDS.labels(self.service, source).observe(share)

    def _apply(self, tx: Transaction, envelope: Envelope, source: str, savepoint: bool = True) -> str:
        """Run the event's handler in a savepoint: handled, ignored (no handler) or quarantined
        (the handler rejected it; its partial writes are rolled back). Other errors propagate.
        Without ``savepoint`` any exception of the handler becomes ``_NeedsSavepoints`` (the
        caller runs the whole transaction again with savepoints)."""
        handler = self.handlers.get(envelope.event_type)
        if handler is None:
            return "ignored"
        if not savepoint:
            try:
                handler(tx, envelope)
            except Exception as error:
                raise _NeedsSavepoints() from error
            return "handled"
        try:
            with tx.connection.begin_nested():
                handler(tx, envelope)
            return "handled"
        except HandlerRejected as rejection:
            self.quarantine.put(tx.connection, "event", str(rejection), envelope.to_dict(),
                                source=source, position=envelope.position)
            return "quarantined"

    def replay(self, item: dict[str, Any], actor: str) -> str:
        """Run a quarantined event's handler again (after a fix); the item is marked replayed
        only if the handler now succeeds."""
        raw = json.loads(item["payload"])
        source = item["source"]
        try:
            envelope = read_envelope(raw, source)
            handler = self.handlers.get(envelope.event_type)
            with self.database.transaction() as tx:
                if handler is not None:
                    handler(tx, envelope)
                self.quarantine.mark_replayed(tx.connection, item["item_id"], actor)
                checkpoint = self._lock_checkpoint(tx, source)
                if (not self._seen(tx, source, envelope.position)
                        and envelope.position > checkpoint):
                    self._record(tx, source, envelope, "handled", checkpoint=checkpoint)
            return "replayed"
        except (InvalidEvent, NeedsHistory, KeyError, TypeError, HandlerRejected) as error:
            with self.database.transaction() as tx:
                self.quarantine.mark_failed_again(tx.connection, item["item_id"], str(error), actor)
            return "still_quarantined"

    def checkpoint(self, source: str) -> int:
        with self.database.read() as connection:
            row = connection.execute(select(self.checkpoints.c.position)
                                     .where(self.checkpoints.c.source == source)).first()
        return int(row[0]) if row else 0

    def confirmed(self, source: str) -> int:
        """Up to where the source's own log confirmed what was handled (catch-up reads from here)."""
        with self.database.read() as connection:
            checkpoint = connection.execute(select(self.checkpoints.c.position)
                                            .where(self.checkpoints.c.source == source)).scalar()
            marker = connection.execute(select(self.processed.c.position).where(
                self.processed.c.source == source, self.processed.c.position <= 0)).scalar()
        checkpoint = int(checkpoint or 0)
        return checkpoint if marker is None else min(-int(marker), checkpoint)

    def reset(self, tx: Transaction) -> None:
        """Forget everything handled (used when a projection is rebuilt from scratch)."""
        for table in (self.checkpoints, self.processed, self.failures):
            tx.execute(delete(table))

    # -- internals ---------------------------------------------------------------------------
    def _quarantine_invalid(self, raw: Any, source: str, reason: str, pulled: bool = False) -> str:
        position = raw.get("position") if isinstance(raw, dict) else None
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        claimed_source = raw.get("source") if isinstance(raw, dict) else None
        with self.database.transaction() as tx:
            # Only the source's own log is believed about what sits at a position: a pushed message
            # may come from anyone allowed to publish, and trusting its claim would let it take the
            # place of the real event there (which would then be skipped as a duplicate).
            if pulled and isinstance(position, int) and position > 0 and claimed_source == source:
                checkpoint, confirmed = self._lock_and_confirmed(tx, source)
                if position <= confirmed:
                    return "duplicate"
                # The source's log really holds something at this position that we cannot read:
                # count it as handled so the checkpoint moves on; replay can apply it later.
                # (Whatever was pushed at this position was not it.)
                tx.execute(delete(self.processed).where(self.processed.c.source == source,
                                                        self.processed.c.position == position))
                tx.execute(self.processed.insert().values(
                    source=source, position=position, event_id=str(event_id)[:36], outcome="quarantined"))
                self._advance(tx, source, checkpoint)
                self._confirm(tx, source, position, confirmed)
            self.quarantine.put(tx.connection, "event", reason, raw, source=source,
                                position=position if isinstance(position, int) else None)
        log.warning("quarantined an invalid event from %s: %s", source, reason)
        return "quarantined"

    def _lock_and_confirmed(self, tx: Transaction, source: str) -> tuple[int, int]:
        """``_lock_checkpoint`` and ``_confirmed`` together: the checkpoint (its row locked) and
        the confirmed position, read in one statement."""
        postgresql = tx.connection.dialect.name == "postgresql"
        query = self._sql.checkpoint_and_marker_for_update if postgresql else self._sql.checkpoint_and_marker
        row = tx.execute(query, {"b_source": source}).first()
        if row is None:   # the source's first event: the row is created, as _lock_checkpoint does
            checkpoint = self._lock_checkpoint(tx, source)
            return checkpoint, self._confirmed(tx, source, checkpoint)
        checkpoint, marker = int(row[0]), row[1]
        if marker is None:
            return checkpoint, self._confirmed(tx, source, checkpoint)   # writes the first marker
        # Never above the checkpoint (see ``_confirmed``).
        return checkpoint, min(-int(marker), checkpoint)

    def _lock_checkpoint(self, tx: Transaction, source: str) -> int:
        # FOR UPDATE serialises handlers of one source on PostgreSQL; SQLite's BEGIN IMMEDIATE
        # already serialises writers.
        query = self._sql.checkpoint_for_update if tx.connection.dialect.name == "postgresql" \
            else self._sql.checkpoint
        row = tx.execute(query, {"b_source": source}).first()
        if row is None:
            tx.execute(self._sql.insert_checkpoint, {"source": source, "position": 0,
                                                     "updated_at": isoformat_utc(utc_now())})
            return 0
        return int(row[0])

    def _checkpoint_value(self, tx: Transaction, source: str) -> int:
        row = tx.execute(self._sql.checkpoint, {"b_source": source}).first()
        return int(row[0]) if row else 0

    def _decide(self, tx: Transaction, source: str, envelope: Envelope, checkpoint: int, confirmed: int,
                pulled: bool, known: dict[int, str] | None = None) -> str:
        """What to do with an event: duplicate | deferred | apply | replace (apply, and drop the
        record of a different, pushed event at its position). ``known``: the records above
        ``confirmed`` already read (a batch reads them at once)."""
        if envelope.position <= confirmed:
            return "duplicate"
        recorded = known.get(envelope.position) if known is not None else \
            self._recorded_id(tx, source, envelope.position)
        if recorded is None:
            # Below the checkpoint without a record: handled before confirmation existed (or set by
            # a rebuild that read the log itself) — believed.
            return "duplicate" if envelope.position <= checkpoint else "apply"
        if recorded == envelope.event_id:
            return "duplicate"
        if not pulled:
            log.warning("a pushed event %s/%s contradicts the one recorded there; catch-up decides",
                        source, envelope.position)
            return "deferred"
        return "replace"

    def _recorded_id(self, tx: Transaction, source: str, position: int) -> str | None:
        row = tx.execute(self._sql.recorded_id, {"b_source": source, "b_position": position}).first()
        return None if row is None else str(row[0])

    def _confirmed(self, tx: Transaction, source: str, checkpoint: int) -> int:
        row = tx.execute(self._sql.marker, {"b_source": source}).first()
        if row is None:
            # No marker yet: everything up to the checkpoint was handled before confirmation
            # existed (or set by a rebuild that read the logs itself); confirm from there on.
            tx.execute(self.processed.insert().values(source=source, position=-checkpoint,
                                                      event_id=CONFIRMED, outcome=CONFIRMED))
            return checkpoint
        # Never above the checkpoint: a rebuild (reporting) may set the checkpoint back to where it
        # read the logs up to, and what came after must be read again.
        return min(-int(row[0]), checkpoint)

    def _confirm_repeats(self, tx: Transaction, source: str, envelopes: list[Envelope], checkpoint: int,
                         confirmed: int) -> tuple[int, list[Envelope], int]:
        """A pulled page mostly repeats what was pushed and handled already (catch-up re-reads from
        the confirmed position to check pushed events against the log): confirm its leading run of
        such events at once — one read of their records, one move of the marker — instead of four
        statements an event. Returns the confirmed position, the envelopes still to decide (from
        the first that is not a plain repeat on), and how many were repeats. The outcome is what
        ``_decide`` + ``_confirm`` one by one would give."""
        moved, index = self._confirm_run(tx, source, [(e.position, e.event_id) for e in envelopes],
                                         checkpoint, confirmed)
        return moved, envelopes[index:], index

    def _confirm_run(self, tx: Transaction, source: str, pairs: list[tuple[int, str]], checkpoint: int,
                     confirmed: int) -> tuple[int, int]:
        """Confirm the leading run of ``(position, event_id)`` pairs of the source's log that repeat
        what was recorded (or lie below the checkpoint unrecorded), contiguous from ``confirmed``;
        returns the new confirmed position and how many pairs the run took."""
        if not pairs:
            return confirmed, 0
        highest = max(position for position, _ in pairs)
        recorded = {int(position): str(event_id) for position, event_id in tx.execute(
            self._sql.recorded_between, {"b_source": source, "b_low": confirmed, "b_high": highest})}
        moved, index = confirmed, 0
        for index, (position, event_id) in enumerate(pairs):
            if position <= moved:
                continue   # below what is confirmed: a duplicate as ``_decide`` says
            known = recorded.get(position)
            repeat = known == event_id if known is not None else position <= checkpoint
            if not repeat or position != moved + 1:
                break
            moved = position
        else:
            index = len(pairs)
        if moved != confirmed:
            tx.execute(self._sql.forget_confirmed, {"b_source": source, "b_position": moved,
                                                    "b_checkpoint": checkpoint})
            tx.execute(self._sql.insert_processed, {"source": source, "position": -moved,
                                                    "event_id": CONFIRMED, "outcome": CONFIRMED})
        return moved, index

    def confirm_ids(self, pairs: list[Any], source: str) -> int:
        """Confirm pushed events against the source's log read as ``[position, event_id]`` pairs
        (``<source>.event_ids_since``), in one transaction; returns the confirmed position. The run
        stops at the first pair that is not a plain repeat — an event push never delivered, or a
        different one recorded at its position (a forged push) — and what follows is left to a
        pull of the full envelopes, which decides it as before."""
        clean: list[tuple[int, str]] = []
        for pair in pairs:
            try:
                position, event_id = int(pair[0]), str(pair[1])
            except (TypeError, ValueError, IndexError, KeyError):
                break   # not a pair: the full pull judges the rest
            clean.append((position, event_id))
        with self.database.transaction() as tx:
            checkpoint, confirmed = self._lock_and_confirmed(tx, source)
            moved, _ = self._confirm_run(tx, source, clean, checkpoint, confirmed)
            if moved == confirmed:
                tx.discard()
        return moved

    def _confirm(self, tx: Transaction, source: str, position: int, confirmed: int) -> int:
        """The log confirmed ``position``: move the confirmed position when it is the next one,
        and forget the records it now covers. Returns the confirmed position."""
        if _confirmed_next(confirmed, position) == confirmed:
            return confirmed  # an earlier position is still unconfirmed; the next pull reads it again
        # The marker: the processed row at minus the confirmed position (real positions start at 1).
        tx.execute(self._sql.forget_confirmed, {"b_source": source, "b_position": position,
                                                "b_checkpoint": self._checkpoint_value(tx, source)})
        tx.execute(self._sql.insert_processed, {"source": source, "position": -position,
                                                "event_id": CONFIRMED, "outcome": CONFIRMED})
        return position

    def _replace_impostor(self, tx: Transaction, source: str, envelope: Envelope) -> None:
        """The log holds ``envelope`` where a different, pushed event was handled: report that one
        (its effects stay: it was applied in good faith) and drop its record."""
        impostor = self._recorded_id(tx, source, envelope.position)
        log.warning("event %s claimed %s/%s, which the log gives to %s: reported as forged",
                    impostor, source, envelope.position, envelope.event_id)
        self.quarantine.put(tx.connection, "forged",
                            f"a pushed event claimed position {envelope.position} of {source}, "
                            f"which the source's log gives to event {envelope.event_id}",
                            {"event_id": impostor, "position": envelope.position}, source=source,
                            position=envelope.position)
        tx.execute(delete(self.processed).where(self.processed.c.source == source,
                                                self.processed.c.position == envelope.position))

    def _seen(self, tx: Transaction, source: str, position: int) -> bool:
        return tx.execute(select(self.processed.c.position).where(
            self.processed.c.source == source, self.processed.c.position == position)).first() is not None

    def _record(self, tx: Transaction, source: str, envelope: Envelope, outcome: str,
                checkpoint: int | None = None, replacing: bool = False) -> None:
        """Record ``envelope`` as handled, by position and event id (kept until the source's log
        confirms it). ``checkpoint``: the value read in this transaction, when known;
        ``replacing``: a different pushed event was recorded at this position."""
        tx.execute(self._sql.clear_failures, {"b_source": source, "b_positions": [envelope.position]})
        if replacing:
            self._replace_impostor(tx, source, envelope)
        tx.execute(self._sql.insert_processed, {"source": source, "position": envelope.position,
                                                "event_id": envelope.event_id, "outcome": outcome})
        self._advance(tx, source, self._checkpoint_value(tx, source) if checkpoint is None else checkpoint)

    def _advance(self, tx: Transaction, source: str, checkpoint: int) -> None:
        """Move the checkpoint over the contiguous handled positions above it, read a page at a
        time (what lies above the first gap — often hundreds of records waiting for catch-up —
        is not read at all)."""
        new_checkpoint, limit = checkpoint, ADVANCE_FIRST_PAGE
        while True:
            page = tx.execute(self._sql.above, {"b_source": source, "b_position": new_checkpoint,
                                                "b_limit": limit}).scalars().all()
            contiguous = 0
            for position in page:
                if position != new_checkpoint + 1:
                    break
                new_checkpoint = position
                contiguous += 1
            if contiguous < limit:
                break
            limit = min(2 * limit, ADVANCE_LAST_PAGE)
        if new_checkpoint != checkpoint:
            # Records at or below the checkpoint stay until the source's log confirms them
            # (``_confirm`` forgets them): they say which event was handled there.
            tx.execute(self._sql.move_checkpoint, {"b_source": source, "b_position": new_checkpoint,
                                                   "b_at": isoformat_utc(utc_now())})

    def _count_failure(self, source: str, envelope: Envelope, error: Exception) -> None:
        reason = f"handler failed: {type(error).__name__}: {error}"
        try:
            with self.database.transaction() as tx:
                row = tx.execute(select(self.failures.c.failures).where(
                    self.failures.c.source == source, self.failures.c.position == envelope.position)).first()
                failures = (row[0] if row else 0) + 1
                if row:
                    tx.execute(update(self.failures).where(
                        self.failures.c.source == source, self.failures.c.position == envelope.position)
                        .values(failures=failures, last_error=reason[:2000]))
                else:
                    tx.execute(self.failures.insert().values(source=source, position=envelope.position,
                                                             failures=failures, last_error=reason[:2000]))
                if failures >= MAX_HANDLER_FAILURES:
                    checkpoint = self._lock_checkpoint(tx, source)
                    if not self._seen(tx, source, envelope.position) and envelope.position > checkpoint:
                        self.quarantine.put(tx.connection, "event", reason, envelope.to_dict(),
                                            source=source, position=envelope.position)
                        self._record(tx, source, envelope, "quarantined")
        except Exception:
            log.exception("could not record a handler failure for %s/%s", source, envelope.position)


def _confirmed_next(confirmed: int, position: int) -> int:
    """The confirmed position once the log confirmed ``position`` (``_confirm``'s rule: only the
    next one moves it; an earlier position still unconfirmed is read again by the next pull)."""
    return position if position == confirmed + 1 else confirmed


class CatchUp:
    """Pulls each source's log from the consumer's checkpoint until it has seen everything."""

    def __init__(self, consumer: EventConsumer, sources: Iterable[str],
                 fetch: Callable[[str, int, int], list[Any]], page: int = 1000, batch: bool = False,
                 progress: dict[str, int] | None = None,
                 fetch_ids: Callable[[str, int, int], list[Any]] | None = None, id_page: int = MAX_ID_PAGE):
        self.consumer = consumer
        self.sources = list(sources)
        self.fetch = fetch
        # ``<source>.event_ids_since``: confirms pushed events by id (None: by pulling them again).
        self.fetch_ids = fetch_ids
        self.id_page = id_page
        self.page = page
        self.batch = batch   # one transaction per page (EventConsumer.handle_many)
        # Each source's checkpoint as the previous round found it, kept by the caller between
        # rounds (``horizon``); None: every round reads the whole log.
        self.progress = progress

    def run_once(self) -> dict[str, int]:
        pulled: dict[str, int] = {}
        for source in self.sources:
            pulled[source] = self.pull(source)
        return pulled

    def pull(self, source: str, deadline_seconds: float = 300.0) -> int:
        started = time.monotonic()
        count = 0
        # From what the source's log confirmed, not from the checkpoint: pushed events above it
        # are read again and checked against the log (a forged one must not hide the real one).
        position = self.consumer.confirmed(source)
        horizon = self.horizon(source)
        if horizon is not None and self.fetch_ids is not None and position < horizon:
            position = self._confirm_by_id(source, position, horizon)
        while time.monotonic() - started < deadline_seconds:
            if horizon is not None and position >= horizon:
                break
            limit = self.page if horizon is None else min(self.page, horizon - position)
            batch = self.fetch(source, position, limit)
            if self.batch and batch:
                try:
                    self.consumer.handle_many(batch, source)
                except Exception:
                    log.exception("catch-up: a page from %s failed; will retry", source)
                batch_done = True
            else:
                batch_done = False
            for raw in batch if not batch_done else ():
                try:
                    self.consumer.handle(raw, source, pulled=True)
                except Exception:
                    log.exception("catch-up: event %s/%s failed; will retry",
                                  source, raw.get("position") if isinstance(raw, dict) else "?")
            count += len(batch)
            # SQLite never yields to the hub: let the service answer its HTTP and RPC callers
            # between pages of a long catch-up.
            time.sleep(0)
            if len(batch) < limit:
                break
            last = batch[-1].get("position") if isinstance(batch[-1], dict) else None
            if not isinstance(last, int) or last <= position:
                break
            # Read on from the end of this page even if the checkpoint is held back by a failing
            # event: that one is retried on the next round, the rest must not wait for it.
            position = last
        return count

    def _confirm_by_id(self, source: str, position: int, horizon: int) -> int:
        """Confirm what push handled up to ``horizon`` from the log's ``[position, event_id]``
        pairs instead of its envelopes (a tenth of the bytes, no envelope to parse and check);
        returns the confirmed position. Where a pair is not a plain repeat the pull of full
        envelopes that follows takes over from there. A source that cannot answer
        ``event_ids_since`` (an older release during an upgrade) is pulled as before."""
        assert self.fetch_ids is not None
        while position < horizon:
            try:
                pairs = self.fetch_ids(source, position, min(self.id_page, horizon - position))
            except Exception as error:
                log.info("catch-up: %s cannot list event ids (%s); pulling its events instead",
                         source, type(error).__name__)
                return position
            if not pairs:
                return position
            moved = self.consumer.confirm_ids(pairs, source)
            time.sleep(0)
            if moved <= position or moved < min(horizon, int(pairs[-1][0])):
                return moved   # a pair that is not a plain repeat: the full pull decides it
            position = moved
        return position

    def horizon(self, source: str) -> int | None:
        """Where this round's pull stops: at the checkpoint while pushed events keep moving it,
        or nowhere (the whole log) when it stood still since the previous round.

        While push keeps up, every position below the checkpoint was pushed and handled, and the
        pull only confirms them against the source's log (a run of repeats, cheap). Pulling past
        it would race the push path for the events still queued on the broker: under load the
        pull applied them first and their pushed copies then arrived as duplicates — each event
        handled twice, the broker's backlog growing, and the next pull racing further ahead (at
        30 complaints/s offered, acknowledgments went from p50 0.08 s without catch-up to 14 s
        with it). A checkpoint that did not move is what catch-up is for: the first round after a
        start, a source gone quiet (nothing left to read, or its last events never pushed), an
        event that was never delivered (the gap holds the checkpoint while later ones are
        handled), or push down altogether — then the pull reads on to the end of the log. A gap
        is therefore filled on the round after it appears, not the round it appears in."""
        if self.progress is None:
            return None
        checkpoint = self.consumer.checkpoint(source)
        before, self.progress[source] = self.progress.get(source), checkpoint
        return checkpoint if before is not None and checkpoint > before else None
