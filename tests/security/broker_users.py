"""Applies deploy/rabbitmq/definitions.json (``shared.broker_setup``) to a test's own vhost, for
some of its users, with a per-run suffix on their names (users are global to the broker) and a
known password; hands out their AMQP URIs and removes the users afterwards."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from shared import broker_setup
from tests.support import infra


@dataclass
class BrokerUsers:
    vhost: str
    names: dict[str, str]       # definitions' user name → the name used in this run
    passwords: dict[str, str]

    def uri(self, user: str) -> str:
        return (f"amqp://{quote(self.names[user], safe='')}:{self.passwords[user]}"
                f"@{infra.RABBIT_HOST}:5672/{quote(self.vhost, safe='')}")


@contextmanager
def applied(vhost: str, users: list[str], definitions: dict | None = None):
    definitions = definitions or broker_setup.load()
    wanted = set(users)
    definitions = dict(definitions)
    definitions["users"] = [u for u in definitions["users"] if u["name"] in wanted]
    definitions["permissions"] = [p for p in definitions["permissions"] if p["user"] in wanted]
    definitions["topic_permissions"] = [p for p in definitions.get("topic_permissions", [])
                                        if p["user"] in wanted]
    suffix = f"-t{uuid.uuid4().hex[:6]}"
    passwords = {user: f"pw-{uuid.uuid4().hex[:10]}" for user in users}
    names = broker_setup.apply(infra.RABBIT_MANAGEMENT, infra.RABBIT_AUTH, definitions, vhost=vhost,
                               user_suffix=suffix, passwords=passwords)
    try:
        yield BrokerUsers(vhost, names, passwords)
    finally:
        broker_setup.remove_users(infra.RABBIT_MANAGEMENT, infra.RABBIT_AUTH, list(names.values()))
