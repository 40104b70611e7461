"""Reporting's projections (read models). Everything here can be dropped and rebuilt from the
event logs; no row holds personal data."""
from sqlalchemy import Boolean, Column, MetaData, String, Table, Text

metadata = MetaData()

complaint_facts = Table(
    "complaint_facts", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, unique=True),
    Column("category", String(32), nullable=False),
    Column("region_code", String(8), nullable=True),
    Column("filed_at", String(40), nullable=False),
    Column("month", String(7), nullable=False, index=True),      # YYYY-MM in WITA
    Column("lead_agencies", Text, nullable=False, default="[]"),
    Column("first_response_at", String(40), nullable=True),
    Column("first_response_due", String(40), nullable=True),
    Column("followed_up", Boolean, nullable=False, default=False),
    Column("resolved", Boolean, nullable=False, default=False),
    Column("public_status", String(16), nullable=False),
    Column("updated_at", String(40), nullable=False),
)
