"""nameko's side of a service's subscriptions: ``@listens_to(Handlers)`` adds, per event type the
handler table (``shared.core.handlers.EventHandlers``) handles, a method
``on_<event_type in snake case>`` carrying nameko's ``event_handler(owner, event_type)`` — so
nameko's queue names are ``evt-<owner>-<EventType>--<service>.on_<event_type>``. Each pushed
payload goes to ``self.receive(payload, source)`` (``ServiceBase``: the idempotent consumer)."""
from __future__ import annotations

import re

from nameko.events import event_handler

from shared.core.handlers import EventHandlers


def handler_name(event_type: str) -> str:
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def listens_to(handlers: type[EventHandlers]):
    """Class decorator: one nameko event handler per event type the handler table handles."""
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
