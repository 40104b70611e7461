"""Who may call what through the gateway: each outside system's grants (data, from
``data/grants.yaml``), and the checks every incoming call passes before it reaches a service.

The caller is the AMQP ``user_id`` property, which RabbitMQ validates against the connection's
user: a call without it, or for an operation not granted to that user, is refused; a reply goes
only to the caller's own reply keys (``<caller>.…``)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from shared.core.errors import Forbidden, ValidationFailed

OPERATION = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
SYSTEM = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class IncomingCall:
    """One call as it arrived on the gateway exchange."""
    caller: str | None          # the broker-validated user_id; None when the message had none
    operation: str              # the routing key, ``<service>.<method>``
    reply_to: str | None
    correlation_id: str | None
    body: Any                   # the decoded JSON body, ``{"args": [...], "kwargs": {...}}``


@dataclass(frozen=True)
class Grants:
    operations: Mapping[str, frozenset[str]] = field(default_factory=dict)
    agencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Systems that asked for no feed (``feed: false``) although they follow agencies.
    no_feed: frozenset[str] = frozenset()

    def readers(self) -> dict[str, frozenset[str]]:
        """The outside readers: each system with agencies (and no ``feed: false``) → its agencies,
        whose complaints its feed ``feed.<system>`` carries."""
        return {system: codes for system, codes in sorted(self.agencies.items())
                if codes and system not in self.no_feed}

    def all_operations(self) -> frozenset[str]:
        return frozenset().union(*self.operations.values()) if self.operations else frozenset()

    def check(self, call: IncomingCall) -> None:
        """Raise ``Forbidden`` unless the call's proven caller was granted its operation."""
        if not call.caller:
            raise Forbidden("the call carries no user_id: set the AMQP user_id property to your broker user")
        if call.operation not in self.operations.get(call.caller, frozenset()):
            raise Forbidden(f"{call.caller} is not granted {call.operation}")


def reply_allowed(call: IncomingCall) -> bool:
    """A reply may go to ``reply_to`` only when that key is the caller's own (``<caller>.…``);
    a call without an identity gets its refusal wherever it asked."""
    if not call.reply_to:
        return False
    return call.caller is None or call.reply_to.startswith(call.caller + ".")


def arguments(body: Any) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of a call body, as nameko's RPC protocol has them."""
    if not isinstance(body, dict) or set(body) - {"args", "kwargs"}:
        raise ValidationFailed('the body must be {"args": [...], "kwargs": {...}}')
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValidationFailed('the body must be {"args": [...], "kwargs": {...}}')
    return args, kwargs


def parse_grants(data: Any) -> Grants:
    """The grant file's content as ``Grants``; ``ValueError`` says what is malformed."""
    systems = data.get("systems") if isinstance(data, dict) else None
    if not isinstance(systems, dict):
        raise ValueError("the grant file needs a 'systems' mapping")
    operations: dict[str, frozenset[str]] = {}
    agencies: dict[str, frozenset[str]] = {}
    no_feed: set[str] = set()
    for system, grant in systems.items():
        if not isinstance(system, str) or not SYSTEM.match(system):
            raise ValueError(f"system {system!r}: a broker user name ([a-z0-9-])")
        grant = grant or {}
        if not isinstance(grant, dict) or set(grant) - {"operations", "agencies", "feed"}:
            raise ValueError(f"{system}: only 'operations', 'agencies' and 'feed' may be given")
        if not isinstance(grant.get("feed", True), bool):
            raise ValueError(f"{system}: feed is true or false")
        if grant.get("feed", True) is False:
            no_feed.add(system)
        ops = grant.get("operations") or []
        codes = grant.get("agencies") or []
        if not isinstance(ops, list) or not all(isinstance(op, str) and OPERATION.match(op) for op in ops):
            raise ValueError(f"{system}: operations are '<service>.<method>' names")
        if not isinstance(codes, list) or not all(isinstance(code, str) and code for code in codes):
            raise ValueError(f"{system}: agencies are agency codes")
        operations[system] = frozenset(ops)
        agencies[system] = frozenset(codes)
    return Grants(operations, agencies, frozenset(no_feed))
