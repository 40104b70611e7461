"""Outside readers' feeds: the gateway consumes routing's events like any consumer (push and
catch-up through ``shared.core.consumer``) and, in the same transaction that records the event as
handled, appends to its feed log the item each reader may see of it (``domain/feed.py``). The relay
publishes the log to ``feed.<reader>`` (adapters/feed_relay.py): nothing reaches an outside reader
that was not first recorded here, and nothing recorded here is lost if the broker is away."""
from __future__ import annotations

from typing import Mapping

from shared.core.db import Transaction
from shared.core.events import Envelope
from shared.core.events.catalogue import event_types_of
from shared.core.handlers import EventHandlers, handles
from shared.core.store import ServiceStore
from services.gateway.adapters.feed_log import FeedLog
from services.gateway.domain.feed import feed_item


class FeedHandlers(EventHandlers):
    """Every routing event, for every reader (``readers``: system → the agency codes it follows,
    ``Grants.readers()`` of the grant file)."""

    def __init__(self, store: ServiceStore, readers: Mapping[str, frozenset[str]] | None = None):
        super().__init__(store)
        self.readers = dict(readers or {})
        self.log = FeedLog()

    @handles(*event_types_of("routing"))
    def on_routing_event(self, tx: Transaction, envelope: Envelope) -> None:
        event = envelope.to_dict()
        items = []
        for reader, agencies in self.readers.items():
            followed = self.log.followed(tx.connection, reader, envelope.complaint_id)
            item = feed_item(event, reader, agencies,
                             followed=followed is not None and followed < envelope.version)
            if item is None:
                continue
            items.append(item)
            self.log.follow(tx.connection, reader, envelope.complaint_id, envelope.version, item.follows_after)
        self.log.append(tx.connection, items)
