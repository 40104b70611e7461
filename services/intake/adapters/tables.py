"""Intake's own database: complaints as filed, the reporter's contact (the only place personal
data lives), the audit of who read it, the raw webhook inbox, and the media store's ledger."""
from sqlalchemy import (BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        text)

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
    Column("external_ref", String(200), nullable=True),
    Column("last_citizen_message_at", String(40), nullable=True),
    Column("open", Boolean, nullable=False, default=True),
    Column("attachments", Text, nullable=True),     # JSON list of {type, url}
    # The outside system that filed it over RPC (the gateway's ``caller_system``); "" for the
    # platform's own doors. Not NULL: a unique key treats NULLs as distinct, and internal callers'
    # external_refs must stay unique among themselves too.
    Column("caller_system", String(64), nullable=False, server_default=""),
    # A reference is unique per caller: two systems may use the same one, and one system's
    # reference never answers with (or swallows) another's complaint.
    UniqueConstraint("caller_system", "external_ref", name="uq_complaints_caller_external_ref"),
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

# Every signed webhook body exactly as Meta sent it, committed before the 200 goes back; a row
# still "pending" after a crash is processed by the inbox timer.
webhook_inbox = Table(
    "webhook_inbox", metadata,
    Column("inbox_id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),   # pending | processed
    Column("processed_at", String(40), nullable=True),
    Column("outcome", Text, nullable=True),                            # counts per outcome, JSON
    # The inbox worker's "pending, oldest first" reads only this index (a few rows), not the
    # 90 days of processed bodies before them.
    Index("ix_webhook_inbox_pending", "inbox_id", sqlite_where=text("state = 'pending'"),
          postgresql_where=text("state = 'pending'")),
)

# Ids already acted on (message mid, comment id, edit, removal, quarantined item): the unique
# key makes a duplicated delivery — even two at once — file nothing new.
seen_items = Table(
    "seen_items", metadata,
    Column("item_key", String(255), primary_key=True),
    Column("complaint_id", String(36), nullable=True),
    Column("seen_at", String(40), nullable=False),
)

# One Messenger conversation per (Page, PSID): which complaint its messages continue.
conversations = Table(
    "conversations", metadata,
    Column("page_id", String(64), primary_key=True),
    Column("psid", String(64), primary_key=True),
    Column("complaint_id", String(36), nullable=True),    # None: the next message files a new one
    Column("in_first_burst", Boolean, nullable=False, default=False),
    Column("last_message_at", String(40), nullable=True),
)

# Page comments that became (or continued) complaints, for edits, removals and replies.
comments = Table(
    "comments", metadata,
    Column("comment_id", String(128), primary_key=True),
    Column("complaint_id", String(36), nullable=False),
    Column("page_id", String(64), nullable=False),
    Column("post_id", String(128), nullable=True),
    Column("origin", Boolean, nullable=False),     # the complaint's own comment, or a later reply
)

# One row per attachment intake keeps the bytes of (services/intake/domain/media.py): written
# with the complaint, message or amendment that brought it (state "pending"), then settled by the
# downloader, outside that transaction, as "stored" (the file is media/<digest[:2]>/<digest>) or
# "lost" (with the reason). ``EvidenceStored`` announces the settlement.
media = Table(
    "media", metadata,
    Column("media_id", String(36), primary_key=True),
    Column("complaint_id", String(36), nullable=False),
    Column("kind", String(32), nullable=False),               # the attachment's type (image, video …)
    Column("url", Text, nullable=True),                        # Meta's CDN link; cleared once settled
    Column("url_hash", String(64), nullable=False),           # SHA-256 of the link: one row per link
    Column("state", String(16), nullable=False, default="pending"),   # pending | stored | lost
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=True),     # ISO UTC; a claimed row's lease end
    Column("reason", Text, nullable=True),                     # the last failure (never the URL)
    Column("digest", String(64), nullable=True),               # SHA-256 of the bytes = the file name
    Column("content_type", String(100), nullable=True),        # as sniffed from the bytes
    Column("size", BigInteger, nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("settled_at", String(40), nullable=True),
    UniqueConstraint("complaint_id", "url_hash", name="uq_media_complaint_url"),
    Index("ix_media_due", "state", "next_attempt_at"),
    Index("ix_media_complaint_digest", "complaint_id", "digest"),
)
