"""The console's reads and its one write, on routing's own tables.

* ``save_filing_details`` keeps a ``ComplaintFiled``'s classification reasons and attachments
  (routing's decision needs neither; the desk's complaint page shows both). It runs in the
  consumer's transaction, right after the workflow stores the facts, and writes once.
* ``next_deadlines`` reads the earliest deadline that can still breach (``next_due_at``, kept by
  the workflow with each state change) for the inbox's "nearing deadline" and "overdue".
* ``token_hashes`` lets a session check that the token it was opened with is still valid.
"""
from __future__ import annotations

import json
from typing import Iterable, Optional

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from services.routing.adapters import tables

# Built once: building them on every ComplaintFiled (coercions, cache keys) was a third of routing's CPU.
_details = tables.complaint_details
_DETAILS_KEPT = select(_details.c.complaint_id).where(_details.c.complaint_id == bindparam("b_complaint_id"))
_INSERT_DETAILS = _details.insert()


def save_filing_details(connection: Connection, complaint_id: str, filed: dict) -> None:
    exists = connection.execute(_DETAILS_KEPT, {"b_complaint_id": complaint_id}).first()
    if exists is not None:
        return
    connection.execute(_INSERT_DETAILS, dict(
        complaint_id=complaint_id,
        reasons=json.dumps(filed.get("reasons") or {}, ensure_ascii=False),
        attachments=json.dumps(filed.get("attachments") or [], ensure_ascii=False)))


def filing_details(connection: Connection, complaint_id: str) -> Optional[dict]:
    row = connection.execute(select(tables.complaint_details).where(
        tables.complaint_details.c.complaint_id == complaint_id)).mappings().first()
    if row is None:
        return None  # filed before the console kept them
    return {"reasons": json.loads(row["reasons"]), "attachments": json.loads(row["attachments"])}


def next_deadlines(connection: Connection, complaint_ids: Iterable[str]) -> dict[str, Optional[str]]:
    ids = list(complaint_ids)
    if not ids:
        return {}
    d = tables.dispositions
    rows = connection.execute(select(d.c.complaint_id, d.c.next_due_at)
                              .where(d.c.complaint_id.in_(ids)))
    return {row.complaint_id: row.next_due_at for row in rows}


def token_hashes(connection: Connection, agency_code: str) -> list[str]:
    t = tables.agency_tokens
    return list(connection.execute(select(t.c.token_hash).where(t.c.agency_code == agency_code)).scalars())
