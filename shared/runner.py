"""Runs one NTBCare service in its own process: ``python -m shared.runner <service>``.

Each service gets its own process because two ``@http`` services in one nameko process share one
socket. The command here is what ``make run`` (Procfile) and the containers run.
"""
from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")  # said once, at import

import eventlet  # noqa: E402

eventlet.monkey_patch()  # must precede every other import

import importlib
import logging
import signal
import sys

from nameko.runners import ServiceRunner

from shared.core import config
from shared.glue import compat as nameko_compat
from shared.glue import message_json, pg_wait, webserver
from shared.core.logs import configure_logging

SERVICE_CLASSES = {
    "intake": "services.intake.service:IntakeService",
    "routing": "services.routing.service:RoutingService",
    "notification": "services.notification.service:NotificationService",
    "reporting": "services.reporting.service:ReportingService",
    "gateway": "services.gateway.service:GatewayService",  # outside systems' calls (docs/gateway.md)
}


def load_service(name: str):
    config.check_startup_settings()  # broker TLS files readable; no placeholder secret in production
    module_name, _, class_name = SERVICE_CLASSES[name].partition(":")
    module = importlib.import_module(module_name)
    check = getattr(module, "check_startup", None)
    if check is not None:
        check()  # raises config.ConfigError with a clear message
    # Say so now, in plain words, if the database is not migrated (instead of a traceback later).
    build_store = getattr(module, "build_store", None)  # the gateway keeps no database
    if build_store is not None:
        store = build_store()
        try:
            store.prepare()
        finally:
            store.database.dispose()
    return getattr(module, class_name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in SERVICE_CLASSES:
        print(f"usage: python -m shared.runner {{{'|'.join(SERVICE_CLASSES)}}}", file=sys.stderr)
        return 2
    name = argv[0]
    configure_logging(name)
    try:
        service_class = load_service(name)
        webserver.install()  # timeouts and a connection cap on its HTTP server (shared/glue/webserver.py)
    except config.ConfigError as error:
        print(f"{name}: refusing to start: {error}", file=sys.stderr)
        return 3
    nameko_compat.install()  # survive a broker restart (see shared/glue/compat.py)
    message_json.install()  # kombu's JSON by orjson (shared/glue/message_json.py)
    pg_wait.install()  # psycopg2's quick answers waited for in place (shared/glue/pg_wait.py)
    runner = ServiceRunner(config.nameko_config(name))
    runner.add_service(service_class)

    def shutdown(signum, _frame):
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    logging.getLogger(name).info("%s started; http on %s", name, config.web_address(name))
    try:
        runner.wait()
    except KeyboardInterrupt:
        runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
