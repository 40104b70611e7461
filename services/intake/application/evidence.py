"""Evidence that lasts: intake downloads the attachments of Facebook messages and comments into
its media store behind the webhook, and hands the bytes to routing (``intake.media``), which
decides who may see them.

* ``Evidence.run_due`` (intake's media timer): every pending download that is due is claimed in a
  short transaction, fetched with no transaction open, then settled in another short transaction
  that appends ``EvidenceStored`` (state ``stored`` with digest, type and size, or ``lost`` with
  the reason) — or, after a temporary failure, given its next attempt time (backoff).
* ``Evidence.chunk``: part of a stored file of a complaint, base64, for ``intake.media``.

The rules (which, from where, what, how named, how retried) are in
``services.intake.domain.media``; the settings come from the environment (README, "Configuration").
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Protocol

from shared.core import config
from shared.core.errors import NotFound, ValidationFailed
from shared.core.events import utc_now
from shared.core.store import ServiceStore
from services.intake.adapters import media as ledger
from services.intake.adapters.media_files import MediaFiles
from services.intake.domain import media as rules

log = logging.getLogger("intake.media")

BATCH = 20


def media_directory() -> Path:
    explicit = config.env("INTAKE_MEDIA_DIR")
    return Path(explicit) if explicit else config.data_dir() / "media"


def _positive(name: str, default: str, kind: type = int):
    return config.number(name, default, kind=kind, above=0)


def media_settings_from_env() -> rules.MediaSettings:
    return rules.MediaSettings(
        directory=str(media_directory()),
        max_bytes=_positive("INTAKE_MEDIA_MAX_BYTES", str(rules.DEFAULT_MAX_BYTES)),
        max_attempts=_positive("INTAKE_MEDIA_MAX_ATTEMPTS", str(rules.DEFAULT_MAX_ATTEMPTS)),
        retry_seconds=_positive("INTAKE_MEDIA_RETRY_SECONDS", str(rules.DEFAULT_RETRY_SECONDS), float),
        timeout_seconds=_positive("INTAKE_MEDIA_TIMEOUT_SECONDS", "60", float),
        allow_hosts=rules.parse_allow_hosts(config.env("INTAKE_MEDIA_ALLOW_HOSTS")))


def media_poll_seconds() -> float:
    return float(_positive("INTAKE_MEDIA_POLL_SECONDS", "2", float))


class Fetcher(Protocol):
    def fetch(self, url: str, write: Callable[[bytes], None]) -> str | None: ...


@dataclass
class Evidence:
    store: ServiceStore
    settings: rules.MediaSettings
    fetcher: Fetcher
    files: MediaFiles = field(init=False)

    def __post_init__(self) -> None:
        self.files = MediaFiles(self.settings.directory)

    @property
    def lease_seconds(self) -> float:
        """How long a claimed download is left alone: its deadline, and a margin."""
        return self.settings.timeout_seconds * 2 + 30

    # -- the downloader ------------------------------------------------------------------------
    def run_due(self, limit: int = BATCH) -> dict[str, int]:
        """Try every due download (at most ``limit``); returns the count of each outcome."""
        with self.store.database.read() as connection:
            due = ledger.due(connection, utc_now(), limit)
        counts: dict[str, int] = {}
        for row in due:
            try:
                outcome = self.attempt(row["media_id"], row["attempts"], row["next_attempt_at"])
            except Exception:
                # Our side failed (the disk, the database): the claimed row comes back after its
                # lease; the evidence is never recorded as lost for it.
                log.exception("evidence download could not be completed", extra={"media_id": row["media_id"]})
                outcome = "error"
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def attempt(self, media_id: str, attempts: int, next_attempt_at: str | None) -> str:
        """One try at one download: ``stored``, ``lost``, ``retry`` or ``skipped`` (taken by
        another downloader)."""
        with self.store.database.transaction() as tx:
            row = ledger.claim(tx, media_id, attempts, next_attempt_at, utc_now(), self.lease_seconds)
        if row is None:
            return "skipped"
        context = {"media_id": media_id, "complaint_id": row["complaint_id"], "attempt": row["attempts"]}
        try:
            with self.files.staging(self.settings.max_bytes) as staged:
                if not row["url"]:
                    raise rules.MediaFailure("no link recorded", permanent=True)
                self.fetcher.fetch(row["url"], staged.write)
                content_type = rules.checked_type(staged.head, staged.size, self.settings.max_bytes)
                digest = self.files.keep(staged)
                size = staged.size
        except rules.MediaFailure as failure:
            return self._failed(row, failure, context)
        with self.store.database.transaction() as tx:
            settled = ledger.settle(tx, row, rules.STORED, utc_now(), digest=digest, content_type=content_type,
                                    size=size)
        if not settled:
            return "skipped"
        log.info("evidence stored", extra={**context, "digest": digest, "content_type": content_type,
                                           "size": size})
        return "stored"

    def _failed(self, row: dict, failure: rules.MediaFailure, context: dict) -> str:
        step = rules.after_failure(failure, row["attempts"], self.settings)
        now = utc_now()
        with self.store.database.transaction() as tx:
            if step.state == rules.LOST:
                done = ledger.settle(tx, row, rules.LOST, now, reason=step.reason)
            else:
                done = ledger.retry_later(tx, row["media_id"], row["attempts"], step.reason,
                                          now + timedelta(seconds=step.delay_seconds))
        if not done:
            return "skipped"
        if step.state == rules.LOST:
            log.warning("evidence lost: %s", step.reason, extra=context)
            return "lost"
        log.info("evidence download failed, retrying in %.0f s: %s", step.delay_seconds, step.reason,
                 extra=context)
        return "retry"

    def pending(self) -> int:
        with self.store.database.read() as connection:
            return ledger.pending_count(connection)

    # -- reading ---------------------------------------------------------------------------------
    def chunk(self, complaint_id, digest, offset=0, limit=None) -> dict:
        """``limit`` bytes (at most ``rules.MAX_CHUNK_BYTES``) of a stored file of the complaint
        from ``offset``, base64-encoded, with the file's type and whole size."""
        if not rules.is_digest(digest):
            raise ValidationFailed("digest must be 64 lowercase hex characters (SHA-256)")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationFailed("offset must be a whole number, 0 or more")
        with self.store.database.read() as connection:
            known = ledger.stored(connection, str(complaint_id), digest)
        if known is None:
            raise NotFound(f"complaint {complaint_id} has no stored evidence {digest}")
        try:
            data = self.files.read(digest, offset, rules.chunk_limit(limit))
        except FileNotFoundError:
            log.error("a stored evidence file is missing from the media store",
                      extra={"complaint_id": str(complaint_id), "digest": digest})
            raise NotFound(f"the file of evidence {digest} is missing from the media store") from None
        return {"complaint_id": str(complaint_id), "digest": digest, "content_type": known["content_type"],
                "size": known["size"], "offset": offset, "length": len(data),
                "data": base64.b64encode(data).decode("ascii")}

    def of_complaint(self, complaint_id) -> list[dict]:
        with self.store.database.read() as connection:
            return ledger.for_complaint(connection, str(complaint_id))
