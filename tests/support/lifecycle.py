"""Lifecycle snapshots for tests that play routing's part by hand: the shape every routing event
carries in ``data.lifecycle`` (see ``shared/core/events/lifecycle.py``), with the given values."""
from __future__ import annotations

from shared.core.reference import STAGE_WORDS

_STAGE_OF = {"diterima": "triage", "disetujui": "assigned", "diproses": "in_progress",
             "ditolak": "dismissed", "selesai": "resolved"}


def snapshot(status: str = "disetujui", *, leads=("dpupr",), coordinating=(), confidential=False,
             parts: dict | None = None, deadlines: dict | None = None, names: dict | None = None,
             stage: str | None = None) -> dict:
    stage = stage or _STAGE_OF[status]
    assert STAGE_WORDS[stage] == status
    closed = status in ("ditolak", "selesai")
    at_desk = stage in ("filed", "triage", "returned")
    leads = [] if at_desk else list(leads)
    coordinating = [] if at_desk else list(coordinating)
    if parts is None:
        parts = {code: {"role": "lead", "acknowledged": status != "disetujui", "answered": False,
                        "resolved": status == "selesai"} for code in leads}
        parts.update({code: {"role": "coordinating", "acknowledged": False, "answered": False,
                             "resolved": False} for code in coordinating})
    return {"status": status, "stage": stage, "open": not closed, "at_desk": at_desk and not closed,
            "confidential": confidential, "lead_agencies": leads,
            "coordinating_agencies": coordinating, "parts": parts,
            "deadlines": {} if closed else dict(deadlines or {}),
            "agency_names": {code: (names or {}).get(code, code) for code in parts}}
