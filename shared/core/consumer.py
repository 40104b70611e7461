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
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError

from shared.core import metrics
from shared.core.db import Database, Transaction
from shared.core.events import Envelope, InvalidEvent, isoformat_utc, utc_now, validate_envelope
from shared.core.events.catalogue import NeedsHistory, upcast
from shared.core.quarantine import Quarantine

log = logging.getLogger(__name__)

MAX_HANDLER_FAILURES = 3

Handler = Callable[[Transaction, Envelope], None]


def read_envelope(raw: Any, source: str) -> Envelope:
    """A received event checked against its own version's schema, then lifted to its type's
    latest version by the catalogue's upcasters: handlers only ever see current events."""
    return Envelope.from_dict(upcast(validate_envelope(raw, expected_source=source)))


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
                checkpoint = self._lock_checkpoint(tx, source)
                # The event right after the checkpoint cannot have been recorded (the checkpoint
                # would have moved over it): no look-up needed on the common, in-order path.
                if envelope.position <= checkpoint or (envelope.position != checkpoint + 1
                                                       and self._seen(tx, source, envelope.position)):
                    return "duplicate"
                outcome = self._apply(tx, envelope, source)
                self._record(tx, source, envelope, outcome, checkpoint=checkpoint)
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
                checkpoint = self._lock_checkpoint(tx, source)
                recorded: list[int] = []
                for envelope in envelopes:
                    if envelope.position <= checkpoint or self._seen(tx, source, envelope.position) \
                            or envelope.position in recorded[-1:]:
                        count("duplicate")
                        continue
                    try:
                        outcome = self._apply(tx, envelope, source)
                    except Exception as error:
                        failed.append((envelope, error))
                        continue
                    tx.execute(self.processed.insert().values(
                        source=source, position=envelope.position, event_id=envelope.event_id,
                        outcome=outcome))
                    recorded.append(envelope.position)
                    count(outcome)
                if recorded:
                    tx.execute(delete(self.failures).where(self.failures.c.source == source,
                                                           self.failures.c.position.in_(recorded)))
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

    def _apply(self, tx: Transaction, envelope: Envelope, source: str) -> str:
        """Run the event's handler in a savepoint: handled, ignored (no handler) or quarantined
        (the handler rejected it; its partial writes are rolled back). Other errors propagate."""
        handler = self.handlers.get(envelope.event_type)
        if handler is None:
            return "ignored"
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
                self._lock_checkpoint(tx, source)
                if (not self._seen(tx, source, envelope.position)
                        and envelope.position > self._checkpoint_value(tx, source)):
                    self._record(tx, source, envelope, "handled")
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
                checkpoint = self._lock_checkpoint(tx, source)
                if position <= checkpoint or self._seen(tx, source, position):
                    return "duplicate"
                # The source's log really holds something at this position that we cannot read:
                # count it as handled so the checkpoint moves on; replay can apply it later.
                tx.execute(self.processed.insert().values(
                    source=source, position=position, event_id=str(event_id)[:36], outcome="quarantined"))
                self._advance(tx, source, checkpoint)
            self.quarantine.put(tx.connection, "event", reason, raw, source=source,
                                position=position if isinstance(position, int) else None)
        log.warning("quarantined an invalid event from %s: %s", source, reason)
        return "quarantined"

    def _lock_checkpoint(self, tx: Transaction, source: str) -> int:
        # FOR UPDATE serialises handlers of one source on PostgreSQL; SQLite's BEGIN IMMEDIATE
        # already serialises writers.
        query = select(self.checkpoints.c.position).where(self.checkpoints.c.source == source)
        if tx.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = tx.execute(query).first()
        if row is None:
            tx.execute(self.checkpoints.insert().values(source=source, position=0,
                                                        updated_at=isoformat_utc(utc_now())))
            return 0
        return int(row[0])

    def _checkpoint_value(self, tx: Transaction, source: str) -> int:
        row = tx.execute(select(self.checkpoints.c.position).where(self.checkpoints.c.source == source)).first()
        return int(row[0]) if row else 0

    def _seen(self, tx: Transaction, source: str, position: int) -> bool:
        return tx.execute(select(self.processed.c.position).where(
            self.processed.c.source == source, self.processed.c.position == position)).first() is not None

    def _record(self, tx: Transaction, source: str, envelope: Envelope, outcome: str,
                checkpoint: int | None = None) -> None:
        """Record ``envelope`` as handled. ``checkpoint``: the value read in this transaction,
        when known. The event right after it moves the checkpoint at once, so its processed row
        (deleted again by that move) is not written at all."""
        tx.execute(delete(self.failures).where(self.failures.c.source == source,
                                               self.failures.c.position == envelope.position))
        if checkpoint is not None and envelope.position == checkpoint + 1:
            self._advance(tx, source, checkpoint, handled_next=True)
            return
        tx.execute(self.processed.insert().values(
            source=source, position=envelope.position, event_id=envelope.event_id, outcome=outcome))
        self._advance(tx, source, self._checkpoint_value(tx, source) if checkpoint is None else checkpoint)

    def _advance(self, tx: Transaction, source: str, checkpoint: int, handled_next: bool = False) -> None:
        """Move the checkpoint over the contiguous handled positions above it;
        ``handled_next``: checkpoint + 1 was handled in this transaction without a processed row."""
        start = checkpoint + 1 if handled_next else checkpoint
        above = tx.execute(select(self.processed.c.position).where(
            self.processed.c.source == source, self.processed.c.position > start)
            .order_by(self.processed.c.position)).scalars()
        new_checkpoint = start
        for position in above:
            if position != new_checkpoint + 1:
                break
            new_checkpoint = position
        if new_checkpoint != checkpoint:
            tx.execute(update(self.checkpoints).where(self.checkpoints.c.source == source)
                       .values(position=new_checkpoint, updated_at=isoformat_utc(utc_now())))
            if handled_next and new_checkpoint == start:
                return  # nothing was recorded above the old checkpoint: nothing to forget
            # Positions at or below the checkpoint are known handled by the checkpoint alone.
            tx.execute(delete(self.processed).where(self.processed.c.source == source,
                                                    self.processed.c.position <= new_checkpoint))

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


class CatchUp:
    """Pulls each source's log from the consumer's checkpoint until it has seen everything."""

    def __init__(self, consumer: EventConsumer, sources: Iterable[str],
                 fetch: Callable[[str, int, int], list[Any]], page: int = 1000, batch: bool = False):
        self.consumer = consumer
        self.sources = list(sources)
        self.fetch = fetch
        self.page = page
        self.batch = batch   # one transaction per page (EventConsumer.handle_many)

    def run_once(self) -> dict[str, int]:
        pulled: dict[str, int] = {}
        for source in self.sources:
            pulled[source] = self.pull(source)
        return pulled

    def pull(self, source: str, deadline_seconds: float = 300.0) -> int:
        started = time.monotonic()
        count = 0
        position = self.consumer.checkpoint(source)
        while time.monotonic() - started < deadline_seconds:
            batch = self.fetch(source, position, self.page)
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
            if len(batch) < self.page:
                break
            last = batch[-1].get("position") if isinstance(batch[-1], dict) else None
            if not isinstance(last, int) or last <= position:
                break
            # Read on from the end of this page even if the checkpoint is held back by a failing
            # event: that one is retried on the next round, the rest must not wait for it.
            position = last
        return count
