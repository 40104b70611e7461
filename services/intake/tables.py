"""Intake's own database: complaints as filed, the reporter's contact (the only place personal
data lives), the audit of who read it, and the raw webhook inbox."""
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

complaints = Table(
    "complaints", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("filed_at", String(40), nullable=False),
    Column("text", Text, nullable=False),
    Column("category", String(32), nullable=False),
    Column("region_code", String(8), nullable=True),
    Column("priority", String(16), nullable=False),
    Column("confidential", Boolean, nullable=False),
    Column("reply_to", Text, nullable=True),        # JSON; PSID/comment id stay in intake
    Column("external_ref", String(200), nullable=True, unique=True),
    Column("last_citizen_message_at", String(40), nullable=True),
    Column("open", Boolean, nullable=False, default=True),
)

reporters = Table(
    "reporters", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("phone", String(64), nullable=True),
    Column("email", String(200), nullable=True),
    Column("psid", String(64), nullable=True),
)

contact_audit = Table(
    "contact_audit", metadata,
    Column("audit_id", Integer, primary_key=True, autoincrement=True),
    Column("complaint_id", String(36), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", String(40), nullable=False),
)
