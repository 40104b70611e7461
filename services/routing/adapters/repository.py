"""Reading and writing routing's tables (see ``tables.py``): the directory, the filed facts, the
disposition rebuilt from routing's event store, its state rows (and the lists read from them: the
desk queue, an agency's complaints, the deadlines due), and the hashed API tokens. Routing's SQL
lives here and in ``clusters.py``; the application layer only calls these functions.

Functions take an open SQLAlchemy connection; the caller owns the transaction, so a state row
and the events it reflects always commit together.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Iterable, Mapping, Optional

from sqlalchemy import and_, bindparam, delete, or_, select, update, text
from sqlalchemy.engine import Connection

from shared.core.fast_sql import fast
from shared.core.events import isoformat_utc
from shared.core.events.catalogue import is_current, upcast_log
from shared.core.eventstore import EventStore
from services.routing.adapters import tables
from services.routing.domain.directory import Directory
from services.routing.domain.disposition import Disposition

# The per-complaint statements, built once and executed with a parameters dict: building them on
# every call (coercions, cache keys) was a third of routing's CPU. Bind names are prefixed ``b_`` so
# that they never collide with a column named in an UPDATE's SET or an INSERT's VALUES.
_complaints, _dispositions, _assignments = tables.complaints, tables.dispositions, tables.assignments
_INSERT_FACTS = _complaints.insert()
_FACTS = select(_complaints).where(_complaints.c.complaint_id == bindparam("b_complaint_id"))
# SET: the columns named in the parameters dict (besides ``b_complaint_id``).
_UPDATE_STATE = update(_dispositions).where(_dispositions.c.complaint_id == bindparam("b_complaint_id"))
_INSERT_STATE = _dispositions.insert()
_CLEAR_ASSIGNMENTS = delete(_assignments).where(_assignments.c.complaint_id == bindparam("b_complaint_id"))
_INSERT_ASSIGNMENTS = _assignments.insert()
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_INSERT_FACTS = fast(_INSERT_FACTS)
_FACTS = fast(_FACTS)
_UPDATE_STATE = fast(_UPDATE_STATE)
_INSERT_STATE = fast(_INSERT_STATE)
_CLEAR_ASSIGNMENTS = fast(_CLEAR_ASSIGNMENTS)
_INSERT_ASSIGNMENTS = fast(_INSERT_ASSIGNMENTS)


# --- the directory ---------------------------------------------------------------------------

def upsert_agencies(connection: Connection, records: Iterable[Mapping], now: datetime) -> None:
    """Write every agency of the data file; agencies added only in the database are kept."""
    if connection.dialect.name == "postgresql":
        # Two routing instances starting together must not both insert the same agency.
        connection.execute(text("LOCK TABLE agencies IN SHARE ROW EXCLUSIVE MODE"))
    existing = set(connection.execute(select(tables.agencies.c.code)).scalars())
    for record in records:
        row = {
            "name": record["name"],
            "level": record["level"],
            "categories": json.dumps(list(record.get("categories") or [])),
            "regions": json.dumps([str(region) for region in record.get("regions") or []]),
            "supervisor": record.get("supervisor") or None,
            "is_desk": bool(record.get("is_desk", False)),
            "updated_at": isoformat_utc(now),
        }
        if record["code"] in existing:
            connection.execute(update(tables.agencies)
                               .where(tables.agencies.c.code == record["code"]).values(**row))
        else:
            connection.execute(tables.agencies.insert().values(code=record["code"], **row))


def agency_records(connection: Connection) -> list[dict]:
    rows = connection.execute(select(tables.agencies).order_by(tables.agencies.c.code)).mappings()
    return [{
        "code": row["code"], "name": row["name"], "level": row["level"],
        "categories": json.loads(row["categories"]), "regions": json.loads(row["regions"]),
        "supervisor": row["supervisor"], "is_desk": bool(row["is_desk"]),
    } for row in rows]


def directory_from_db(connection: Connection) -> Directory:
    return Directory.from_records(agency_records(connection))


# --- tokens ----------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def store_token(connection: Connection, agency_code: str, token: str, origin: str,
                issued_by: Optional[str], now: datetime) -> None:
    connection.execute(tables.agency_tokens.insert().values(
        token_hash=hash_token(token), agency_code=agency_code, origin=origin,
        issued_by=issued_by, created_at=isoformat_utc(now)))


def sync_env_tokens(connection: Connection, pairs: Iterable[tuple[str, str]], now: datetime) -> None:
    """Make the ``env`` tokens exactly those of ``ROUTING_TOKENS``: removing one from the
    environment revokes it at the next start. Issued tokens are left alone."""
    wanted = {hash_token(token): code for code, token in pairs}
    current = {row.token_hash: row for row in connection.execute(select(tables.agency_tokens))}
    for token_hash, row in current.items():
        if row.origin == "env" and wanted.get(token_hash) != row.agency_code:
            connection.execute(delete(tables.agency_tokens)
                               .where(tables.agency_tokens.c.token_hash == token_hash))
    for token_hash, code in wanted.items():
        row = current.get(token_hash)
        if row is not None and (row.origin != "env" or row.agency_code == code):
            continue
        connection.execute(tables.agency_tokens.insert().values(
            token_hash=token_hash, agency_code=code, origin="env", issued_by="ROUTING_TOKENS",
            created_at=isoformat_utc(now)))


def agency_for_token(connection: Connection, token: str) -> Optional[str]:
    return connection.execute(select(tables.agency_tokens.c.agency_code).where(
        tables.agency_tokens.c.token_hash == hash_token(token))).scalar()


# --- complaints --------------------------------------------------------------------------------

def save_facts(connection: Connection, complaint_id: str, filed: Mapping) -> None:
    connection.execute(_INSERT_FACTS, dict(
        complaint_id=complaint_id, tracking_code=filed["tracking_code"],
        category=filed["category"], region_code=filed["region_code"],
        priority=filed["priority"], confidential=bool(filed["confidential"]),
        channel=filed["channel"], filed_at=filed["filed_at"], text=filed["text"]))


def facts(connection: Connection, complaint_id: str) -> Optional[Mapping]:
    return connection.execute(_FACTS, {"b_complaint_id": str(complaint_id)}).mappings().first()


def facts_by_tracking_code(connection: Connection, tracking_code: str) -> Optional[Mapping]:
    return connection.execute(select(tables.complaints).where(
        tables.complaints.c.tracking_code == str(tracking_code))).mappings().first()


def update_text(connection: Connection, complaint_id: str, text: str) -> bool:
    result = connection.execute(update(tables.complaints)
                                .where(tables.complaints.c.complaint_id == complaint_id)
                                .values(text=text))
    return result.rowcount > 0


def load(connection: Connection, event_store: EventStore, filed: Mapping,
         desk_code: str) -> Disposition:
    """The disposition as routing's events say it is now (``version`` = events applied)."""
    disposition = Disposition.new(filed["complaint_id"], filed["tracking_code"], filed["category"],
                                  filed["region_code"], filed["priority"],
                                  bool(filed["confidential"]), filed["filed_at"], desk_code)
    for event in event_store.events_for(connection, filed["complaint_id"]):
        disposition.apply(event["event_type"], event["data"], event["occurred_at"])
    return disposition


def lift_old_events(connection: Connection, event_store: EventStore, events: list[dict]) -> list[dict]:
    """Routing's events recorded before they carried the lifecycle (v1), lifted to the current
    version with the lifecycle folded from each complaint's earlier events — so every reader of
    routing's log (``events_since``, the relay) gets current events."""
    lifted: dict[str, dict[int, dict]] = {}
    for complaint_id in {event["complaint_id"] for event in events if not is_current(event)}:
        filed = facts(connection, complaint_id)
        history = upcast_log(event_store.events_for(connection, complaint_id),
                             confidential=bool(filed["confidential"]) if filed else False)
        lifted[complaint_id] = {event["position"]: event for event in history}
    return [event if is_current(event) else lifted[event["complaint_id"]][event["position"]]
            for event in events]


def project(connection: Connection, disposition: Disposition, now: datetime) -> None:
    """Rewrite the complaint's state rows from the disposition just changed."""
    open_deadlines = disposition.open_deadlines()
    row = {
        "tracking_code": disposition.tracking_code,
        "status": disposition.status,
        "public_status": disposition.public_status,
        "at_desk": disposition.at_desk,
        "confidential": disposition.confidential,
        "priority": disposition.priority,
        "category": disposition.category,
        "region_code": disposition.region_code,
        "lead_agencies": json.dumps(disposition.lead_agencies),
        "coordinating_agencies": json.dumps(disposition.coordinating_agencies),
        "due_at": json.dumps({name: isoformat_utc(due) for name, due in disposition.due_at.items()}),
        "escalated": json.dumps(sorted(disposition.escalated)),
        "next_due_at": isoformat_utc(min(open_deadlines.values())) if open_deadlines else None,
        "version": disposition.version,
        "updated_at": isoformat_utc(now),
    }
    complaint_id = disposition.complaint_id
    updated = connection.execute(_UPDATE_STATE, {**row, "b_complaint_id": complaint_id})
    if updated.rowcount == 0:
        connection.execute(_INSERT_STATE, dict(complaint_id=complaint_id, **row))
    connection.execute(_CLEAR_ASSIGNMENTS, {"b_complaint_id": complaint_id})
    roles = [(code, "lead") for code in disposition.lead_agencies if code != disposition.desk_code]
    roles += [(code, "coordinating") for code in disposition.coordinating_agencies]
    if roles:
        connection.execute(_INSERT_ASSIGNMENTS, [
            {"complaint_id": complaint_id, "agency_code": code, "role": role} for code, role in roles])


def summary(row: Mapping) -> dict:
    """A list entry (desk queue, an agency's complaints) from a state row joined with its facts."""
    return {
        "complaint_id": row["complaint_id"],
        "tracking_code": row["tracking_code"],
        "category": row["category"],
        "region_code": row["region_code"],
        "confidential": bool(row["confidential"]),
        "filed_at": row["filed_at"],
        "priority": row["priority"],
        "status": row["status"],
        "public_status": row["public_status"],
        "lead_agencies": json.loads(row["lead_agencies"]),
        "coordinating_agencies": json.loads(row["coordinating_agencies"]),
        "due_at": json.loads(row["due_at"]),
        "escalated": json.loads(row["escalated"]),
        "updated_at": row["updated_at"],
    }


def state_query():
    """State rows joined with the facts they summarise (the category and region are the state
    row's: as filed or as the desk corrected them)."""
    d, c = tables.dispositions, tables.complaints
    return select(d, c.c.filed_at).join(c, c.c.complaint_id == d.c.complaint_id)


def desk_queue(connection: Connection, open_statuses: Iterable[str]) -> list[dict]:
    """Open complaints waiting for the desk, or with an escalated clock (unsorted)."""
    d = tables.dispositions
    query = state_query().where(and_(
        d.c.status.in_(list(open_statuses)), or_(d.c.at_desk == True, d.c.escalated != "[]")))  # noqa: E712
    return [summary(row) for row in connection.execute(query).mappings()]


def complaints_of_agency(connection: Connection, agency_code: str, stage: Optional[str] = None,
                         public_status: Optional[str] = None) -> list[dict]:
    """The complaints an agency is assigned to (with its ``role``), newest change first;
    optionally only those at one routing ``stage`` or one public status word."""
    d, a = tables.dispositions, tables.assignments
    query = (state_query().add_columns(a.c.role)
             .join(a, a.c.complaint_id == d.c.complaint_id).where(a.c.agency_code == agency_code))
    if stage is not None:
        query = query.where(d.c.status == stage)
    if public_status is not None:
        query = query.where(d.c.public_status == public_status)
    items = []
    for row in connection.execute(query.order_by(d.c.updated_at.desc())).mappings():
        item = summary(row)
        item["role"] = row["role"]
        items.append(item)
    return items


def summaries_with_excerpt(connection: Connection, ids: Iterable[str]) -> dict[str, dict]:
    """List entries of these complaints by id, each with the first 200 characters of its text."""
    ids = list(ids)
    if not ids:
        return {}
    c = tables.complaints
    query = state_query().add_columns(c.c.text).where(c.c.complaint_id.in_(ids))
    out = {}
    for row in connection.execute(query).mappings():
        item = summary(row)
        item["excerpt"] = row["text"][:200]
        out[item["complaint_id"]] = item
    return out


def due_before(connection: Connection, moment: datetime) -> list[str]:
    """Complaints whose earliest open deadline is before ``moment``, earliest first."""
    d = tables.dispositions
    return list(connection.execute(select(d.c.complaint_id).where(
        d.c.next_due_at.is_not(None), d.c.next_due_at < isoformat_utc(moment))
        .order_by(d.c.next_due_at)).scalars())
