"""The gateway: how outside systems call NTBCare over the broker (docs/gateway.md).

An outside system publishes ``{"args": [...], "kwargs": {...}}`` to the ``ntbcare.gateway``
exchange with routing key ``<service>.<method>``, its own ``reply_to`` key, a ``correlation_id``
and the AMQP ``user_id`` property (RabbitMQ rejects a user_id that is not the connection's user,
so it proves who calls). The gateway checks the call against that system's grants
(``GATEWAY_GRANTS_FILE``), makes the internal RPC with ``caller_system`` in nameko's context
data, and publishes the answer — nameko's reply shape — to ``ntbcare.replies``.
The gateway keeps no database."""
from __future__ import annotations

from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http

import shared.glue.remote_errors  # noqa: F401 - services' errors come back as their own types
from shared.core import config
from shared.core.errors import EXPECTED
from shared.glue.http import json_response
from services.gateway.adapters.amqp import InternalRpc, gateway_call
from services.gateway.adapters.grant_file import load_grants
from services.gateway.application import calls
from services.gateway.domain.grants import IncomingCall

__all__ = ["GatewayService", "check_startup"]


def check_startup() -> None:
    """Refuse to start with a missing or malformed grant file (``config.ConfigError``)."""
    load_grants()


class GrantTable(DependencyProvider):
    """The grants, read once at start (restart the gateway after editing the file)."""

    def setup(self):
        self.grants = load_grants()

    def get_dependency(self, worker_ctx):
        return self.grants


class GatewayService:
    name = "gateway"

    grants = GrantTable()
    rpc = InternalRpc()

    @gateway_call(expected_exceptions=EXPECTED)  # refusals and services' errors are answers, not faults
    def call(self, incoming: IncomingCall):
        """One outside system's call, answered on ``ntbcare.replies``."""
        return calls.answer(incoming, self.grants, self.rpc)

    @http("GET", "/health")
    def health(self, request):
        try:
            with Connection(config.amqp_uri(), connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as error:
            return json_response(503, {"service": self.name, "status": "unavailable",
                                       "reason": f"broker: {type(error).__name__}"})
        return json_response(200, {"service": self.name, "status": "ok"})
