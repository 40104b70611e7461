"""A service's event handlers, declared once: methods of an ``EventHandlers`` subclass, each
marked with the event types it handles (``@handles(ev.COMPLAINT_FILED)``). The table is also the
service's subscription list: ``shared.glue.subscriptions.listens_to(Handlers)`` makes one nameko
event handler per handled type (owner from the catalogue), and ``Handlers.sources()`` is what
catch-up pulls ``events_since`` from. Adding an event a service consumes is one decorated method.

Framework-free: handlers are ``(tx, envelope)`` functions run by ``shared.core.consumer``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from shared.core.events.catalogue import SOURCES

if TYPE_CHECKING:
    from shared.core.consumer import Handler
    from shared.core.store import ServiceStore

F = TypeVar("F", bound=Callable[..., Any])


def handles(*event_types: str) -> Callable[[F], F]:
    """Marks an ``EventHandlers`` method as the handler of these event types."""
    unknown = [event_type for event_type in event_types if event_type not in SOURCES]
    if unknown:
        raise ValueError(f"no event types {unknown} in the catalogue")

    def mark(function: F) -> F:
        setattr(function, "handles", tuple(event_types))  # a plain function has no declared slot for it
        return function
    return mark


class EventHandlers:
    """Base of a service's handler table: methods ``(tx, envelope)`` marked with ``@handles``."""

    def __init__(self, store: ServiceStore):
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

    def table(self) -> dict[str, Handler]:
        return {event_type: getattr(self, name) for event_type, name in self._marked().items()}
