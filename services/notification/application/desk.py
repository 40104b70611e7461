"""What the desk asks notification: the messages Facebook could not carry (to reach those
citizens another way), and where the messages of one event stand."""
from __future__ import annotations

from shared.core.db import Database
from services.notification.adapters import deliveries
from services.notification.domain import messages


def undelivered(database: Database, limit: int = 100) -> list[dict]:
    """Undeliverable messages, oldest first (at most ``limit``, 1 to 1,000), each with the desk's
    explanation of its reason. No texts and no PSIDs: the desk reads the complaint in routing."""
    with database.read() as connection:
        rows = deliveries.undelivered_rows(connection, max(1, min(int(limit), 1000)))
    return [dict(row, explanation=messages.desk_reason(row["reason"] or "unknown", code=row["code"]))
            for row in rows]


def delivery_state(database: Database, trigger_event_id) -> list[dict]:
    """The messages one event caused and where each stands."""
    with database.read() as connection:
        return deliveries.delivery_rows(connection, str(trigger_event_id))
