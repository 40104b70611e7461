"""Routing's own database, besides its event store (the truth of every disposition):

* ``agencies`` — the directory, upserted from ``data/agencies.yaml`` on start;
* ``complaints`` — the facts of each ``ComplaintFiled`` a disposition starts from;
* ``disposition_states`` (``tables.dispositions``) and ``assignments`` — the current state of
  each complaint, rewritten in the same transaction as its events, for queues, lists and the
  breach timer (derived from the events; never read to decide a command);
* ``agency_tokens`` — the API's bearer tokens, stored as SHA-256 hashes only;
* ``evidence`` — each attachment intake keeps in its media store, and whether it is stored
  (with its digest) or lost: from ``ComplaintFiled``/``ComplaintAmended`` and ``EvidenceStored``.
  The bytes stay in intake; routing asks for them (``intake.media``) for a caller it allows.
* ``console_sessions`` — the console's signed-in sessions (hashed ids), ended by signing out.
* ``cluster_words``, ``link_suggestions``, ``cluster_links`` — duplicates and clusters: the words
  (and public Facebook post id) a new complaint is compared by, the suggestions shown to the desk
  with their grounds and the desk's decision, and which complaint is linked to which primary
  (written with its ``ComplaintLinked``).
"""
from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, false

metadata = MetaData()

agencies = Table(
    "agencies", metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("level", String(16), nullable=False),
    Column("categories", Text, nullable=False),   # JSON list
    Column("regions", Text, nullable=False),      # JSON list
    Column("supervisor", String(64), nullable=True),
    Column("is_desk", Boolean, nullable=False, default=False),
    Column("updated_at", String(40), nullable=False),
)

complaints = Table(
    "complaints", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, unique=True),
    Column("category", String(32), nullable=False),
    Column("region_code", String(8), nullable=True),
    Column("priority", String(16), nullable=False),   # as filed; the disposition's may change
    Column("confidential", Boolean, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("filed_at", String(40), nullable=False),
    Column("text", Text, nullable=False),
    # Duplicate suggestions look up the open complaints of a category and region by filing time.
    Index("ix_complaints_place_filed", "category", "region_code", "filed_at"),
)

dispositions = Table(
    "disposition_states", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("tracking_code", String(32), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("public_status", String(16), nullable=False),
    Column("at_desk", Boolean, nullable=False, index=True),
    # The complaint's current confidentiality (filing, a later levy report, desk decisions).
    Column("confidential", Boolean, nullable=False, server_default=false()),
    Column("priority", String(16), nullable=False),
    # The complaint's current category and region: as filed, or as the desk corrected them
    # (``ComplaintReclassified``); ``complaints`` keeps the filed ones.
    Column("category", String(32), nullable=True),
    Column("region_code", String(8), nullable=True),
    Column("lead_agencies", Text, nullable=False),          # JSON list
    Column("coordinating_agencies", Text, nullable=False),  # JSON list
    Column("due_at", Text, nullable=False),                 # JSON {clock: iso}
    Column("escalated", Text, nullable=False),              # JSON list of clocks
    # Earliest deadline that can still breach (ISO UTC, comparable as text); NULL when none.
    Column("next_due_at", String(40), nullable=True, index=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

assignments = Table(
    "assignments", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("agency_code", String(64), primary_key=True, index=True),
    Column("role", String(16), nullable=False),  # lead | coordinating
)

agency_tokens = Table(
    "agency_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("agency_code", String(64), nullable=False, index=True),
    Column("origin", String(16), nullable=False),  # env | issued
    Column("issued_by", String(200), nullable=True),
    Column("created_at", String(40), nullable=False),
)

# What the console shows of the filing besides the facts above: the classifier's reasons and the
# attachments of ``ComplaintFiled`` (written with the facts, in the consumer's transaction).
complaint_details = Table(
    "complaint_details", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("reasons", Text, nullable=False),      # JSON {category, region, priority: [words]}
    Column("attachments", Text, nullable=False),  # JSON [{type, url}]
)

# What routing knows of a complaint's evidence (never the bytes, never Meta's link): noted from the
# attachments of ``ComplaintFiled``/``ComplaintAmended`` (pending), settled by ``EvidenceStored``.
evidence = Table(
    "evidence", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("media_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),            # image, video, audio, file …
    Column("state", String(16), nullable=False),           # pending | stored | lost
    Column("digest", String(64), nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("noted_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# The console's signed-in sessions, server-side, so signing out ends a session for good (a copied
# cookie is dead after it). Only a SHA-256 of the session id is stored; the cookie holds the id.
console_sessions = Table(
    "console_sessions", metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("agency_code", String(64), nullable=False),
    Column("officer", String(400), nullable=False),
    Column("issued_at", BigInteger, nullable=False),               # seconds since the epoch
    Column("expires_at", BigInteger, nullable=False, index=True),
)

# Duplicates and clusters (``services/routing/domain/clusters.py``). The words a complaint is
# compared by and the Facebook post it was a comment on (a post id is public, never personal; the
# comment id and PSID are never kept here).
cluster_words = Table(
    "cluster_words", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("post_id", String(100), nullable=True, index=True),
    Column("words", Text, nullable=False),                  # space-separated, sorted
)

# One row per (new complaint, suggested primary): shown to the desk while ``state`` is pending;
# confirmed (a ``ComplaintLinked`` was recorded) or refused — a refused pair is never suggested again.
link_suggestions = Table(
    "link_suggestions", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("primary_id", String(36), primary_key=True, index=True),
    Column("matched_id", String(36), nullable=False),       # the complaint it matched best
    Column("score", Float, nullable=False),
    Column("because", Text, nullable=False),                # JSON list: same_post, same_category_region, similar_words
    Column("common_words", Text, nullable=False),           # JSON list
    Column("hours_apart", Float, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # pending | confirmed | refused
    Column("suggested_at", String(40), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", String(40), nullable=True),
)

# Which complaint is linked to which primary (written in the transaction of its ``ComplaintLinked``).
cluster_links = Table(
    "cluster_links", metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("primary_id", String(36), nullable=False, index=True),
    Column("linked_at", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
)
