"""Notification's own database: its record of each complaint (enough to answer status requests
and pick a channel) and the outgoing messages with their delivery state."""
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

complaints = Table(
    "complaints", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, index=True),
    Column("reply_to", Text, nullable=True),                 # JSON, as intake recorded it
    Column("confidential", Boolean, nullable=False),
    Column("last_citizen_message_at", String(40), nullable=True),
    Column("public_status", String(16), nullable=False),
    Column("lead_agencies", Text, nullable=False, default="[]"),
    Column("updated_at", String(40), nullable=False),
)

outgoing = Table(
    "outgoing_messages", metadata,
    Column("message_id", String(36), primary_key=True),      # stable: derived from the trigger
    Column("trigger_event_id", String(36), nullable=False, index=True),
    Column("complaint_id", String(36), nullable=False, index=True),
    Column("page_id", String(64), nullable=False),
    Column("recipient", Text, nullable=False),               # JSON {"id": psid} / {"comment_id"}
    Column("channel", String(32), nullable=False),
    Column("messaging_type", String(32), nullable=True),
    Column("tag", String(32), nullable=True),
    Column("text", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # pending | sent | failed | undeliverable
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=False),
    Column("deadline_at", String(40), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("graph_message_id", String(128), nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40), nullable=True),
)
