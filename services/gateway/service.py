"""The gateway: how outside systems call NTBCare over the broker (docs/gateway.md).

An outside system publishes ``{"args": [...], "kwargs": {...}}`` to the ``ntbcare.gateway``
exchange with routing key ``<service>.<method>``, its own ``reply_to`` key, a ``correlation_id``
and the AMQP ``user_id`` property (RabbitMQ rejects a user_id that is not the connection's user,
so it proves who calls). The gateway checks the call against that system's grants
(``GATEWAY_GRANTS_FILE``), makes the internal RPC with ``caller_system`` in nameko's context
data, and publishes the answer — nameko's reply shape — to ``ntbcare.replies``.

It also keeps outside readers' feeds: it consumes routing's events (push and catch-up, like every
consumer), records in its own database what each reader may see of them (application/feeds.py)
and publishes that to ``feed.<reader>`` from there (adapters/feed_relay.py)."""
from __future__ import annotations

from nameko.extensions import DependencyProvider
from nameko.timer import timer

import shared.glue.remote_errors  # noqa: F401 - services' errors come back as their own types
from shared.core import config
from shared.core.errors import EXPECTED
from shared.core.store import ServiceStore
from shared.glue.providers import Consumer, Storage
from shared.glue.service_base import HealthCheck
from shared.glue.subscriptions import listens_to
from services.gateway.adapters import feed_log
from services.gateway.adapters.amqp import InternalRpc, gateway_call
from services.gateway.adapters.feed_relay import FeedRelay
from services.gateway.adapters.grant_file import load_grants
from services.gateway.application import calls
from services.gateway.application.feeds import FeedHandlers
from services.gateway.domain.grants import IncomingCall

__all__ = ["GatewayService", "build_store", "check_startup"]


def build_store(url: str | None = None) -> ServiceStore:
    """The gateway's database (``GATEWAY_DATABASE_URL``): the feed log and the consumer's state.
    It records no events of its own: feed items are not ``gateway.events``."""
    return ServiceStore("gateway", feed_log.metadata, emits_events=False, url=url)


def check_startup() -> None:
    """Refuse to start with a missing or malformed grant file (``config.ConfigError``)."""
    load_grants()


class GrantTable(DependencyProvider):
    """The grants, read once at start (restart the gateway after editing the file)."""

    def setup(self):
        self.grants = load_grants()

    def get_dependency(self, worker_ctx):
        return self.grants


class FeedConsumer(Consumer):
    """The standard consumer of routing's events, its handler table given the readers of the
    grant file (read at start, like the grants)."""

    def __init__(self):
        super().__init__(FeedHandlers)

    def setup(self):
        readers = load_grants().readers()
        self.handlers_factory = lambda store: FeedHandlers(store, readers).table()
        super().setup()


@listens_to(FeedHandlers)
class GatewayService(HealthCheck):
    """``GET /health`` is the common one (database and broker); no shared RPC (``ServiceBase``):
    the gateway's broker user may declare no ``rpc-gateway`` queue."""
    name = "gateway"

    grants = GrantTable()
    rpc = InternalRpc()
    store = Storage(build_store)
    consumer = FeedConsumer()
    relay = FeedRelay()

    def receive(self, payload, source: str) -> None:
        """A pushed routing event (``listens_to``): into the feed log, then to the readers."""
        self.consumer.handle(payload, source)
        self.relay.wake()

    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        """Pull ``routing.events_since`` for whatever push did not deliver (e.g. while stopped)."""
        self.consumer.catch_up()
        self.relay.wake()

    @gateway_call(expected_exceptions=EXPECTED)  # refusals and services' errors are answers, not faults
    def call(self, incoming: IncomingCall):
        """One outside system's call, answered on ``ntbcare.replies``."""
        return calls.answer(incoming, self.grants, self.rpc)
