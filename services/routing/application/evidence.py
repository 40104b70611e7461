"""Evidence for the desk and the agencies: the photos, videos, voice notes and files a citizen sent,
kept by intake in its media store and opened through routing — the agency API
(``GET /api/complaints/<id>/evidence[/<digest>]``) and the console — with the caller's token,
never through a public URL.

Who may open what is decided here, exactly as the console decides whether to show attachments
(``show_attachments = desk or not complaint["confidential"]``): the desk sees every complaint's
evidence; an agency sees the evidence of the complaints assigned to it, unless the complaint is
confidential (an illegal-levy report: the desk only). The bytes are read from intake over RPC
(``intake.media``, chunk by chunk) only after that check and after every read of routing's
database has closed, and their SHA-256 is checked against the digest asked for.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from shared.core.errors import EXPECTED, Forbidden, NotFound, ValidationFailed
from services.routing.adapters import evidence as records

log = logging.getLogger("routing")

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_EVIDENCE_BYTES = 256 * 1024 * 1024     # far above intake's own limit: a guard, not a policy
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
              "image/heic": "heic", "image/heif": "heif", "video/mp4": "mp4", "video/quicktime": "mov",
              "video/3gpp": "3gp", "video/webm": "webm", "audio/mpeg": "mp3", "audio/mp4": "m4a",
              "audio/aac": "aac", "audio/ogg": "ogg", "audio/wav": "wav", "audio/amr": "amr",
              "application/pdf": "pdf"}

# (complaint_id, digest, offset) → intake's chunk {content_type, size, offset, length, data (base64)}
ReadChunk = Callable[[str, str, int], Mapping[str, Any]]


class EvidenceUnavailable(RuntimeError):
    """Intake did not hand the bytes over (not answering, or bytes that do not match)."""


@dataclass(frozen=True)
class OpenedEvidence:
    complaint_id: str
    digest: str
    content_type: str
    data: bytes
    file_name: str


class EvidenceAccess:
    def __init__(self, workflow):
        self.workflow = workflow

    def listing(self, complaint_id, caller: Optional[str]) -> dict:
        """The complaint's evidence: each attachment's type and state (``pending``, ``stored``
        with its digest, type, size and the path to open it, or ``lost`` with the reason)."""
        complaint = self._may_open(complaint_id, caller)
        with self.workflow.database.read() as connection:
            items = records.of_complaint(connection, complaint["complaint_id"])
        for item in items:
            item["href"] = (f"/api/complaints/{complaint['complaint_id']}/evidence/{item['digest']}"
                            if item["state"] == "stored" else None)
        return {"complaint_id": complaint["complaint_id"], "tracking_code": complaint["tracking_code"],
                "evidence": items}

    def open(self, complaint_id, digest, caller: Optional[str], read_chunk: ReadChunk) -> OpenedEvidence:
        """The bytes of one stored attachment of a complaint the caller may open."""
        digest = str(digest or "").strip().lower()
        if not _DIGEST.match(digest):
            raise ValidationFailed("the evidence is named by the SHA-256 of its bytes (64 hex characters)")
        complaint = self._may_open(complaint_id, caller)
        complaint_id = complaint["complaint_id"]
        with self.workflow.database.read() as connection:
            known = records.stored(connection, complaint_id, digest)
        if known is None:
            raise NotFound(f"complaint {complaint['tracking_code']} has no stored evidence {digest}")
        data, content_type = self._read(complaint_id, digest, read_chunk)
        log.info("evidence opened by %s", caller or "a system over RPC", extra={"complaint_id": complaint_id})
        return OpenedEvidence(complaint_id, digest, content_type or known["content_type"], data,
                              file_name(complaint["tracking_code"], digest, content_type or known["content_type"]))

    def _may_open(self, complaint_id, caller: Optional[str]) -> dict:
        complaint: dict = self.workflow.get_complaint(complaint_id, caller=caller)  # NotFound, Forbidden
        if caller is not None and caller != self.workflow.desk and complaint["confidential"]:
            raise Forbidden("the evidence of a confidential complaint is shown to the desk only")
        return complaint

    @staticmethod
    def _read(complaint_id: str, digest: str, read_chunk: ReadChunk) -> tuple[bytes, str]:
        data = bytearray()
        content_type = ""
        while True:
            try:
                chunk = read_chunk(complaint_id, digest, len(data))
                piece = base64.b64decode(chunk["data"], validate=True)
                size, content_type = int(chunk["size"]), str(chunk["content_type"])
            except EXPECTED:
                raise
            except (KeyError, TypeError, ValueError, binascii.Error):
                log.error("intake.media answered something unexpected", extra={"complaint_id": complaint_id})
                raise EvidenceUnavailable("intake's answer could not be read") from None
            except Exception as error:
                log.warning("intake.media failed: %s", type(error).__name__, extra={"complaint_id": complaint_id})
                raise EvidenceUnavailable("intake did not hand the evidence over; try again shortly") from None
            data += piece
            if not piece or len(data) >= size or len(data) > MAX_EVIDENCE_BYTES:
                break
        if hashlib.sha256(data).hexdigest() != digest:
            log.error("evidence bytes from intake do not match their digest", extra={"complaint_id": complaint_id})
            raise EvidenceUnavailable("the evidence could not be verified")
        return bytes(data), content_type


def file_name(tracking_code: str, digest: str, content_type: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]", "", str(tracking_code))[:32] or "bukti"
    return f"{safe}-{digest[:12]}.{EXTENSIONS.get(content_type, 'bin')}"
