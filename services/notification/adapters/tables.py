"""Notification's own database: its record of each complaint (enough to answer status requests
and pick a channel), the complaint events it has seen, the outgoing messages with their delivery
state and retry schedule, and the Pages whose sending is held (invalid token)."""
from sqlalchemy import (BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

complaints = Table(
    "complaints", metadata,
    Column("complaint_id", String(36), primary_key=True),
    # False while only later events are known (events of different types arrive on different
    # queues, so a routing event may come before intake's ComplaintFiled).
    Column("filed", Boolean, nullable=False, default=False),
    Column("tracking_code", String(32), nullable=True, index=True),
    Column("channel", String(32), nullable=True),
    Column("reply_to", Text, nullable=True),                 # JSON, as intake recorded it
    # As ComplaintFiled said; the current value is the latest routing event's lifecycle.
    Column("confidential", Boolean, nullable=False, default=False),
    # The citizen's last *Messenger* message, as Meta stamped it (ISO UTC).
    Column("last_citizen_message_at", String(40), nullable=True),
    Column("comment_created_at", String(40), nullable=True),  # comment complaints only
    Column("known_psid", String(64), nullable=True),          # learnt after a comment complaint
    Column("private_reply_used", Boolean, nullable=False, default=False),
    Column("updated_at", String(40), nullable=False),
)

# Every complaint event notification consumed, trimmed to what status answers and messages need
# (for routing's events: the lifecycle after the event, and what a message quotes).
complaint_events = Table(
    "complaint_events", metadata,
    Column("event_id", String(36), primary_key=True),
    Column("complaint_id", String(36), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("occurred_at", String(40), nullable=False),
    Column("data", Text, nullable=False),                    # JSON
    Column("planned", Boolean, nullable=False, default=False),  # its messages are recorded
    UniqueConstraint("complaint_id", "source", "version", name="uq_complaint_events_version"),
)

outgoing = Table(
    "outgoing_messages", metadata,
    Column("message_id", String(36), primary_key=True),      # stable: policy.message_id_for
    Column("trigger_event_id", String(36), nullable=False, index=True),
    Column("complaint_id", String(36), nullable=False, index=True),  # of the CitizenNotified
    # Messages of one lane go out strictly in ``seq`` order (one lane per complaint).
    Column("lane", String(64), nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("part_index", Integer, nullable=False, default=0),
    Column("page_id", String(64), nullable=True),
    # "complaint": reach the complaint's citizen with the complaint's current state;
    # "asker": reach whoever sent the triggering message (status requests).
    Column("audience", String(16), nullable=False),
    Column("reply_to", Text, nullable=True),                  # JSON, for "asker"
    Column("last_message_at", String(40), nullable=True),     # the asker's message time
    Column("human_written", Boolean, nullable=False, default=False),
    Column("text", Text, nullable=False),                     # Messenger / private reply text
    Column("public_text", Text, nullable=True),               # public comment reply text
    Column("excluded_channels", Text, nullable=False, default="[]"),  # JSON list
    Column("fallback_reasons", Text, nullable=False, default="[]"),   # JSON list
    Column("state", String(16), nullable=False, index=True),
    # pending | sent | failed | undeliverable | folded (part merged into an earlier public reply)
    Column("channel", String(32), nullable=True),
    Column("messaging_type", String(32), nullable=True),
    Column("tag", String(32), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("reason", String(64), nullable=True),
    Column("code", Integer, nullable=True),
    Column("graph_message_id", String(128), nullable=True),
    Column("recipient_psid", String(64), nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40), nullable=True),
    Column("finished_at", String(40), nullable=True),
    # The sender looks for the first pending message of every lane: keep that an index walk
    # however large the backlog grows.
    Index("ix_outgoing_pending_lanes", "state", "lane", "seq"),
)

# A Page whose token Meta refused (190): nothing is sent for it until a probe succeeds. Kept in
# the database so a restart does not hammer Meta with a known-bad token.
page_holds = Table(
    "page_holds", metadata,
    Column("page_id", String(64), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("since", String(40), nullable=False),
    Column("last_probe_at", String(40), nullable=True),
)

# What notification remembers of a comment (a complaint's, or one a citizen asked under): its
# private reply — sent, or refused by Meta (then never tried again for it: the public reply is the
# way back) — and whether the citizen removed it (intake's CitizenCommentRemoved: no public reply
# under it any more).
comment_states = Table(
    "comment_states", metadata,
    Column("comment_id", String(128), primary_key=True),
    Column("complaint_id", String(36), nullable=True, index=True),
    # null | "private_reply_used" | "private_reply_refused" | "private_reply_window_closed"
    Column("private_reply_closed", String(64), nullable=True),
    Column("private_reply_code", Integer, nullable=True),     # Meta's code when it refused
    Column("removed_at", String(40), nullable=True),          # the removal event's time
    Column("removed_event_id", String(36), nullable=True),
    Column("updated_at", String(40), nullable=False),
)
