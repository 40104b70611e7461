"""Runs one fault scenario: a steady stream of complaints and agency answers
(``tests.support.load``), the fault injected in the middle, then everything left to settle and
checked (``tests.support.audit``): nothing acknowledged lost or filed twice, every answer
delivered, no duplicate message beyond the scenario's allowance, no queue stuck, nothing looping,
projections equal to a fresh rebuild. Prints the figures and keeps them for the run's summary."""
from __future__ import annotations

import threading
import time

from tests.support.audit import Audit, print_figures
from tests.support.load import ComplaintStream

FIGURES: dict[str, dict] = {}

#: The stores a scenario runs on: ``pytest.mark.parametrize("store", STORES, indirect=True,
#: scope="module")`` (the ``store`` fixture of the fault conftest).
STORES = ("sqlite", "postgresql")


def named(name: str, store: str) -> str:
    """A scenario's name in the figures: as it always was on SQLite, marked on PostgreSQL."""
    return name if store == "sqlite" else f"{name} (PostgreSQL)"


DESK_TOKEN = "desk-token-fault-suite"
DPUPR_TOKEN = "dpupr-token-fault-suite"
FAULT_ENV = {
    "NTBCARE_CATCHUP_SECONDS": "1",
    "NTBCARE_OUTBOX_POLL_SECONDS": "0.2",
    "NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
    "NOTIFICATION_TOKEN_PROBE_SECONDS": "1",
    "NOTIFICATION_SEND_RATE": "0",
    "INTAKE_INBOX_RETRY_SECONDS": "2",
    "INTAKE_WEB_RATE_PER_MINUTE": "0",
    "ROUTING_TOKENS": f"diskominfotik:{DESK_TOKEN},dpupr:{DPUPR_TOKEN}",
}


def run_scenario(name: str, platform, vhost: str, inject, *, seconds: float = 12.0, rate: float = 6.0,
                 fault_at: float = 3.0, settle_timeout: float = 90.0, allowed_duplicates: int = 0,
                 allowed_quarantine: dict | None = None, stream_options: dict | None = None,
                 stream_seconds: float | None = None) -> dict:
    """Stream complaints for ``seconds`` (at least until 2 s after the fault, or exactly
    ``stream_seconds`` when given); call ``inject()`` ``fault_at`` seconds in (it returns when the
    fault is over); then drain, settle and check. Returns the figures."""
    stream = ComplaintStream(platform, rate=rate, **(stream_options or {})).start()
    audit = Audit(platform, vhost, stream)
    started = time.monotonic()
    if stream_seconds is not None:
        threading.Timer(stream_seconds, stream.stop_producing).start()
    try:
        time.sleep(fault_at)
        inject()
        fault_over = time.monotonic()
        time.sleep(max(2.0, seconds - (fault_over - started)))
        stream.stop_producing()
        stream_over = time.monotonic()
        stream.drain(timeout=settle_timeout)
        audit.wait_settled(settle_timeout)
    finally:
        stream.close()
    recovery = audit.settled_at - fault_over
    figures = audit.verdict()
    figures["recovery_seconds"] = round(recovery, 1)
    figures["settled_after_stream_seconds"] = round(audit.settled_at - stream_over, 1)
    figures["fault_seconds"] = round(fault_over - started - fault_at, 1)
    FIGURES[name] = figures
    print_figures(name, figures)
    print("settling:", audit.trace)
    assert figures["acknowledged"] == figures["sent"]
    assert figures["lost"] == 0, figures
    assert figures["filed_twice"] == 0, figures
    assert figures["duplicates"] <= allowed_duplicates, audit.duplicates()
    quarantine_limit = allowed_quarantine or {}
    for service, count in figures["quarantined"].items():
        assert count <= quarantine_limit.get(service, 0), figures["quarantined"]
    assert not any(figures["handler_failures"].values()), figures["handler_failures"]  # none left failing
    audit.assert_quiet()
    rebuild = audit.assert_projection_equals_rebuild()
    figures["rebuild_events"] = rebuild["events"]
    return figures


