"""Declares which other services' events a service listens to, instead of one hand-written
``@event_handler`` stub per event type. ``@listens_to({"routing": ("ComplaintRouted", …)})``
adds, per event type, a method ``on_<event_type in snake case>`` carrying nameko's
``event_handler(source, event_type)`` — the method names, and so nameko's queue names
(``evt-<source>-<EventType>--<service>.on_<event_type>``), are what the stubs had. Each hands the
payload to ``self.receive(payload, source)`` (``ServiceBase``: the idempotent consumer)."""
from __future__ import annotations

import re

from nameko.events import event_handler


def handler_name(event_type: str) -> str:
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def listens_to(subscriptions: dict[str, tuple[str, ...]]):
    def decorate(cls):
        for source, event_types in subscriptions.items():
            for event_type in event_types:
                name = handler_name(event_type)

                def receive(self, payload, _source=source):
                    self.receive(payload, _source)

                receive.__name__ = receive.__qualname__ = name
                receive.__doc__ = f"{event_type} from {source}."
                setattr(cls, name, event_handler(source, event_type)(receive))
        cls.subscriptions = dict(subscriptions)
        return cls
    return decorate
