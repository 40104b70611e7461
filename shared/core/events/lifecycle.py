"""A complaint's lifecycle as routing decides it — the one definition of its public state.

Routing's ``Disposition`` keeps a ``Lifecycle`` and folds every routing event into it; every
routing event then carries the resulting ``snapshot()`` as ``data.lifecycle`` (routing events v2,
see ``docs/lifecycle.md``). Notification and reporting read that snapshot from the events and
never compute it again; they must not import this module (``tests/unit/test_contracts.py`` checks).
The only other user is the v1 → v2 upcaster of routing's events, which lifts a log recorded
before events carried the lifecycle by folding it with this same code.

The snapshot:

- ``status``: the public word — *diterima* (not triaged yet), *disetujui* (routed, no agency has
  acted), *diproses* (an agency acknowledged or answered, or back at the desk after "bukan
  wewenang"), *ditolak* (dismissed), *selesai* (every lead resolved its part, or the desk closed it);
- ``stage``: routing's finer word for the same state (``filed``, ``triage``, ``assigned``,
  ``in_progress``, ``returned``, ``dismissed``, ``resolved``);
- ``open``, ``at_desk`` (waiting for the desk: not routed, held, or handed back);
- ``confidential``: the complaint's current confidentiality (illegal-levy rule, desk decisions);
- ``lead_agencies`` / ``coordinating_agencies``: the agencies with a part now (empty at the desk);
- ``parts``: per agency that has or had a part: ``role`` (``lead``, ``coordinating``,
  ``handed_back``) and ``acknowledged`` / ``answered`` / ``resolved``;
- ``deadlines``: the service-level clocks still running (not stopped by an agency's action);
- ``agency_names``: display names of the agencies in ``parts`` (from routing's directory).

Pure: no framework, no clock, no I/O.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

from shared.core.events import types as ev
from shared.core.reference import (
    STAGE_ASSIGNED, STAGE_DISMISSED, STAGE_FILED, STAGE_IN_PROGRESS, STAGE_RESOLVED,
    STAGE_RETURNED, STAGE_TRIAGE, STAGE_WORDS,
)

LEAD, COORDINATING, HANDED_BACK = "lead", "coordinating", "handed_back"
TRIAGE, FIRST_RESPONSE, FOLLOW_UP = "triage", "first_response", "follow_up"


def _part(role: str) -> dict[str, Any]:
    return {"role": role, "acknowledged": False, "answered": False, "resolved": False}


class Lifecycle:
    """The fold: ``apply(event_type, data)`` for each routing event, in version order."""

    def __init__(self, confidential: bool = False):
        self.confidential = bool(confidential)
        self.lead_agencies: list[str] = []
        self.coordinating_agencies: list[str] = []
        self.parts: dict[str, dict[str, Any]] = {}
        self.due_at: dict[str, str] = {}
        self.agency_names: dict[str, str] = {}
        self.routed = False
        self.at_desk_after_routing = False
        self.been_with_agency = False
        self.closed: Optional[str] = None  # STAGE_DISMISSED | STAGE_RESOLVED

    def copy(self) -> "Lifecycle":
        return copy.deepcopy(self)

    # --- folding -------------------------------------------------------------------------------

    def apply(self, event_type: str, data: Mapping[str, Any]) -> None:
        fold = _FOLD.get(event_type)
        if fold is None:
            raise ValueError(f"{event_type!r} is not a routing event the lifecycle knows")
        fold(self, data)
        self._learn_names(data)

    def _learn_names(self, data: Mapping[str, Any]) -> None:
        # v2 events carry the names in their snapshot; v1 events carried them beside the codes.
        names = dict((data.get("lifecycle") or {}).get("agency_names") or {})
        names.update(data.get("agency_names") or {})
        if data.get("agency_name") and data.get("agency_code"):
            names[data["agency_code"]] = data["agency_name"]
        self.agency_names.update({str(k): str(v) for k, v in names.items() if v})

    def _keep_handed_back_only(self) -> None:
        self.lead_agencies, self.coordinating_agencies = [], []
        self.parts = {code: part for code, part in self.parts.items() if part["role"] == HANDED_BACK}
        self.at_desk_after_routing = True

    def _routed(self, data: Mapping[str, Any]) -> None:
        self.routed = True
        self.due_at = dict(data["due_at"])
        if TRIAGE in self.due_at:  # routed to (or held at) the desk: no agency has a part now
            self._keep_handed_back_only()
            return
        self.at_desk_after_routing = False
        self.been_with_agency = True
        self.lead_agencies = list(data["lead_agencies"])
        self.coordinating_agencies = [code for code in data["coordinating_agencies"]
                                      if code not in self.lead_agencies]
        current = set(self.lead_agencies) | set(self.coordinating_agencies)
        # An agency re-routed away keeps nothing; one that stays keeps what it has done.
        self.parts = {code: part for code, part in self.parts.items()
                      if code in current or part["role"] == HANDED_BACK}
        for role, codes in ((LEAD, self.lead_agencies), (COORDINATING, self.coordinating_agencies)):
            for code in codes:
                part = self.parts.get(code)
                if part is None or part["role"] == HANDED_BACK:  # (re)assigned: a fresh part
                    part = self.parts[code] = _part(role)
                part["role"] = role

    def _acknowledged(self, data: Mapping[str, Any]) -> None:
        self._active_part(data["agency_code"])["acknowledged"] = True

    def _responded(self, data: Mapping[str, Any]) -> None:
        part = self._active_part(data["agency_code"])
        part["answered"] = True
        part["resolved"] = part["resolved"] or bool(data["resolved"])

    def _rejected(self, data: Mapping[str, Any]) -> None:
        code = data["agency_code"]
        self.lead_agencies = [c for c in self.lead_agencies if c != code]
        self.coordinating_agencies = [c for c in self.coordinating_agencies if c != code]
        self.parts[code] = _part(HANDED_BACK)
        if not self.lead_agencies:
            # The last lead handed it back: to the desk, with a new triage clock.
            self._keep_handed_back_only()
            self.due_at = dict(data.get("due_at") or {})

    def _resolved(self, data: Mapping[str, Any]) -> None:
        self.closed = STAGE_RESOLVED

    def _dismissed(self, data: Mapping[str, Any]) -> None:
        self.closed = STAGE_DISMISSED

    def _confidentiality(self, data: Mapping[str, Any]) -> None:
        self.confidential = bool(data["confidential"])

    def _reopened(self, data: Mapping[str, Any]) -> None:
        # The citizen says it is not solved: open again. Back to the leads, whose parts lose
        # "answered" and "resolved" (so the fresh follow-up clock runs until they answer again),
        # or — from the second reopen on — to the desk, as after a hand-back.
        self.closed = None
        self.due_at = dict(data["due_at"])
        if data.get("to_desk"):
            self._keep_handed_back_only()
            return
        for code in self.lead_agencies:
            part = self._active_part(code)
            # It has taken the complaint up before (public status *diproses*); it owes a new answer.
            part["acknowledged"] = part["acknowledged"] or part["answered"]
            part["answered"] = part["resolved"] = False

    def _nothing(self, data: Mapping[str, Any]) -> None:
        pass

    def _active_part(self, code: str) -> dict[str, Any]:
        part = self.parts.get(code)
        if part is None or part["role"] == HANDED_BACK:
            part = self.parts[code] = _part(LEAD if code in self.lead_agencies else COORDINATING)
        return part

    # --- reading -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.closed is None

    @property
    def at_desk(self) -> bool:
        return self.is_open and (not self.routed or self.at_desk_after_routing)

    @property
    def stage(self) -> str:
        if self.closed:
            return self.closed
        if not self.routed:
            return STAGE_FILED
        if self.at_desk_after_routing:
            return STAGE_RETURNED if self.been_with_agency else STAGE_TRIAGE
        if any(self.parts[code]["acknowledged"] or self.parts[code]["answered"]
               for code in self.lead_agencies + self.coordinating_agencies):
            return STAGE_IN_PROGRESS
        return STAGE_ASSIGNED

    @property
    def status(self) -> str:
        return STAGE_WORDS[self.stage]

    def progress_of(self, code: str) -> dict[str, Any]:
        part = self.parts.get(code)
        if part is None or part["role"] == HANDED_BACK:
            return {"acknowledged": False, "answered": False, "resolved": False}
        return {key: part[key] for key in ("acknowledged", "answered", "resolved")}

    def stopped(self, clock: str) -> bool:
        """A lead's first acknowledgment or answer stops the first response; its first answer
        stops the follow-up; triage ends only by routing or dismissal."""
        if clock == FIRST_RESPONSE:
            return any(self.progress_of(code)["acknowledged"] or self.progress_of(code)["answered"]
                       for code in self.lead_agencies)
        if clock == FOLLOW_UP:
            return any(self.progress_of(code)["answered"] for code in self.lead_agencies)
        return False

    def deadlines(self) -> dict[str, str]:
        if not self.is_open:
            return {}
        return {clock: due for clock, due in self.due_at.items() if not self.stopped(clock)}

    def snapshot(self) -> dict[str, Any]:
        codes = sorted(self.parts)
        return {
            "status": self.status,
            "stage": self.stage,
            "open": self.is_open,
            "at_desk": self.at_desk,
            "confidential": self.confidential,
            "lead_agencies": list(self.lead_agencies),
            "coordinating_agencies": list(self.coordinating_agencies),
            "parts": {code: dict(self.parts[code]) for code in codes},
            "deadlines": self.deadlines(),
            "agency_names": {code: self.agency_names.get(code, code) for code in codes},
        }


_FOLD = {
    ev.COMPLAINT_ROUTED: Lifecycle._routed,
    ev.COMPLAINT_ACKNOWLEDGED: Lifecycle._acknowledged,
    ev.COMPLAINT_RESPONDED: Lifecycle._responded,
    ev.COMPLAINT_REJECTED_BY_AGENCY: Lifecycle._rejected,
    ev.COMPLAINT_RESOLVED: Lifecycle._resolved,
    ev.COMPLAINT_DISMISSED: Lifecycle._dismissed,
    ev.COMPLAINT_ESCALATED: Lifecycle._nothing,
    ev.COMPLAINT_CONFIDENTIALITY_CHANGED: Lifecycle._confidentiality,
    ev.COMPLAINT_LINKED: Lifecycle._nothing,  # joins a cluster; moves nothing by itself
    # The desk corrected category/region; a re-route it causes is its own ComplaintRouted.
    ev.COMPLAINT_RECLASSIFIED: Lifecycle._nothing,
    ev.COMPLAINT_REOPENED: Lifecycle._reopened,
    ev.COMPLAINT_REOPEN_REFUSED: Lifecycle._nothing,
    ev.CITIZEN_RATED: Lifecycle._nothing,
}
