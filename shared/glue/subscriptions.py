"""nameko's side of a service's subscriptions: ``@listens_to(Handlers)`` adds, per event type the
handler table (``shared.core.handlers.EventHandlers``) handles, a method
``on_<event_type in snake case>`` carrying nameko's ``event_handler(owner, event_type)`` — so
nameko's queue names are ``evt-<owner>-<EventType>--<service>.on_<event_type>``. Each pushed
payload goes to ``self.receive(payload, source)`` (``ServiceBase``: the idempotent consumer).

The entrypoint is ``shared.glue.batching``'s ``BatchedEventHandler`` (nameko's ``EventHandler``
whose deliveries are handled in batches, one transaction each: ``receive`` then gets a
``DeliveryBatch``); with ``NTBCARE_CONSUMER_BATCH=0`` it is nameko's own ``event_handler``, one
worker per delivery."""
from __future__ import annotations

import re
from typing import Iterable

from nameko.events import event_handler

from shared.core.handlers import EventHandlers
from shared.glue.batching import batch_size, batched_event_handler


def handler_name(event_type: str) -> str:
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def listens_to(handlers: type[EventHandlers], linger_ms: float = 0, urgent: Iterable[str] = ()):
    """Class decorator: one nameko event handler per event type the handler table handles.
    ``linger_ms``: the service's default for how long a pushed event may wait for others to share
    its batch's transaction (``shared.glue.batching``; ``<SERVICE>_CONSUMER_LINGER_MS`` overrides);
    ``urgent``: event types that never wait (and end the others' wait)."""
    entrypoint = batched_event_handler if batch_size() else event_handler

    def decorate(cls):
        for source, event_types in handlers.subscriptions().items():
            for event_type in event_types:
                name = handler_name(event_type)

                def receive(self, payload, _source=source):
                    self.receive(payload, _source)

                receive.__name__ = receive.__qualname__ = name
                receive.__doc__ = f"{event_type} from {source}."
                setattr(cls, name, entrypoint(source, event_type)(receive))
        cls.subscriptions = handlers.subscriptions()
        cls.consumer_linger_ms = linger_ms
        cls.consumer_urgent = frozenset(urgent)
        cls.handler_table = handlers
        return cls
    return decorate
