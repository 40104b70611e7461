"""Applies deploy/rabbitmq/definitions.json through the RabbitMQ management API: the vhost, a user
per service and per outside system, their permissions (topic permissions included), and the
exchanges, queues and bindings no user may make itself (the gateway's: ``ntbcare.gateway`` →
``gateway-calls``, ``ntbcare.replies``; each outside reader's ``feed.<reader>`` → ``<reader>.feed``). Passwords
come from the environment (``NTBCARE_RABBIT_PASSWORD_<USER>``, upper case with ``-`` as ``_``); a
user without one is created unable to log in. Idempotent: run it on every deployment.

``python -m shared.broker_setup [--vhost NAME] [--user-suffix S]`` (the options let tests apply
the same file to a throw-away vhost; with a suffix, a user's own name prefix in the patterns —
``lapor-sp4n\\.`` — and its feed ``feed.<user>`` follow its suffixed name, so the user keeps its own
queues and exchanges)."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote

import requests

from shared.core import config

DEFINITIONS = Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq" / "definitions.json"


def load(path: Path = DEFINITIONS) -> dict:
    return json.loads(path.read_text())


def password_variable(user: str) -> str:
    return "NTBCARE_RABBIT_PASSWORD_" + user.upper().replace("-", "_")


def suffixed(pattern: str, names: dict[str, str]) -> str:
    """``pattern`` with each user's own-name prefix (``<user>\\.``) and its feed exchange
    (``feed\\.<user>``) renamed to the name in use."""
    for original, used in names.items():
        if original != used:
            pattern = pattern.replace(original + r"\.", used + r"\.")  # names are [a-z0-9-]: literal
            pattern = re.sub(r"feed\\\." + re.escape(original) + r"(?![a-z0-9-])",
                             lambda _match, used=used: r"feed\." + used, pattern)
    return pattern


def renamed(name: str, names: dict[str, str]) -> str:
    """An exchange's or queue's name with its user's name in use: ``<user>.…`` and ``feed.<user>``
    (an outside reader's feed and its queue) follow a suffixed user."""
    for original, used in names.items():
        if original == used:
            continue
        if name.startswith(original + "."):
            return used + name[len(original):]
        if name == f"feed.{original}":
            return f"feed.{used}"
    return name


def apply(management_url: str, auth: tuple[str, str], definitions: dict, vhost: str | None = None,
          user_suffix: str = "", passwords: dict | None = None) -> dict[str, str]:
    """Create/update everything; returns user name → the name actually used (with suffix)."""
    passwords = passwords if passwords is not None else {}
    session = requests.Session()
    session.auth = auth

    def put(path, body):
        response = session.put(f"{management_url}/api/{path}", json=body, timeout=10)
        if response.status_code not in (200, 201, 204):
            raise RuntimeError(f"PUT {path}: {response.status_code} {response.text[:200]}")

    names = {}
    vhost_map = {v["name"]: (vhost or v["name"]) for v in definitions["vhosts"]}
    for target in vhost_map.values():
        put(f"vhosts/{quote(target, safe='')}", {})
    for user in definitions["users"]:
        name = user["name"] + user_suffix
        names[user["name"]] = name
        password = passwords.get(user["name"]) or os.environ.get(password_variable(user["name"]))
        body = {"tags": user.get("tags", "")}
        if password:
            body["password"] = password
        else:
            body["password_hash"] = ""  # cannot log in until a password is set
        put(f"users/{quote(name, safe='')}", body)
    # Topology first, as the administrator: users whose permissions do not let them declare or
    # bind these (the gateway may not read ``ntbcare.gateway``) find them in place.
    for exchange in definitions.get("exchanges", []):
        target = quote(vhost_map[exchange["vhost"]], safe="")
        put(f"exchanges/{target}/{quote(renamed(exchange['name'], names), safe='')}",
            {"type": exchange["type"], "durable": exchange.get("durable", True), "auto_delete": False})
    for queue in definitions.get("queues", []):
        target = quote(vhost_map[queue["vhost"]], safe="")
        # Quorum like every service queue (NTBCARE_QUEUE_TYPE=classic opts out; an existing queue
        # of the other type is refused by the broker: `ntbcare queues migrate` first).
        arguments = dict(queue.get("arguments") or {})
        if config.queue_type() == "quorum":
            arguments["x-queue-type"] = "quorum"
        else:
            arguments.pop("x-queue-type", None)
        put(f"queues/{target}/{quote(renamed(queue['name'], names), safe='')}",
            {"durable": queue.get("durable", True), "auto_delete": False, "arguments": arguments})
    for binding in definitions.get("bindings", []):
        target = quote(vhost_map[binding["vhost"]], safe="")
        kind = "q" if binding["destination_type"] == "queue" else "e"
        response = session.post(
            f"{management_url}/api/bindings/{target}/e/{quote(renamed(binding['source'], names), safe='')}/"
            f"{kind}/{quote(renamed(binding['destination'], names), safe='')}",
            json={"routing_key": binding["routing_key"]}, timeout=10)
        if response.status_code not in (200, 201, 204):  # binding twice is a no-op (201 again)
            raise RuntimeError(f"binding {binding}: {response.status_code} {response.text[:200]}")
    for permission in definitions["permissions"]:
        target = vhost_map[permission["vhost"]]
        put(f"permissions/{quote(target, safe='')}/{quote(names[permission['user']], safe='')}",
            {k: suffixed(permission[k], names) for k in ("configure", "write", "read")})
    for permission in definitions.get("topic_permissions", []):
        target = vhost_map[permission["vhost"]]
        put(f"topic-permissions/{quote(target, safe='')}/{quote(names[permission['user']], safe='')}",
            {"exchange": permission["exchange"],
             **{k: suffixed(permission[k], names) for k in ("write", "read")}})
    return names


def remove_users(management_url: str, auth: tuple[str, str], names: list[str]) -> None:
    for name in names:
        requests.delete(f"{management_url}/api/users/{quote(name, safe='')}", auth=auth, timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--management-url", default=os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672"))
    parser.add_argument("--admin-user", default=os.environ.get("RABBITMQ_ADMIN_USER", "guest"))
    parser.add_argument("--admin-password", default=os.environ.get("RABBITMQ_ADMIN_PASSWORD", "guest"))
    parser.add_argument("--vhost")
    parser.add_argument("--user-suffix", default="")
    args = parser.parse_args(argv)
    names = apply(args.management_url, (args.admin_user, args.admin_password), load(), args.vhost, args.user_suffix)
    print("applied:", ", ".join(names.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
