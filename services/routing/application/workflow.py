"""Routing's application service: the one path every desk and agency action takes, whether it
arrives over RPC, over the HTTP API or from the breach timer.

Each command loads the complaint's ``Disposition`` (the filed facts plus routing's own events),
asks the aggregate for the new events, and — in ONE transaction — appends them with
``expected_version`` and rewrites the complaint's state rows. A refused command raises one of
``shared.core.errors`` and records nothing; a concurrent change (``ConcurrencyError``) is retried with
fresh state, then reported as ``Conflict``.

``caller`` is the agency code a bearer token authenticated (HTTP), or None for RPC callers, who
are trusted systems inside the broker. A caller that is not the desk sees and acts only on the
complaints its agency is assigned to.
"""
from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from marshmallow import Schema, ValidationError
from shared.core.db import Transaction
from shared.core.errors import Conflict, Forbidden, IllegalAction, NotFound, NotVisible, ValidationFailed
from shared.core.events import Envelope, isoformat_utc, parse_iso, utc_now
from shared.core.eventstore import ConcurrencyError, PendingEvent
from shared.core.events import types as ev
from services.routing.adapters import repository, settings
from services.routing.adapters import clusters as cluster_tables
from services.routing.application import schemas
from services.routing.domain import clusters
from services.routing.domain.directory import Directory
from services.routing.domain.disposition import (
    ASSIGNED, COMPLAINT_ACKNOWLEDGED, COMPLAINT_ESCALATED, COMPLAINT_REJECTED, COMPLAINT_RESPONDED,
    COMPLAINT_ROUTED, FILED, IN_PROGRESS, PUBLIC_STATUS, RETURNED,
    TRIAGE_STATUS, Disposition, DomainError, NewEvent, NotAssigned, UnknownAgency,
)
from services.routing.domain.rules import FALLBACK_ID, FALLBACK_REASON, Decision, RuleSet, decide
from services.routing.domain.sla import SlaPolicy

if TYPE_CHECKING:
    from shared.core.store import ServiceStore
log = logging.getLogger("routing")

MAX_ATTEMPTS = 5
PRIORITY_ORDER = {"urgent": 0, "important": 1, "normal": 2}
OPEN_STATUSES = (FILED, TRIAGE_STATUS, ASSIGNED, IN_PROGRESS, RETURNED)

Command = Callable[[Disposition, datetime], list[NewEvent]]


def validated(schema: type[Schema], values: dict) -> dict:
    try:
        return schema().load(values)
    except ValidationError as error:
        raise ValidationFailed(error.messages) from None


class Workflow:
    def __init__(self, store: "ServiceStore", directory: Directory, rules: RuleSet, policy: SlaPolicy):
        self.store = store
        self.database = store.database
        self.events = store.event_store
        self.directory = directory
        self.rules = rules
        self.policy = policy

    @property
    def desk(self) -> str:
        return self.directory.desk.code

    # --- intake's facts ------------------------------------------------------------------------

    def on_complaint_filed(self, tx: Transaction, envelope: Envelope) -> None:
        """Route a new complaint by the rules (or to the desk), in the consumer's transaction."""
        filed = envelope.data
        if repository.facts(tx.connection, envelope.complaint_id) is not None:
            return  # already routed (a replayed quarantine item, say)
        repository.save_facts(tx.connection, envelope.complaint_id, filed)
        disposition = self._load(tx, envelope.complaint_id)
        # A rule naming an agency the directory no longer has must not lose the complaint.
        decision = self._decision(filed["category"], filed["region_code"], filed["text"],
                                  filed["priority"])
        now = utc_now()
        self._record(tx, disposition, disposition.route(decision, now, self.policy), now)
        log.info("complaint routed", extra={"complaint_id": envelope.complaint_id,
                                             "event_id": envelope.event_id})
        self._suggest_cluster(tx, envelope)

    def on_complaint_amended(self, tx: Transaction, envelope: Envelope) -> None:
        """Agencies read the full, amended text; the routing decision stays. A new text that
        reports an illegal levy makes the complaint confidential (it stays so unless the desk
        unmarks it)."""
        if not repository.update_text(tx.connection, envelope.complaint_id, envelope.data["text"]):
            return  # routed later, with the amended text: intake's facts are read then
        if envelope.data["levy_reported"]:
            self._levy_reported(tx, envelope.complaint_id)

    def on_citizen_message(self, tx: Transaction, envelope: Envelope) -> None:
        """A later message (after the first burst, or a reply under the complaint's comment) is
        text of the complaint too: one that reports an illegal levy makes it confidential."""
        if envelope.data["levy_reported"] and repository.facts(tx.connection, envelope.complaint_id) is not None:
            self._levy_reported(tx, envelope.complaint_id)

    def _levy_reported(self, tx: Transaction, complaint_id: str) -> None:
        disposition = self._load(tx, complaint_id)
        new_events = disposition.levy_reported()
        if new_events:
            self._record(tx, disposition, new_events, utc_now())

    def on_citizen_answered(self, tx: Transaction, envelope: Envelope) -> None:
        """The citizen's answer to "Sudah selesai?" (intake recognised it): "belum" reopens the
        complaint or is refused with the reason; a score rates it (with the lead agencies).
        "Sudah" and what intake could not use (``unclear_rating``, ``stale``) change nothing here:
        notification answers those."""
        data = envelope.data
        if repository.facts(tx.connection, envelope.complaint_id) is None:
            return  # a complaint routing never saw (intake's web form before routing caught up)
        disposition = self._load(tx, envelope.complaint_id)
        now = utc_now()
        new_events: list[NewEvent] = []
        if data["answer"] == "not_solved":
            period = timedelta(days=settings.reopen_days())
            new_events = disposition.reopen(data["words"], now, self.policy, period, envelope.event_id)
        elif data.get("score") is not None and data["answer"] in ("rating", "solved"):
            new_events = disposition.rate(int(data["score"]), data["words"], envelope.event_id)
        if new_events:
            self._record(tx, disposition, new_events, now)
            log.info("citizen answered: %s", ", ".join(t for t, _ in new_events),
                     extra={"complaint_id": envelope.complaint_id, "event_id": envelope.event_id})

    # --- desk commands -------------------------------------------------------------------------

    def assign(self, complaint_id, agency_codes, note, actor, caller: Optional[str] = None) -> dict:
        args = validated(schemas.Assign, {"complaint_id": complaint_id, "agency_codes": agency_codes,
                                          "note": note, "actor": actor})
        self._require_desk(caller, "assign or re-route a complaint")
        return self._run(args["complaint_id"], lambda d, now: d.assign(
            args["agency_codes"], args["note"], args["actor"], now, self.policy, self.directory))

    def dismiss(self, complaint_id, reason, actor, duplicate_of=None, caller: Optional[str] = None) -> dict:
        args = validated(schemas.Dismiss, {"complaint_id": complaint_id, "reason": reason,
                                           "actor": actor, "duplicate_of": duplicate_of})
        self._require_desk(caller, "dismiss a complaint")
        duplicate_of = args["duplicate_of"]
        if duplicate_of is not None:
            with self.database.read() as connection:
                if repository.facts_by_tracking_code(connection, duplicate_of) is None:
                    raise NotFound(f"duplicate_of: no complaint with tracking code {duplicate_of!r}")
        return self._run(args["complaint_id"], lambda d, now: d.dismiss(
            args["reason"], args["actor"], duplicate_of))

    def set_priority(self, complaint_id, priority, reason, actor, caller: Optional[str] = None) -> dict:
        args = validated(schemas.SetPriority, {"complaint_id": complaint_id, "priority": priority,
                                               "reason": reason, "actor": actor})
        self._require_desk(caller, "change a complaint's priority")
        return self._run(args["complaint_id"], lambda d, now: d.set_priority(
            args["priority"], args["reason"], args["actor"], now, self.policy))

    def set_confidential(self, complaint_id, confidential, reason, actor,
                         caller: Optional[str] = None) -> dict:
        """The desk marks (``True``) or unmarks (``False``) the complaint as confidential."""
        args = validated(schemas.SetConfidential, {"complaint_id": complaint_id,
                                                   "confidential": confidential,
                                                   "reason": reason, "actor": actor})
        self._require_desk(caller, "change a complaint's confidentiality")
        return self._run(args["complaint_id"], lambda d, now: d.set_confidential(
            args["confidential"], args["reason"], args["actor"]))

    def reclassify(self, complaint_id, category, region_code, reason, actor,
                   caller: Optional[str] = None) -> dict:
        """The desk corrects the category and/or region (``None``: unchanged); re-routed by the
        rules when the rule that applies changes (``Disposition.reclassify``)."""
        args = validated(schemas.Reclassify, {"complaint_id": complaint_id, "category": category,
                                              "region_code": region_code, "reason": reason,
                                              "actor": actor})
        self._require_desk(caller, "correct a complaint's category or region")
        if args["category"] is None and args["region_code"] is None:
            raise ValidationFailed({"category": ["give a category or a region_code to correct"]})
        with self.database.read() as connection:
            filed = self._facts(connection, args["complaint_id"])
        text = filed["text"]
        return self._run(args["complaint_id"], lambda d, now: d.reclassify(
            args["category"], args["region_code"], args["reason"], args["actor"], now, self.policy,
            lambda category, region: self._decision(category, region, text, d.priority)))

    def _decision(self, category: str, region_code: Optional[str], text: str,
                  priority: str) -> Decision:
        """The rules' decision, as at filing (an agency the directory lost: the desk)."""
        try:
            return decide(self.directory, self.rules, category, region_code, text, priority)
        except LookupError:
            return Decision([self.desk], [], f"rule:{FALLBACK_ID}", FALLBACK_REASON, at_desk=True)

    def desk_queue(self, caller: Optional[str] = None) -> list[dict]:
        """Complaints waiting for the desk (new, held, handed back) and open escalated ones,
        most urgent first, then oldest first."""
        self._require_desk(caller, "read the desk queue")
        with self.database.read() as connection:
            items = repository.desk_queue(connection, OPEN_STATUSES)
        for item in items:
            item["why"] = ([item["status"]] if item["status"] in (FILED, TRIAGE_STATUS, RETURNED) else [])
            item["why"] += [f"escalated:{clock}" for clock in item["escalated"]]
        items.sort(key=lambda item: (PRIORITY_ORDER.get(item["priority"], 9), item["filed_at"]))
        return items

    # --- duplicates and clusters (services/routing/domain/clusters.py) ---------------------------

    @property
    def cluster_rules(self) -> clusters.SuggestionRules:
        rules = getattr(self, "_cluster_rules", None)
        if rules is None:
            rules = self._cluster_rules = cluster_tables.suggestion_rules()
        return rules

    def _suggest_cluster(self, tx: Transaction, envelope: Envelope) -> None:
        """Compare a new complaint with the open ones; a match becomes a pending suggestion for
        the desk. Only the public post id is kept of ``reply_to``."""
        filed, connection = envelope.data, tx.connection
        post_id = (filed.get("reply_to") or {}).get("post_id")
        cluster_tables.save_words(connection, envelope.complaint_id, post_id,
                                  clusters.words_of(filed["text"]))
        new = cluster_tables.filing(connection, envelope.complaint_id)
        rules = self.cluster_rules
        if new is None:
            return
        found = cluster_tables.read_candidates(connection, new, rules.window)
        match = rules.best(new, found.filings)
        if match is None:
            return
        linked, pending = found.links_and_pending_of(
            connection, [candidate.complaint_id for candidate in found.filings])
        primary = clusters.anchor(match.candidate_id, linked, pending)
        if primary == envelope.complaint_id:
            primary = match.candidate_id
        if cluster_tables.save_suggestion(connection, envelope.complaint_id, primary, match, utc_now()):
            log.info("suggested as a duplicate (%s)", ", ".join(match.because),
                     extra={"complaint_id": envelope.complaint_id})

    def suggested_links(self, caller: Optional[str] = None) -> list[dict]:
        """The desk's pending suggestions, as clusters: each primary with the complaints suggested
        to join it, each with its grounds (``because``, ``score``, ``common_words``, ``reason``)."""
        self._require_desk(caller, "read suggested clusters")
        with self.database.read() as connection:
            pending = cluster_tables.suggestions(connection)
            ids = {s["complaint_id"] for s in pending} | {s["primary_id"] for s in pending} \
                | {s["matched_id"] for s in pending}
            known = self._summaries(connection, ids)
        out: dict[str, dict] = {}
        for item in pending:
            if item["complaint_id"] not in known or item["primary_id"] not in known:
                continue
            # A complaint closed since (dismissed, resolved) or a dismissed primary: nothing to join.
            if known[item["complaint_id"]]["status"] not in OPEN_STATUSES \
                    or known[item["primary_id"]]["status"] == "dismissed":
                continue
            cluster = out.setdefault(item["primary_id"], {"primary": known[item["primary_id"]],
                                                          "members": []})
            matched = known.get(item["matched_id"]) or {}
            cluster["members"].append({**known[item["complaint_id"]], **{
                key: item[key] for key in ("score", "because", "common_words", "hours_apart",
                                           "reason", "suggested_at")},
                "matched_tracking_code": matched.get("tracking_code")})
        return list(out.values())

    def cluster_of(self, complaint_id, caller: Optional[str] = None) -> dict:
        """For the desk's complaint page: the cluster the complaint is in (its primary and the
        members) and the pending suggestions that name it."""
        self._require_desk(caller, "read clusters")
        with self.database.read() as connection:
            filed = self._facts(connection, complaint_id)
            key = filed["complaint_id"]
            primary_id = cluster_tables.links_of(connection, [key]).get(key)
            root = primary_id or key
            members = cluster_tables.members_of(connection, root)
            pending = cluster_tables.suggestions(connection, complaint_id=key)
            known = self._summaries(connection, {root, *members} | {s["complaint_id"] for s in pending}
                                    | {s["primary_id"] for s in pending})
        return {"primary": known.get(root) if members else None,
                "members": [known[m] for m in members if m in known],
                "suggestions": [{**s, "complaint": known.get(s["complaint_id"]),
                                 "primary": known.get(s["primary_id"])} for s in pending]}

    def _summaries(self, connection, ids) -> dict[str, dict]:
        return repository.summaries_with_excerpt(connection, ids)

    def link_complaint(self, complaint_id, primary_id, reason, actor,
                       caller: Optional[str] = None) -> dict:
        """The desk joins ``complaint_id`` to the cluster of ``primary_id`` (by id or tracking
        code; a linked primary stands for its own primary): ``ComplaintLinked``, then the
        primary's agencies and what they have already told its citizen."""
        args = validated(schemas.Link, {"complaint_id": complaint_id, "primary_id": primary_id,
                                        "reason": reason, "actor": actor})
        self._require_desk(caller, "link complaints into a cluster")
        for _attempt in range(MAX_ATTEMPTS):
            now = utc_now()
            try:
                with self.database.transaction() as tx:
                    connection = tx.connection
                    member_facts = self._facts(connection, args["complaint_id"])
                    primary_facts = self._facts(connection, args["primary_id"])
                    named_primary = primary_facts["complaint_id"]
                    root = cluster_tables.links_of(connection, [primary_facts["complaint_id"]])
                    if root:
                        primary_facts = self._facts(connection, root[primary_facts["complaint_id"]])
                    member = repository.load(connection, self.events, member_facts, self.desk)
                    primary = repository.load(connection, self.events, primary_facts, self.desk)
                    # The suggestion confirmed: to the primary named, or to its own primary.
                    suggestion = (cluster_tables.suggestion(connection, member.complaint_id,
                                                            primary.complaint_id)
                                  or cluster_tables.suggestion(connection, member.complaint_id,
                                                               named_primary))
                    suggested = suggestion is not None and suggestion["state"] == cluster_tables.PENDING
                    words = (args["reason"] or "").strip() or (suggestion["reason"] if suggested else "")
                    try:
                        clusters.check_link(member, primary,
                                            bool(cluster_tables.members_of(connection, member.complaint_id)))
                        new_events = member.link(primary.complaint_id, primary.tracking_code, words,
                                                 args["actor"], suggestion["because"] if suggested else (),
                                                 suggestion["score"] if suggested else None)
                    except DomainError as error:
                        raise self._refusal(error, member) from None
                    recorded = self._record(tx, member, new_events, now)
                    cluster_tables.add_link(connection, member.complaint_id, primary.complaint_id,
                                            args["actor"], now)
                    if suggested:
                        cluster_tables.decide(connection, member.complaint_id, suggestion["primary_id"],
                                              cluster_tables.CONFIRMED, args["actor"], now)
                    cluster_tables.retire_pending(connection, member.complaint_id, args["actor"], now)
                    recorded += self._catch_up_member(tx, member, primary, now)
            except ConcurrencyError:
                continue
            view = self._view(member_facts, member)
            view["recorded"] = [envelope.event_type for envelope in recorded]
            log.info("linked to a cluster: %s", ", ".join(view["recorded"]),
                     extra={"complaint_id": member.complaint_id})
            return view
        raise Conflict(f"complaint {complaint_id} kept changing while it was linked; try again")

    def refuse_link(self, complaint_id, primary_id, actor, caller: Optional[str] = None) -> dict:
        """The desk says a suggestion is wrong: recorded, and that pair is never suggested again."""
        args = validated(schemas.RefuseLink, {"complaint_id": complaint_id, "primary_id": primary_id,
                                              "actor": actor})
        self._require_desk(caller, "refuse a suggested cluster")
        with self.database.transaction() as tx:
            member = self._facts(tx.connection, args["complaint_id"])
            primary = self._facts(tx.connection, args["primary_id"])
            suggestion = cluster_tables.suggestion(tx.connection, member["complaint_id"],
                                                   primary["complaint_id"])
            if suggestion is None or suggestion["state"] != cluster_tables.PENDING:
                raise NotFound(f"no pending suggestion to link {member['tracking_code']} to "
                               f"{primary['tracking_code']}")
            cluster_tables.decide(tx.connection, member["complaint_id"], primary["complaint_id"],
                                  cluster_tables.REFUSED, args["actor"], utc_now())
        log.info("suggested link refused", extra={"complaint_id": member["complaint_id"]})
        return {"complaint_id": member["complaint_id"], "primary_id": primary["complaint_id"],
                "state": cluster_tables.REFUSED, "decided_by": args["actor"]}

    def _catch_up_member(self, tx: Transaction, member: Disposition, primary: Disposition,
                         now: datetime) -> list:
        """A complaint joining the cluster takes the primary's agencies, then the acknowledgments
        and latest answers the primary's citizen already received."""
        recorded = []
        aligned = clusters.follow_agencies(member, primary, now, self.policy)
        if aligned:
            recorded += self._record(tx, member, aligned, now)
        answers = [event["data"] for event in self.events.events_for(tx.connection, primary.complaint_id)
                   if event["event_type"] == COMPLAINT_RESPONDED]
        for step in clusters.catch_up_steps(primary, answers):
            new_events = clusters.follow_step(member, primary, step, now, self.policy)
            if new_events:
                recorded += self._record(tx, member, new_events, now)
        return recorded

    def _follow_cluster(self, tx: Transaction, primary: Disposition, steps: list[NewEvent],
                        now: datetime) -> None:
        """An agency's step on a primary, recorded on every complaint linked to it (each its own
        stream and lifecycle), in the same transaction."""
        for member_id in cluster_tables.members_of(tx.connection, primary.complaint_id):
            member = self._load(tx, member_id)
            for step in steps:
                new_events = clusters.follow_step(member, primary, step, now, self.policy)
                if new_events:
                    self._record(tx, member, new_events, now)

    # --- agency commands -----------------------------------------------------------------------

    def complaints_for(self, agency_code, status=None, caller: Optional[str] = None) -> list[dict]:
        args = validated(schemas.ComplaintsFor, {"agency_code": agency_code, "status": status})
        code, status = args["agency_code"], args["status"]
        self._require_agency(code)
        if caller is not None and caller not in (code, self.desk):
            raise Forbidden(f"agency {caller!r} cannot list the complaints of {code!r}")
        with self.database.read() as connection:
            return repository.complaints_of_agency(
                connection, code, stage=status if status in PUBLIC_STATUS else None,
                public_status=status if status is not None and status not in PUBLIC_STATUS else None)

    def acknowledge(self, complaint_id, agency_code, actor, caller: Optional[str] = None) -> dict:
        args = validated(schemas.AgencyCommand, {"complaint_id": complaint_id,
                                                 "agency_code": agency_code, "actor": actor})
        return self._agency_command(args, caller, lambda d, now: d.acknowledge(
            args["agency_code"], args["actor"]))

    def reject(self, complaint_id, agency_code, reason, actor, caller: Optional[str] = None) -> dict:
        args = validated(schemas.Reject, {"complaint_id": complaint_id, "agency_code": agency_code,
                                          "reason": reason, "actor": actor})
        return self._agency_command(args, caller, lambda d, now: d.reject(
            args["agency_code"], args["reason"], args["actor"], now, self.policy))

    def respond(self, complaint_id, agency_code, text, resolved, actor,
                caller: Optional[str] = None) -> dict:
        args = validated(schemas.Respond, {"complaint_id": complaint_id, "agency_code": agency_code,
                                           "text": text, "resolved": resolved, "actor": actor})
        return self._agency_command(args, caller, lambda d, now: d.respond(
            args["agency_code"], args["text"], args["resolved"], args["actor"]))

    # --- reading -------------------------------------------------------------------------------

    def agencies(self) -> list[dict]:
        with self.database.read() as connection:
            return repository.agency_records(connection)

    def get_complaint(self, complaint_id, caller: Optional[str] = None) -> dict:
        """The complaint as routing knows it (by id or tracking code), for the desk or an
        assigned agency."""
        with self.database.read() as connection:
            filed = self._facts(connection, complaint_id)
            disposition = repository.load(connection, self.events, filed, self.desk)
        self._require_visible(disposition, caller)
        return self._view(filed, disposition)

    def timeline(self, complaint_id, caller: Optional[str] = None) -> list[dict]:
        """What happened to the complaint in routing, oldest first: the filing fact, then every
        routing event with its actor."""
        with self.database.read() as connection:
            filed = self._facts(connection, complaint_id)
            disposition = repository.load(connection, self.events, filed, self.desk)
            events = self.events.events_for(connection, filed["complaint_id"])
        self._require_visible(disposition, caller)
        entries = [{"event_type": ev.COMPLAINT_FILED, "occurred_at": filed["filed_at"], "version": 0,
                    "data": {"tracking_code": filed["tracking_code"], "category": filed["category"],
                             "region_code": filed["region_code"], "priority": filed["priority"],
                             "channel": filed["channel"]}}]
        entries += [{"event_type": event["event_type"], "occurred_at": event["occurred_at"],
                     "version": event["version"], "event_id": event["event_id"],
                     "data": event["data"]} for event in events]
        return entries

    # --- service-level clocks ------------------------------------------------------------------

    def escalate_breaches(self, now: Optional[datetime] = None) -> int:
        """Record one ``ComplaintEscalated`` per clock past due; returns how many. Each complaint
        is decided on its events in its own transaction, so a breach is escalated exactly once,
        also when two processes check at the same time or routing restarts."""
        now = now or utc_now()
        with self.database.read() as connection:
            due = repository.due_before(connection, now)
        escalated = 0
        for complaint_id in due:
            try:
                with self.database.transaction() as tx:
                    disposition = self._load(tx, complaint_id)
                    new_events = disposition.breaches(now, self.directory)
                    if new_events:
                        self._record(tx, disposition, new_events, now)
                    else:
                        repository.project(tx.connection, disposition, now)
                escalated += len(new_events)
                for _event_type, data in new_events:
                    log.info("service level breached: %s", data["breach"],
                             extra={"complaint_id": complaint_id})
            except ConcurrencyError:
                continue  # changed meanwhile; the next tick decides on the new state
            except Exception:
                log.exception("could not check service levels", extra={"complaint_id": complaint_id})
        return escalated

    # --- tokens --------------------------------------------------------------------------------

    def issue_token(self, agency_code, actor) -> dict:
        args = validated(schemas.IssueToken, {"agency_code": agency_code, "actor": actor})
        self._require_agency(args["agency_code"])
        token = secrets.token_urlsafe(32)
        with self.database.transaction() as tx:
            repository.store_token(tx.connection, args["agency_code"], token, "issued",
                                   args["actor"], utc_now())
        log.info("API token issued for %s", args["agency_code"])
        return {"agency_code": args["agency_code"], "token": token}

    def authenticate(self, token: Optional[str]) -> Optional[str]:
        """The agency code of a bearer token, or None."""
        if not token:
            return None
        with self.database.read() as connection:
            return repository.agency_for_token(connection, token)

    # --- internals -----------------------------------------------------------------------------

    def _facts(self, connection, complaint_id) -> Mapping:
        key = str(complaint_id or "").strip()
        filed = repository.facts(connection, key) or repository.facts_by_tracking_code(connection, key)
        if filed is None:
            raise NotFound(f"no complaint {key!r} in routing")
        return filed

    def _load(self, tx: Transaction, complaint_id: str) -> Disposition:
        filed = self._facts(tx.connection, complaint_id)
        return repository.load(tx.connection, self.events, filed, self.desk)

    def _run(self, complaint_id: str, command: Command,
             check: Optional[Callable[[Disposition], None]] = None,
             then: Optional[Callable[[Transaction, Disposition, list[NewEvent], datetime], None]] = None) -> dict:
        for _attempt in range(MAX_ATTEMPTS):
            now = utc_now()
            try:
                with self.database.transaction() as tx:
                    filed = self._facts(tx.connection, complaint_id)
                    disposition = repository.load(tx.connection, self.events, filed, self.desk)
                    if check is not None:
                        check(disposition)
                    try:
                        new_events = command(disposition, now)
                    except DomainError as error:
                        raise self._refusal(error, disposition) from None
                    recorded = self._record(tx, disposition, new_events, now)
                    if then is not None:
                        then(tx, disposition, new_events, now)
            except ConcurrencyError:
                continue
            view = self._view(filed, disposition)
            view["recorded"] = [envelope.event_type for envelope in recorded]
            log.info("recorded %s", ", ".join(view["recorded"]),
                     extra={"complaint_id": disposition.complaint_id})
            return view
        raise Conflict(f"complaint {complaint_id} kept changing while this action was decided; "
                       "try again")

    def _record(self, tx: Transaction, disposition: Disposition, new_events: list[NewEvent],
                now: datetime):
        new_events = disposition.stamped([(event_type, self._named(event_type, data))
                                          for event_type, data in new_events])
        pending = [PendingEvent(event_type, disposition.complaint_id, data,
                                expected_version=disposition.version + index, occurred_at=now)
                   for index, (event_type, data) in enumerate(new_events)]
        envelopes = tx.append(pending)
        disposition.apply_all(new_events, now)
        repository.project(tx.connection, disposition, now)
        return envelopes

    def _named(self, event_type: str, data: dict) -> dict:
        """Agencies' official names ride along (extra fields), so listeners such as notification
        can name them without reading routing's tables."""
        if event_type == COMPLAINT_ROUTED:
            codes = data["lead_agencies"] + data["coordinating_agencies"]
            data["agency_names"] = {code: self._name(code) for code in codes}
        elif event_type in (COMPLAINT_ACKNOWLEDGED, COMPLAINT_REJECTED, COMPLAINT_RESPONDED):
            data["agency_name"] = self._name(data["agency_code"])
        elif event_type == COMPLAINT_ESCALATED:
            data["agency_names"] = {code: self._name(code) for code in data["notified"]}
        return data

    def _name(self, code: str) -> str:
        return self.directory.get(code).name if code in self.directory else code

    def _agency_command(self, args: dict, caller: Optional[str], command: Command) -> dict:
        code = args["agency_code"]
        self._require_agency(code)
        if caller is not None and caller != code:
            raise Forbidden(f"a token of {caller!r} cannot act for agency {code!r}")

        def visible(disposition: Disposition) -> None:
            # Over HTTP an agency learns nothing about a complaint that is not its own.
            if caller is not None:
                self._require_visible(disposition, caller)
        # An agency's step on a cluster's primary is recorded on every linked complaint too.
        return self._run(args["complaint_id"], command, visible, then=self._follow_cluster)

    def _refusal(self, error: DomainError, disposition: Disposition) -> Exception:
        message = str(error)
        if isinstance(error, UnknownAgency):
            return ValidationFailed(message)
        if isinstance(error, NotAssigned) and not disposition.at_desk:
            return Forbidden(message)
        return IllegalAction(message)

    def _require_agency(self, code: str) -> None:
        if code not in self.directory:
            raise NotFound(f"no agency with code {code!r} in the directory")

    def _require_desk(self, caller: Optional[str], what: str) -> None:
        if caller is not None and caller != self.desk:
            raise Forbidden(f"only the desk ({self.desk}) may {what}; this token is {caller!r}'s")

    def _require_visible(self, disposition: Disposition, caller: Optional[str]) -> None:
        if caller is not None and not disposition.can_be_seen_by(caller):
            raise NotVisible(f"complaint {disposition.complaint_id} is not assigned to {caller!r}")

    def _view(self, filed: Mapping, disposition: Disposition) -> dict:
        codes = disposition.lead_agencies + disposition.coordinating_agencies
        return {
            "complaint_id": disposition.complaint_id,
            "tracking_code": disposition.tracking_code,
            "category": disposition.category,
            "region_code": disposition.region_code,
            # As filed (the classifier's), when the desk corrected them since.
            "filed_category": filed["category"],
            "filed_region_code": filed["region_code"],
            "channel": filed["channel"],
            "confidential": disposition.confidential,
            "filed_at": filed["filed_at"],
            "text": filed["text"],
            "priority": disposition.priority,
            "status": disposition.status,
            "public_status": disposition.public_status,
            "at_desk": disposition.at_desk,
            "lead_agencies": list(disposition.lead_agencies),
            "coordinating_agencies": list(disposition.coordinating_agencies),
            "agency_names": {code: self._name(code) for code in codes},
            "progress": {code: disposition.progress_of(code) for code in codes if code != self.desk},
            "resolved_agencies": disposition.resolved_agencies,
            "decided_by": disposition.decided_by,
            "reason": disposition.reason,
            "routed_at": isoformat_utc(disposition.routed_at) if disposition.routed_at else None,
            "due_at": {name: isoformat_utc(due) for name, due in disposition.due_at.items()},
            "escalated": sorted(disposition.escalated),
            "settlement_due": isoformat_utc(self.policy.settlement_due(parse_iso(filed["filed_at"]))),
            "dismissal": disposition.dismissal,
            "linked_to": disposition.linked_to,
            "lifecycle": disposition.lifecycle.snapshot(),
            "version": disposition.version,
        }
