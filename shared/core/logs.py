"""Structured JSON logs, one object per line, with ``complaint_id`` and ``event_id`` when a record
carries them (``log.info("...", extra={"complaint_id": ...})``). Message texts and personal data
are never logged by the services; this formatter does not add any."""
from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

CORRELATION_FIELDS = ("complaint_id", "event_id", "event_type", "position", "source")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CORRELATION_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("NTBCARE_LOG_LEVEL", "INFO").upper())
    for noisy in ("kombu", "amqp", "nameko", "urllib3", "eventlet"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
