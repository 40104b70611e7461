"""``GET /health``: the database and the broker answer (and the relay's count)."""
from __future__ import annotations

from kombu import Connection

from shared.core import config
from shared.core.store import ServiceStore
from shared.glue import broker
from shared.glue.relay import RelayStatus


def health_report(service: str, store: ServiceStore, relay: RelayStatus | None, extra: dict | None = None):
    """(status code, body) for ``GET /health``: 200 when the database and broker work."""
    problems = []
    try:
        store.database.ping()
    except Exception as error:
        problems.append(f"database: {type(error).__name__}")
    try:
        with Connection(config.amqp_uri(), connect_timeout=2, ssl=config.amqp_ssl()) as connection:
            # every address of AMQP_URI once: healthy when some node answers
            connection.ensure_connection(max_retries=broker.retries(config.amqp_uri()), timeout=4)
    except Exception as error:
        problems.append(f"broker: {type(error).__name__}")
    body = {"service": service, "status": "ok" if not problems else "unavailable"}
    if relay is not None:
        body["published"] = relay.published
    if extra:
        body.update(extra)
    if problems:
        body["status"] = "unavailable"  # a service's own "degraded" never hides a real outage
        body["reason"] = "; ".join(problems)
        return 503, body
    return 200, body
