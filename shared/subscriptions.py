"""A service's event handlers, and the subscriptions derived from them — one list, not two.

A service declares its handlers as methods of an ``EventHandlers`` subclass, each marked with the
event types it handles (``@handles(ev.COMPLAINT_FILED)``). From that table:

* ``listens_to(Handlers)`` adds, per event type, a nameko ``event_handler(owner, event_type)``
  method ``on_<event_type in snake case>`` (so nameko's queue names are
  ``evt-<owner>-<EventType>--<service>.on_<event_type>``), the owner coming from the catalogue;
* ``Handlers.sources()`` is what the consumer pulls ``events_since`` from.

Adding an event a service consumes is therefore one decorated method. Each pushed payload goes to
``self.receive(payload, source)`` (``ServiceBase``: the idempotent consumer).
"""
from __future__ import annotations

import re
from typing import Callable

from shared.events.catalogue import SOURCES


def handler_name(event_type: str) -> str:
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def handles(*event_types: str) -> Callable:
    """Marks an ``EventHandlers`` method as the handler of these event types."""
    unknown = [event_type for event_type in event_types if event_type not in SOURCES]
    if unknown:
        raise ValueError(f"no event types {unknown} in the catalogue")

    def mark(function):
        function.handles = tuple(event_types)
        return function
    return mark


class EventHandlers:
    """Base of a service's handler table: methods ``(tx, envelope)`` marked with ``@handles``."""

    def __init__(self, store):
        self.store = store

    @classmethod
    def _marked(cls) -> dict[str, str]:
        table: dict[str, str] = {}
        for name in dir(cls):
            for event_type in getattr(getattr(cls, name), "handles", ()):
                if event_type in table:
                    raise TypeError(f"{cls.__name__}: {event_type} is handled twice")
                table[event_type] = name
        return table

    @classmethod
    def subscriptions(cls) -> dict[str, tuple[str, ...]]:
        """``{owner service: (event types…)}`` of every handled event."""
        out: dict[str, list[str]] = {}
        for event_type in sorted(cls._marked()):
            out.setdefault(SOURCES[event_type], []).append(event_type)
        return {source: tuple(types) for source, types in sorted(out.items())}

    @classmethod
    def sources(cls) -> list[str]:
        return list(cls.subscriptions())

    def table(self) -> dict[str, Callable]:
        return {event_type: getattr(self, name) for event_type, name in self._marked().items()}


def listens_to(handlers: type[EventHandlers]):
    """Class decorator: one nameko event handler per event type the handler table handles."""
    from nameko.events import event_handler  # the framework only where it is wired

    def decorate(cls):
        for source, event_types in handlers.subscriptions().items():
            for event_type in event_types:
                name = handler_name(event_type)

                def receive(self, payload, _source=source):
                    self.receive(payload, _source)

                receive.__name__ = receive.__qualname__ = name
                receive.__doc__ = f"{event_type} from {source}."
                setattr(cls, name, event_handler(source, event_type)(receive))
        cls.subscriptions = handlers.subscriptions()
        cls.handler_table = handlers
        return cls
    return decorate
