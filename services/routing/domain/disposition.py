"""The disposition of one complaint: who must act on it, what they have done, and which service
clocks run. An event-sourced aggregate: its state is rebuilt by applying routing's past events to
the starting fact taken from ``ComplaintFiled``; its commands check the request against that state
and return the new ``(event_type, data)`` pairs without changing anything. The service appends
them to routing's event store and applies them (``apply_all``); a refused command raises a
``DomainError`` and so records nothing.

Choices where the brief is silent:

- Lead and coordinating agencies. ``assign`` makes the first code the lead and the others
  coordinating; several leads come only from a routing decision (rules may name a list). Any
  assigned agency may acknowledge and post public answers; only a lead may resolve, and the
  complaint is resolved when every lead has resolved its part. Clocks stop only for leads:
  first response at a lead's first acknowledgment or answer, follow-up at a lead's first answer.
- At the desk. A routing whose ``due_at`` holds ``triage`` keeps the complaint at the desk (the
  lead is the desk itself; no agency may act on it). An operator may assign the desk alone ("hold
  for triage") but never the desk together with agencies.
- Rejection ("bukan wewenang"). The rejecting agency is removed. When it was the only lead, the
  complaint returns to the desk: public status *diproses*, in the triage queue, and a new triage
  clock starts at the rejection; the clock is carried in the rejection event as ``due_at``
  ({"triage": iso}) and ``returned_to_desk: true`` (the design allows extra fields), so replay
  needs no policy. An agency that has resolved its part can no longer reject.
- ``set_priority`` emits a ``ComplaintRouted`` with the same agencies and the new priority. Only
  the priority-dependent clock restarts: the first response is due from now under the new
  priority; follow-up and triage keep their deadlines, because priority does not govern them.
- Escalation. ``breaches(now, directory)`` reports each clock past due (strictly after its
  deadline) and not stopped, once: an escalated clock is remembered until a routing moves that
  clock's deadline (re-routing, or a priority change for the first response). ``notified`` is the
  supervisors of the lead agencies, then the desk. Closed complaints never escalate.
- Status. Internal: ``filed`` (not routed yet), ``triage`` (at the desk, never with an agency),
  ``assigned``, ``in_progress`` (an assigned agency acknowledged or answered), ``returned`` (back
  at the desk after being with agencies), ``dismissed``, ``resolved``; see ``PUBLIC_STATUS``.
  A re-route to new agencies that have not acted yet shows *disetujui* again. The status, the
  agencies' parts, at-the-desk, open/closed and confidentiality are the complaint's *lifecycle*
  (``shared.core.events.lifecycle``): ``stamped`` attaches its snapshot after each new event, so every
  routing event carries the state it leaves and no other service computes it.
- Corrections (issue 20). The desk corrects the category and/or region with a reason:
  ``ComplaintReclassified`` (before → after, reason, actor, ``rerouted``). The rules are asked
  for the corrected facts; the correction re-routes — a ``ComplaintRouted`` decided by that rule
  (``decided_by: rule:<id>``, the rule's reason; the desk's name and words are on the
  correction just before it) — when the rules' decision for the corrected facts names other
  agencies than their decision for the facts before AND than the agencies it has now. So a
  correction that does not change the rule that applies leaves the agencies (and a desk's own
  earlier re-route) alone; and when the corrected facts would send it to the desk (fallback or a
  desk rule), it stays where it is: the desk is the one deciding, and assigns by hand if it
  wants. A correction to an illegal-levy category (``CONFIDENTIAL_CATEGORIES``) also makes the
  complaint confidential, as filing would have (a ``ComplaintConfidentialityChanged`` by the same
  actor, before the re-route). Refused on closed (dismissed, resolved) complaints and when nothing
  changes.
- Confidentiality. On from filing for an illegal levy; turned on by a later text that reports
  one (``ComplaintAmended.levy_reported``); the desk may mark or unmark it with a reason.

Pure domain code: no nameko, no SQLAlchemy, no clock reads (callers pass ``now``).
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from services.routing.domain.directory import Directory
from services.routing.domain.rules import Decision
from services.routing.domain.sla import FIRST_RESPONSE, FOLLOW_UP, TRIAGE, SlaPolicy
from shared.core.events import types as ev
from shared.core.events.envelope import isoformat_utc, parse_iso
from shared.core.events.lifecycle import Lifecycle
from shared.core.reference import (  # noqa: F401 - routing's stage names, re-exported
    CATEGORIES, CONFIDENTIAL_CATEGORIES, PRIORITIES, REGION_CODES,
    STAGE_ASSIGNED as ASSIGNED, STAGE_DISMISSED as DISMISSED, STAGE_FILED as FILED,
    STAGE_IN_PROGRESS as IN_PROGRESS, STAGE_RESOLVED as RESOLVED, STAGE_RETURNED as RETURNED,
    STAGE_TRIAGE as TRIAGE_STATUS, STAGE_WORDS as PUBLIC_STATUS,
)

COMPLAINT_FILED = ev.COMPLAINT_FILED
COMPLAINT_ROUTED = ev.COMPLAINT_ROUTED
COMPLAINT_ACKNOWLEDGED = ev.COMPLAINT_ACKNOWLEDGED
COMPLAINT_REJECTED = ev.COMPLAINT_REJECTED_BY_AGENCY
COMPLAINT_RESPONDED = ev.COMPLAINT_RESPONDED
COMPLAINT_RESOLVED = ev.COMPLAINT_RESOLVED
COMPLAINT_ESCALATED = ev.COMPLAINT_ESCALATED
COMPLAINT_DISMISSED = ev.COMPLAINT_DISMISSED
CONFIDENTIALITY_CHANGED = ev.COMPLAINT_CONFIDENTIALITY_CHANGED
COMPLAINT_LINKED = ev.COMPLAINT_LINKED
COMPLAINT_RECLASSIFIED = ev.COMPLAINT_RECLASSIFIED
COMPLAINT_REOPENED = ev.COMPLAINT_REOPENED
COMPLAINT_REOPEN_REFUSED = ev.COMPLAINT_REOPEN_REFUSED
CITIZEN_RATED = ev.CITIZEN_RATED

#: Who reopens or rates: the citizen, through intake (the PSID never reaches routing).
CITIZEN_ACTOR = "citizen"

#: The actor of a confidentiality turned on by a text that reports an illegal levy.
CLASSIFIER_ACTOR = "intake:classifier"

NewEvent = tuple[str, dict[str, Any]]


class DomainError(Exception):
    """A command refused in the complaint's current state; nothing was recorded."""


class NotAssigned(DomainError):
    """The agency is not assigned to the complaint (or no agency is yet)."""


class AlreadyResolved(DomainError):
    """The complaint, or this agency's part of it, is already resolved."""


class ComplaintClosed(DomainError):
    """The complaint was dismissed or resolved; nothing more can be done on it."""


class UnknownAgency(DomainError):
    """An agency code that is not in the directory."""


class InvalidAction(DomainError):
    """The request is malformed or makes no sense in the current state."""


def _moment(value: Union[datetime, str]) -> datetime:
    return parse_iso(value) if isinstance(value, str) else value


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


class Disposition:
    def __init__(self, complaint_id: str, tracking_code: str, category: str,
                 region_code: Optional[str], priority: str, confidential: bool,
                 filed_at: Union[datetime, str], desk_code: str):
        self.complaint_id = complaint_id
        self.tracking_code = tracking_code
        self.category = category
        self.region_code = region_code
        self.priority = priority
        self.filed_at = _moment(filed_at)
        self.desk_code = desk_code
        self.lifecycle = Lifecycle(confidential)
        self.decided_by: Optional[str] = None
        self.reason: Optional[str] = None
        self.routed_at: Optional[datetime] = None
        self.due_at: dict[str, datetime] = {}
        self.escalated: set[str] = set()
        self.dismissal: Optional[dict[str, Any]] = None
        self.linked_to: Optional[str] = None  # the primary of its cluster (``ComplaintLinked``)
        self.version = 0  # routing events applied: the expected version for the next append
        # The citizen's loop: when it was last resolved, how often reopened, whether the latest
        # resolution is rated already (one rating per resolution).
        self.resolved_at: Optional[datetime] = None
        self.reopens = 0
        self.rated = False

    # --- building ------------------------------------------------------------------------------

    @classmethod
    def new(cls, complaint_id: str, tracking_code: str, category: str, region_code: Optional[str],
            priority: str, confidential: bool, filed_at: Union[datetime, str],
            desk_code: str) -> "Disposition":
        if priority not in PRIORITIES:
            raise InvalidAction(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        return cls(complaint_id, tracking_code, category, region_code, priority, confidential,
                   filed_at, desk_code)

    @classmethod
    def replay(cls, events: Iterable[tuple[str, dict[str, Any], Union[datetime, str]]],
               start: Optional["Disposition"] = None,
               desk_code: Optional[str] = None) -> "Disposition":
        """Rebuild from ``(event_type, data, occurred_at)`` in order. Without ``start`` the first
        event must be the ``ComplaintFiled`` fact, its data carrying ``complaint_id`` too, and
        ``desk_code`` names the desk."""
        events = iter(events)
        if start is None:
            first = next(events, None)
            if first is None or first[0] != COMPLAINT_FILED or desk_code is None:
                raise ValueError("replay needs a start Disposition, or a ComplaintFiled first "
                                 "event and the desk's code")
            data = first[1]
            disposition = cls.new(data["complaint_id"], data["tracking_code"], data["category"],
                                  data.get("region_code"), data["priority"],
                                  bool(data.get("confidential", False)),
                                  data.get("filed_at") or first[2], desk_code)
        else:
            disposition = copy.deepcopy(start)
        for event_type, data, occurred_at in events:
            disposition.apply(event_type, data, occurred_at)
        return disposition

    def apply_all(self, new_events: Sequence[NewEvent], occurred_at: Union[datetime, str]) -> None:
        """Apply what a command returned, once the service has stored it."""
        for event_type, data in new_events:
            self.apply(event_type, data, occurred_at)

    def apply(self, event_type: str, data: dict[str, Any], occurred_at: Union[datetime, str]) -> None:
        handler = getattr(self, f"_on_{event_type}", None)
        if handler is None:
            raise ValueError(f"a disposition has no event {event_type!r}")
        self.lifecycle.apply(event_type, data)
        handler(data, _moment(occurred_at))
        self.version += 1

    def stamped(self, new_events: Sequence[NewEvent]) -> list[NewEvent]:
        """The new events, each carrying the lifecycle it leaves (``data.lifecycle``)."""
        lifecycle = self.lifecycle.copy()
        out: list[NewEvent] = []
        for event_type, data in new_events:
            lifecycle.apply(event_type, data)
            out.append((event_type, {**data, "lifecycle": lifecycle.snapshot()}))
        return out

    def _on_ComplaintRouted(self, data: dict[str, Any], occurred_at: datetime) -> None:
        due = {name: parse_iso(value) for name, value in data["due_at"].items()}
        # A clock whose deadline did not move stays escalated; a moved one may escalate again.
        self.escalated = {name for name in self.escalated
                          if name in due and self.due_at.get(name) == due[name]}
        self.decided_by = data["decided_by"]
        self.reason = data["reason"]
        self.priority = data["priority"]
        self.due_at = due
        self.routed_at = occurred_at

    def _on_ComplaintAcknowledged(self, data: dict[str, Any], occurred_at: datetime) -> None:
        pass

    def _on_ComplaintResponded(self, data: dict[str, Any], occurred_at: datetime) -> None:
        pass

    def _on_ComplaintResolved(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.resolved_at = occurred_at
        self.rated = False

    def _on_ComplaintRejectedByAgency(self, data: dict[str, Any], occurred_at: datetime) -> None:
        if self.lifecycle.at_desk_after_routing and data.get("due_at") is not None:
            self.due_at = {name: parse_iso(value) for name, value in data["due_at"].items()}
            self.escalated = set()

    def _on_ComplaintEscalated(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.escalated.add(data["breach"])

    def _on_ComplaintDismissed(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.dismissal = {k: v for k, v in data.items() if k != "lifecycle"}

    def _on_ComplaintConfidentialityChanged(self, data: dict[str, Any], occurred_at: datetime) -> None:
        pass

    def _on_ComplaintLinked(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.linked_to = data["primary_complaint_id"]

    def _on_ComplaintReclassified(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.category = data["category_after"]
        self.region_code = data["region_after"]

    def _on_ComplaintReopened(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.reopens = int(data["reopen_count"])
        self.due_at = {name: parse_iso(value) for name, value in data["due_at"].items()}
        self.escalated = set()

    def _on_ComplaintReopenRefused(self, data: dict[str, Any], occurred_at: datetime) -> None:
        pass

    def _on_CitizenRated(self, data: dict[str, Any], occurred_at: datetime) -> None:
        self.rated = True

    # --- reading -------------------------------------------------------------------------------

    @property
    def confidential(self) -> bool:
        return self.lifecycle.confidential

    @property
    def lead_agencies(self) -> list[str]:
        """The lead agencies; the desk itself while the complaint waits there after routing."""
        if self.lifecycle.routed and self.lifecycle.at_desk_after_routing:
            return [self.desk_code]
        return list(self.lifecycle.lead_agencies)

    @property
    def coordinating_agencies(self) -> list[str]:
        return list(self.lifecycle.coordinating_agencies)

    @property
    def is_routed(self) -> bool:
        return self.decided_by is not None

    @property
    def is_open(self) -> bool:
        return self.lifecycle.is_open

    @property
    def at_desk(self) -> bool:
        """Waiting for the desk: not routed yet, routed to the desk, or handed back to it."""
        return self.lifecycle.at_desk

    @property
    def status(self) -> str:
        return self.lifecycle.stage

    @property
    def public_status(self) -> str:
        return self.lifecycle.status

    @property
    def resolved_agencies(self) -> list[str]:
        return [code for code in self.lifecycle.lead_agencies if self._state(code)["resolved"]]

    def can_be_seen_by(self, agency_code: str) -> bool:
        return (agency_code == self.desk_code or agency_code in self.lead_agencies
                or agency_code in self.coordinating_agencies)

    def progress_of(self, agency_code: str) -> dict[str, Any]:
        """What one agency has done on the complaint: acknowledged, answered, resolved."""
        return self._state(agency_code)

    def open_deadlines(self) -> dict[str, datetime]:
        """The clocks that can still breach: running, not stopped, not escalated yet."""
        if not self.is_open:
            return {}
        return {clock: due for clock, due in self.due_at.items()
                if clock not in self.escalated and not self._stopped(clock)}

    def _state(self, code: str) -> dict[str, Any]:
        return self.lifecycle.progress_of(code)

    def _stopped(self, clock: str) -> bool:
        return self.lifecycle.stopped(clock)

    # --- checks shared by the commands ---------------------------------------------------------

    def _require_open(self) -> None:
        if self.lifecycle.closed == DISMISSED:
            raise ComplaintClosed(f"complaint {self.tracking_code} was dismissed (ditolak); "
                                  "nothing more can be done on it")
        if self.lifecycle.closed == RESOLVED:
            raise ComplaintClosed(f"complaint {self.tracking_code} is resolved (selesai); "
                                  "nothing more can be done on it")

    def _require_assigned(self, agency_code: str) -> None:
        self._require_open()
        if self.at_desk:
            raise NotAssigned(f"complaint {self.tracking_code} is not assigned to any agency yet: "
                              "it is at the desk for triage")
        if agency_code not in self.lead_agencies and agency_code not in self.coordinating_agencies:
            raise NotAssigned(f"agency {agency_code!r} is not assigned to complaint "
                              f"{self.tracking_code}")

    @staticmethod
    def _require_text(value: Any, what: str) -> None:
        if _blank(value):
            raise InvalidAction(f"{what} is required")

    def _routed(self, lead: list[str], coordinating: list[str], decided_by: str, reason: str,
                priority: str, due: dict[str, datetime]) -> NewEvent:
        return (COMPLAINT_ROUTED, {
            "lead_agencies": list(lead),
            "coordinating_agencies": list(coordinating),
            "decided_by": decided_by,
            "reason": reason,
            "priority": priority,
            "due_at": {name: isoformat_utc(moment) for name, moment in due.items()},
        })

    # --- desk commands -------------------------------------------------------------------------

    def route(self, decision: Decision, now: datetime, sla_policy: SlaPolicy) -> list[NewEvent]:
        """The first routing, by the rules (or their desk fallback)."""
        self._require_open()
        if self.is_routed:
            raise InvalidAction(f"complaint {self.tracking_code} is already routed "
                                f"({self.decided_by}); an operator re-routes it with assign")
        if not decision.lead_agencies:
            raise InvalidAction("a routing decision needs a lead agency")
        due = sla_policy.due_at(now, self.priority, at_desk=decision.at_desk)
        return [self._routed(decision.lead_agencies, decision.coordinating_agencies,
                             decision.decided_by, decision.reason, self.priority, due)]

    def assign(self, agency_codes: Sequence[str], note: str, actor: str, now: datetime,
               sla_policy: SlaPolicy, directory: Directory) -> list[NewEvent]:
        """Route or re-route by an operator: the first code leads, the others coordinate."""
        self._require_open()
        codes = [agency_codes] if isinstance(agency_codes, str) else list(agency_codes or ())
        if not codes:
            raise InvalidAction("name at least one agency; the first one leads")
        if len(set(codes)) != len(codes):
            raise InvalidAction(f"an agency is named twice in {codes}")
        unknown = [code for code in codes if code not in directory]
        if unknown:
            raise UnknownAgency(f"unknown agency code(s) {unknown}; not in the directory")
        desk = directory.desk.code
        if desk in codes and len(codes) > 1:
            raise InvalidAction("the desk cannot share a complaint with agencies: assign agencies "
                                "only, or the desk alone to hold the complaint for triage")
        self._require_text(note, "a note saying why")
        self._require_text(actor, "the operator (actor)")
        at_desk = codes == [desk]
        lead, coordinating = codes[:1], codes[1:]
        if (self.is_routed and lead == self.lead_agencies
                and coordinating == self.coordinating_agencies and at_desk == self.at_desk):
            raise InvalidAction(f"complaint {self.tracking_code} is already assigned to exactly "
                                f"{codes}")
        due = sla_policy.due_at(now, self.priority, at_desk=at_desk)
        return [self._routed(lead, coordinating, f"operator:{actor}", note.strip(),
                             self.priority, due)]

    def dismiss(self, reason: str, actor: str, duplicate_of: Optional[str] = None) -> list[NewEvent]:
        self._require_open()
        self._require_text(reason, "a reason for dismissing")
        self._require_text(actor, "the operator (actor)")
        if duplicate_of is not None and (_blank(duplicate_of) or duplicate_of == self.tracking_code):
            raise InvalidAction("duplicate_of must be the tracking code of another complaint")
        return [(COMPLAINT_DISMISSED,
                 {"reason": reason.strip(), "duplicate_of": duplicate_of, "actor": actor})]

    def set_confidential(self, confidential: bool, reason: str, actor: str) -> list[NewEvent]:
        """The desk marks or unmarks the complaint as confidential, with its reason. Allowed on
        closed complaints too: their public status page still shows (or hides) the answers."""
        if not isinstance(confidential, bool):
            raise InvalidAction("confidential must be true or false")
        self._require_text(reason, "a reason for the change")
        self._require_text(actor, "the operator (actor)")
        if confidential == self.confidential:
            word = "already" if confidential else "not"
            raise InvalidAction(f"complaint {self.tracking_code} is {word} confidential")
        return [(CONFIDENTIALITY_CHANGED,
                 {"confidential": confidential, "reason": reason.strip(), "actor": actor})]

    def link(self, primary_id: str, primary_tracking_code: str, reason: str, actor: str,
             because: Sequence[str] = (), score: Optional[float] = None) -> list[NewEvent]:
        """The desk joins this complaint to the cluster of ``primary_id`` (see
        ``services.routing.domain.clusters``: the checks that need the primary are there)."""
        self._require_open()
        self._require_text(reason, "a reason for linking")
        self._require_text(actor, "the operator (actor)")
        if self.linked_to is not None:
            raise InvalidAction(f"complaint {self.tracking_code} is already linked to a cluster")
        return [(COMPLAINT_LINKED, {
            "primary_complaint_id": primary_id, "primary_tracking_code": primary_tracking_code,
            "reason": reason.strip(), "actor": actor, "because": list(because),
            "score": None if score is None else float(score)})]

    def reclassify(self, category: Optional[str], region_code: Optional[str], reason: str, actor: str,
                   now: datetime, sla_policy: SlaPolicy,
                   decide: Callable[[str, Optional[str]], Decision]) -> list[NewEvent]:
        """The desk corrects the category and/or the region (``None``: unchanged); see the module
        docstring for when it re-routes. ``decide(category, region_code)`` is the rules'
        decision for those facts (``services.routing.domain.rules.decide`` with the text and
        priority bound)."""
        self._require_open()
        self._require_text(reason, "a reason for the correction")
        self._require_text(actor, "the operator (actor)")
        if category is not None and category not in CATEGORIES:
            raise InvalidAction(f"unknown category {category!r}; expected one of {CATEGORIES}")
        if region_code is not None and region_code not in REGION_CODES:
            raise InvalidAction(f"unknown region code {region_code!r}; expected one of {REGION_CODES}")
        new_category = self.category if category is None else category
        new_region = self.region_code if region_code is None else region_code
        if new_category == self.category and new_region == self.region_code:
            raise InvalidAction(f"complaint {self.tracking_code} already has category "
                                f"{self.category!r} and region {self.region_code!r}: nothing to correct")
        before, after = decide(self.category, self.region_code), decide(new_category, new_region)
        agencies_after = (list(after.lead_agencies), list(after.coordinating_agencies))
        now_agencies = ((list(self.lead_agencies), list(self.coordinating_agencies))
                        if self.is_routed else None)
        reroute = (not after.at_desk
                   and agencies_after != (list(before.lead_agencies), list(before.coordinating_agencies))
                   and agencies_after != now_agencies)
        events: list[NewEvent] = [(COMPLAINT_RECLASSIFIED, {
            "category_before": self.category, "category_after": new_category,
            "region_before": self.region_code, "region_after": new_region,
            "reason": reason.strip(), "actor": actor, "rerouted": reroute})]
        if new_category in CONFIDENTIAL_CATEGORIES and not self.confidential:
            # As at filing: an illegal-levy complaint is confidential — before any re-route, so
            # the routed message the citizen gets is already the confidential one.
            events.append((CONFIDENTIALITY_CHANGED, {
                "confidential": True, "actor": actor,
                "reason": f"dikoreksi menjadi kategori {new_category}: {reason.strip()}"}))
        if reroute:
            due = sla_policy.due_at(now, self.priority, at_desk=False)
            events.append(self._routed(after.lead_agencies, after.coordinating_agencies,
                                       after.decided_by, after.reason, self.priority, due))
        return events

    def levy_reported(self) -> list[NewEvent]:
        """A later text of the complaint reports an illegal levy: it becomes confidential."""
        if self.confidential:
            return []
        return [(CONFIDENTIALITY_CHANGED, {
            "confidential": True, "actor": CLASSIFIER_ACTOR,
            "reason": "a later message of the complaint reports an illegal levy (pungli)"})]

    def set_priority(self, priority: str, reason: str, actor: str, now: datetime,
                     sla_policy: SlaPolicy) -> list[NewEvent]:
        self._require_open()
        if priority not in PRIORITIES:
            raise InvalidAction(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        if not self.is_routed:
            raise InvalidAction(f"complaint {self.tracking_code} is not routed yet; its priority "
                                "is applied when it is routed")
        if priority == self.priority:
            raise InvalidAction(f"complaint {self.tracking_code} already has priority {priority}")
        self._require_text(reason, "a reason for the new priority")
        self._require_text(actor, "the operator (actor)")
        due = dict(self.due_at)
        if not self.at_desk:
            due[FIRST_RESPONSE] = sla_policy.due_at(now, priority, at_desk=False)[FIRST_RESPONSE]
        return [self._routed(self.lead_agencies, self.coordinating_agencies, f"operator:{actor}",
                             reason.strip(), priority, due)]

    # --- agency commands -----------------------------------------------------------------------

    def acknowledge(self, agency_code: str, actor: str) -> list[NewEvent]:
        self._require_assigned(agency_code)
        self._require_text(actor, "the officer (actor)")
        state = self._state(agency_code)
        if state["acknowledged"]:
            raise InvalidAction(f"agency {agency_code!r} has already acknowledged complaint "
                                f"{self.tracking_code}")
        if state["answered"]:
            raise InvalidAction(f"agency {agency_code!r} has already answered complaint "
                                f"{self.tracking_code}")
        return [(COMPLAINT_ACKNOWLEDGED, {"agency_code": agency_code, "actor": actor})]

    def reject(self, agency_code: str, reason: str, actor: str, now: datetime,
               sla_policy: SlaPolicy) -> list[NewEvent]:
        """"Bukan wewenang": the agency hands the complaint back; see the module docstring."""
        self._require_assigned(agency_code)
        self._require_text(reason, "a reason for rejecting")
        self._require_text(actor, "the officer (actor)")
        if self._state(agency_code)["resolved"]:
            raise InvalidAction(f"agency {agency_code!r} has already resolved its part of "
                                f"complaint {self.tracking_code}; it can no longer reject it")
        data: dict[str, Any] = {"agency_code": agency_code, "reason": reason.strip(), "actor": actor}
        remaining = [code for code in self.lead_agencies if code != agency_code]
        events: list[NewEvent] = [(COMPLAINT_REJECTED, data)]
        if agency_code in self.lead_agencies:
            if not remaining:
                triage = sla_policy.due_at(now, self.priority, at_desk=True)[TRIAGE]
                data["returned_to_desk"] = True
                data["due_at"] = {TRIAGE: isoformat_utc(triage)}
            elif all(self._state(code)["resolved"] for code in remaining):
                events.append((COMPLAINT_RESOLVED, {"actor": actor}))
        return events

    def respond(self, agency_code: str, text: str, resolved: bool, actor: str) -> list[NewEvent]:
        """A public answer; ``resolved=True`` (leads only) also closes the agency's part."""
        if self.lifecycle.closed == RESOLVED and resolved is True:
            raise AlreadyResolved(f"complaint {self.tracking_code} is already resolved")
        self._require_assigned(agency_code)
        self._require_text(text, "the answer text")
        self._require_text(actor, "the officer (actor)")
        if not isinstance(resolved, bool):
            raise InvalidAction("resolved must be true or false")
        if resolved and agency_code not in self.lead_agencies:
            raise InvalidAction(f"agency {agency_code!r} coordinates on complaint "
                                f"{self.tracking_code}; only a lead agency can resolve it")
        if resolved and self._state(agency_code)["resolved"]:
            raise AlreadyResolved(f"agency {agency_code!r} has already resolved its part of "
                                  f"complaint {self.tracking_code}")
        events: list[NewEvent] = [(COMPLAINT_RESPONDED, {
            "agency_code": agency_code, "text": text.strip(), "resolved": resolved, "actor": actor,
        })]
        if resolved and all(code == agency_code or self._state(code)["resolved"]
                            for code in self.lead_agencies):
            events.append((COMPLAINT_RESOLVED, {"actor": actor}))
        return events

    # --- the citizen's answer to "Sudah selesai?" ------------------------------------------------

    def reopen(self, words: str, now: datetime, sla_policy: SlaPolicy, reopen_period: timedelta,
               answer_event_id: Optional[str] = None) -> list[NewEvent]:
        """The citizen says it is not solved. Within ``reopen_period`` of the resolution the
        complaint reopens: the first time back to its leads with a fresh follow-up clock, later
        to the desk (triage clock). Otherwise a ``ComplaintReopenRefused`` says why — never an
        error: the citizen gets a clear reply and the words are kept."""
        words = (words or "").strip()
        refused = None
        if self.lifecycle.closed == DISMISSED:
            refused = "dismissed"
        elif self.lifecycle.closed != RESOLVED:
            refused = "open"
        elif self.resolved_at is None or now - self.resolved_at > reopen_period:
            refused = "period_over"
        if refused is not None:
            days = reopen_period.total_seconds() / 86400
            return [(COMPLAINT_REOPEN_REFUSED, {"reason": refused, "words": words,
                                                "answer_event_id": answer_event_id,
                                                "period_days": int(days) if days.is_integer() else days})]
        to_desk = self.reopens >= 1 or not self.lifecycle.lead_agencies
        if to_desk:
            due = sla_policy.due_at(now, self.priority, at_desk=True)
        else:
            due = {FOLLOW_UP: sla_policy.due_at(now, self.priority, at_desk=False)[FOLLOW_UP]}
        return [(COMPLAINT_REOPENED, {
            "words": words, "actor": CITIZEN_ACTOR, "reopen_count": self.reopens + 1,
            "to_desk": to_desk, "due_at": {name: isoformat_utc(moment) for name, moment in due.items()},
            "answer_event_id": answer_event_id})]

    def rate(self, score: int, words: str, answer_event_id: Optional[str] = None) -> list[NewEvent]:
        """The citizen's rating of the resolved complaint, for its lead agencies; once per
        resolution (a second rating, or one of an open or dismissed complaint, records nothing:
        intake's event keeps it)."""
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise InvalidAction("a rating is a whole number from 1 to 5")
        if self.lifecycle.closed != RESOLVED or self.rated:
            return []
        return [(CITIZEN_RATED, {"score": score, "words": (words or "").strip(),
                                 "agencies": list(self.lifecycle.lead_agencies),
                                 "answer_event_id": answer_event_id})]

    # --- the timer -----------------------------------------------------------------------------

    def breaches(self, now: datetime, directory: Directory) -> list[NewEvent]:
        """One ``ComplaintEscalated`` per clock past due and not yet escalated."""
        if not self.is_open:
            return []
        notified: list[str] = []
        for code in self.lead_agencies:
            supervisor = directory.supervisor_of(code) if code in directory else None
            if supervisor and supervisor not in notified:
                notified.append(supervisor)
        if directory.desk.code not in notified:
            notified.append(directory.desk.code)
        events: list[NewEvent] = []
        for clock in (TRIAGE, FIRST_RESPONSE, FOLLOW_UP):
            due = self.due_at.get(clock)
            if due is None or clock in self.escalated or self._stopped(clock) or now <= due:
                continue
            events.append((COMPLAINT_ESCALATED, {
                "breach": clock, "due_at": isoformat_utc(due), "notified": list(notified),
            }))
        return events
