"""Quarantine: what a service could not process is kept here with its reason, listed over RPC
(``<service>.quarantined``) and replayable (``<service>.replay_quarantined``). Nothing is
retried forever and nothing unresolved is thrown away; replayed items are pruned after
``NTBCARE_QUARANTINE_RETENTION_DAYS`` (``shared.core.retention``)."""
from __future__ import annotations

import builtins  # the class has a method named list
import json
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.engine import Connection, RowMapping

from shared.core.events import isoformat_utc, utc_now


def quarantine_table(metadata: MetaData) -> Table:
    if "quarantine" in metadata.tables:
        return metadata.tables["quarantine"]
    return Table(
        "quarantine", metadata,
        Column("item_id", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(32), nullable=False),          # event | webhook | ...
        Column("source", String(64), nullable=True),         # the service or channel it came from
        Column("position", BigInteger, nullable=True),       # for events: position in the source
        Column("reason", Text, nullable=False),
        Column("payload", Text, nullable=False),             # JSON or the raw body
        Column("quarantined_at", String(40), nullable=False),
        Column("state", String(16), nullable=False, default="quarantined"),  # or "replayed"
        Column("attempts", Integer, nullable=False, default=1),
        Column("replayed_by", String(128), nullable=True),
        Column("replayed_at", String(40), nullable=True),
    )


class QuarantineNotFound(LookupError):
    pass


def _as_json(payload: Any) -> str:
    """The payload as JSON text; one nested deeper than ``json.dumps`` can follow (which
    ``json.loads`` may still have accepted, e.g. 2,000 nested arrays in a webhook body) is kept as
    a note, so quarantining never fails — the raw bytes of a webhook stay in intake's inbox."""
    try:
        return json.dumps(payload, ensure_ascii=False, default=str)
    except (RecursionError, ValueError) as error:
        return json.dumps({"unstorable_payload": f"{type(payload).__name__}: {type(error).__name__}"})


class Quarantine:
    def __init__(self, table: Table):
        self.table = table

    def put(self, connection: Connection, kind: str, reason: str, payload: Any,
            source: str | None = None, position: int | None = None) -> int:
        text_payload = payload if isinstance(payload, str) else _as_json(payload)
        result = connection.execute(self.table.insert().values(
            kind=kind, source=source, position=position, reason=reason[:2000],
            payload=text_payload, quarantined_at=isoformat_utc(utc_now()), state="quarantined",
            attempts=1))
        return int(result.inserted_primary_key[0])

    def list(self, connection: Connection, limit: int = 100, include_replayed: bool = False) -> list[dict[str, Any]]:
        query = select(self.table).order_by(self.table.c.item_id).limit(max(1, min(int(limit), 1000)))
        if not include_replayed:
            query = query.where(self.table.c.state == "quarantined")
        return [self._public(row) for row in connection.execute(query).mappings()]

    def get(self, connection: Connection, item_id: int) -> dict[str, Any]:
        row = connection.execute(select(self.table).where(self.table.c.item_id == int(item_id))).mappings().first()
        if row is None:
            raise QuarantineNotFound(f"no quarantined item {item_id}")
        return dict(row)

    def mark_replayed(self, connection: Connection, item_id: int, actor: str) -> None:
        connection.execute(update(self.table).where(self.table.c.item_id == int(item_id)).values(
            state="replayed", replayed_by=actor, replayed_at=isoformat_utc(utc_now())))

    def mark_failed_again(self, connection: Connection, item_id: int, reason: str, actor: str) -> None:
        connection.execute(update(self.table).where(self.table.c.item_id == int(item_id)).values(
            reason=reason[:2000], attempts=self.table.c.attempts + 1, replayed_by=actor,
            replayed_at=isoformat_utc(utc_now())))

    def replayed_before(self, connection: Connection, before: str, limit: int) -> builtins.list[int]:
        """Ids of at most ``limit`` items replayed before the ISO time (never one still quarantined)."""
        table = self.table
        return list(connection.execute(select(table.c.item_id).where(self._replayed_before(before))
                                       .order_by(table.c.item_id).limit(limit)).scalars())

    def delete_replayed(self, connection: Connection, item_ids: builtins.list[int], before: str) -> None:
        """Delete those items — the condition again, so an item quarantined anew stays."""
        connection.execute(delete(self.table).where(self.table.c.item_id.in_(item_ids),
                                                    self._replayed_before(before)))

    def _replayed_before(self, before: str) -> Any:
        table = self.table
        return (table.c.state == "replayed") & table.c.replayed_at.is_not(None) & (table.c.replayed_at < before)

    def count(self, connection: Connection) -> int:
        from sqlalchemy import func
        return connection.execute(select(func.count()).select_from(self.table)
                                  .where(self.table.c.state == "quarantined")).scalar_one()

    @staticmethod
    def _public(row: RowMapping) -> dict[str, Any]:
        # The payload may hold personal data (a webhook body): listings show its size only.
        return {
            "item_id": row["item_id"], "kind": row["kind"], "source": row["source"],
            "position": row["position"], "reason": row["reason"],
            "quarantined_at": row["quarantined_at"], "state": row["state"],
            "attempts": row["attempts"], "replayed_by": row["replayed_by"],
            "replayed_at": row["replayed_at"], "payload_bytes": len(row["payload"] or ""),
        }
