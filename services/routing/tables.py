"""Routing's own database: what it knows of each complaint (its disposition state)."""
from sqlalchemy import Boolean, Column, MetaData, String, Table, Text

metadata = MetaData()

dispositions = Table(
    "dispositions", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, index=True),
    Column("category", String(32), nullable=False),
    Column("region_code", String(8), nullable=True),
    Column("priority", String(16), nullable=False),
    Column("confidential", Boolean, nullable=False),
    Column("filed_at", String(40), nullable=False),
    Column("text", Text, nullable=False),
    Column("lead_agencies", Text, nullable=False, default="[]"),   # JSON list
    Column("status", String(32), nullable=False),
)
