"""Routing: dispatches complaints to provincial, district/city and vertical agencies, runs the
desk's and the agencies' workflow (RPC, the ``/api`` HTTP API and the ``/console/`` web pages) and
keeps the service-level clocks. Every entrypoint is a thin adapter over
``services.routing.application.workflow.Workflow``."""
from __future__ import annotations

import logging
import threading

import eventlet

from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer
from nameko.web.handlers import http

from shared.core import config
from shared.core.errors import EXPECTED
from shared.core.events import utc_now
from shared.core.store import ServiceStore
from shared.glue.providers import Consumer, Storage
from shared.glue.relay import OutboxRelay
from shared.glue.service_base import ServiceBase
from shared.core.events import types as ev
from shared.core.handlers import EventHandlers, handles
from shared.glue.subscriptions import listens_to
from services.routing.adapters import repository, settings, tables, web
from services.routing.adapters import clusters as cluster_settings
from services.routing.application import schemas
from services.routing.domain import sla
from services.routing.adapters.console import config as console_config
from services.routing.adapters.console import details as console_details
from services.routing.adapters.console.pages import Console
from services.routing.adapters.console.session import SessionCodec
from services.routing.domain.directory import DirectoryError, load_directory
from services.routing.domain.rules import load_rules
from services.routing.application.workflow import Workflow
from services.routing.application.evidence import EvidenceAccess, EvidenceUnavailable
from services.routing.adapters import evidence as evidence_records

log = logging.getLogger("routing")

CONTACT_RPC_TIMEOUT_SECONDS = 10
MEDIA_RPC_TIMEOUT_SECONDS = 30     # one chunk (≤ 1 MiB) of a piece of evidence from intake


def check_startup() -> None:
    """Refuse to start on malformed settings, with a message saying which."""
    settings.tokens()
    settings.sla_check_seconds()
    cluster_settings.suggestion_rules()
    settings.reopen_days()
    console_config.check()
    web.TokenGuesses.from_env()
    try:
        sla.parse_sla_seconds(settings.sla_seconds())
    except ValueError as error:
        raise config.ConfigError(str(error)) from None


def build_store(url: str | None = None) -> ServiceStore:
    store = ServiceStore("routing", tables.metadata, emits_events=True, url=url)
    event_store = store.event_store
    event_store.lift_old = lambda connection, events: repository.lift_old_events(
        connection, event_store, events)
    return store


def workflow_for(store: ServiceStore) -> Workflow:
    """Built once per process: the directory file upserted into the database, the rules checked
    against the directory, the env tokens stored (hashed), the SLA policy."""
    with _WORKFLOW_LOCK:  # several providers ask at set-up, in green threads that interleave on PostgreSQL
        return _build_workflow(store)


_WORKFLOW_LOCK = threading.RLock()


def _build_workflow(store: ServiceStore) -> Workflow:
    existing = getattr(store, "routing_workflow", None)
    if existing is not None:
        return existing
    file_directory = load_directory(settings.agencies_file())  # checks the file before writing it
    now = utc_now()
    with store.database.transaction() as tx:
        repository.upsert_agencies(tx.connection, [vars(agency) for agency in file_directory.all()], now)
        directory = repository.directory_from_db(tx.connection)
        unknown = sorted({code for code, _ in settings.tokens() if code not in directory})
        if unknown:
            raise config.ConfigError(f"ROUTING_TOKENS names agencies not in the directory: {unknown}")
        repository.sync_env_tokens(tx.connection, settings.tokens(), now)
    rules = load_rules(settings.rules_file(), directory)
    policy = sla.SlaPolicy.from_env(settings.sla_seconds(),
                                    sla.WorkingCalendar.from_yaml(settings.holidays_file()))
    store.routing_workflow = Workflow(store, directory, rules, policy)
    log.info("directory of %d agencies and %d rules loaded", len(directory.all()), len(rules))
    return store.routing_workflow


class RoutingHandlers(EventHandlers):
    """Intake's facts: a filed complaint is routed, an amended one re-read (and perhaps made
    confidential). Also routing's subscriptions."""

    def __init__(self, store: ServiceStore):
        super().__init__(store)
        self.workflow = workflow_for(store)

    @handles(ev.COMPLAINT_FILED)
    def on_complaint_filed(self, tx, envelope):
        self.workflow.on_complaint_filed(tx, envelope)
        # The console's complaint page shows the classifier's reasons and the attachments.
        console_details.save_filing_details(tx.connection, envelope.complaint_id, envelope.data)
        evidence_records.note(tx.connection, envelope.complaint_id, envelope.data["attachments"], utc_now())

    @handles(ev.COMPLAINT_AMENDED)
    def on_complaint_amended(self, tx, envelope):
        self.workflow.on_complaint_amended(tx, envelope)
        evidence_records.note(tx.connection, envelope.complaint_id, envelope.data.get("attachments") or [],
                              utc_now())

    @handles(ev.CITIZEN_MESSAGE_RECEIVED)
    def on_citizen_message(self, tx, envelope):
        """A message after the first burst that reports an illegal levy makes the complaint
        confidential (``Workflow.on_citizen_message``)."""
        self.workflow.on_citizen_message(tx, envelope)

    @handles(ev.CITIZEN_ANSWERED_FOLLOW_UP)
    def on_citizen_answered(self, tx, envelope):
        """"Belum" reopens (or is refused), a score rates: ``Workflow.on_citizen_answered``."""
        self.workflow.on_citizen_answered(tx, envelope)

    @handles(ev.EVIDENCE_STORED)
    def on_evidence_stored(self, tx, envelope):
        """An attachment intake downloaded is stored (its digest) or lost (the reason)."""
        evidence_records.settle(tx.connection, envelope.complaint_id, envelope.data, utc_now())


class WorkflowProvider(DependencyProvider):
    """Hands workers the process's ``Workflow``."""

    def setup(self):
        storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
        try:
            self.workflow = workflow_for(storage.ensure())
        except DirectoryError as error:
            raise config.ConfigError(f"agency directory: {error}") from None

    def get_dependency(self, worker_ctx):
        return self.workflow


class ConsoleProvider(DependencyProvider):
    """Hands workers the process's web console (over the same ``Workflow``)."""

    def setup(self):
        storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
        store = storage.ensure()
        workflow = workflow_for(store)  # the same one WorkflowProvider hands out
        self.console = Console(workflow, SessionCodec(console_config.console_secret()),
                               console_config.secure_cookie_mode(), evidence=EvidenceAccess(workflow),
                               token_guesses=web.TokenGuesses.from_env(store.database))

    def get_dependency(self, worker_ctx):
        return self.console


# Nobody needs the routed message to the tenth of a second: waiting that long lets
# several filings share a transaction at everyday load (shared.glue.batching: lingering).
@listens_to(RoutingHandlers, linger_ms=100)
class RoutingService(ServiceBase):
    name = "routing"

    store = Storage(build_store)
    # ComplaintRouted leads to the routed message, which nobody needs to the tenth of a second:
    # several commits' events go out in one round.
    relay = OutboxRelay(linger_ms=100)
    consumer = Consumer(RoutingHandlers)
    workflow = WorkflowProvider()
    console = ConsoleProvider()
    intake = RpcProxy("intake")

    # -- intake's events ---------------------------------------------------------------------
    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()

    @timer(interval=settings.sla_check_seconds())
    def check_service_levels(self):
        self.workflow.escalate_breaches()

    # -- RPC: the directory and tokens ---------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def agencies(self):
        """The agency directory: code, name, level, categories, regions, supervisor, is_desk."""
        return self.workflow.agencies()

    @rpc(expected_exceptions=EXPECTED)
    def issue_token(self, agency_code, actor):
        """A new bearer token for the agency API, returned only this once (stored hashed)."""
        return self.workflow.issue_token(agency_code, actor)

    # -- RPC: the desk -------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def assign(self, complaint_id, agency_codes, note, actor):
        """Route or re-route (desk): the first code leads, the others coordinate; `[desk]`
        alone holds it for triage."""
        return self.workflow.assign(complaint_id, agency_codes, note, actor)

    @rpc(expected_exceptions=EXPECTED)
    def dismiss(self, complaint_id, reason, actor, duplicate_of=None):
        """Dismiss (desk): spam, not a complaint, or a duplicate of another tracking code."""
        return self.workflow.dismiss(complaint_id, reason, actor, duplicate_of)

    @rpc(expected_exceptions=EXPECTED)
    def set_priority(self, complaint_id, priority, reason, actor):
        """Change the priority (desk); restarts the first-response clock."""
        return self.workflow.set_priority(complaint_id, priority, reason, actor)

    @rpc(expected_exceptions=EXPECTED)
    def set_confidential(self, complaint_id, confidential, reason, actor):
        """Mark (true) or unmark (false) the complaint as confidential (desk), with the reason."""
        return self.workflow.set_confidential(complaint_id, confidential, reason, actor)

    @rpc(expected_exceptions=EXPECTED)
    def reclassify(self, complaint_id, category, region_code, reason, actor):
        """Correct the category and/or region (desk; null leaves one as it is), with the reason;
        re-routed by the rules when the rule that applies changes."""
        return self.workflow.reclassify(complaint_id, category, region_code, reason, actor)

    @rpc(expected_exceptions=EXPECTED)
    def desk_queue(self):
        """Open complaints at the desk (new, held, handed back) and open escalated ones, most
        urgent first."""
        return self.workflow.desk_queue()

    # -- RPC: duplicates and clusters (the desk) -------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def suggested_links(self):
        """Pending duplicate suggestions, as clusters: each primary with the complaints suggested
        to join it and the grounds (same post, same category and region, shared words, score)."""
        return self.workflow.suggested_links()

    @rpc(expected_exceptions=EXPECTED)
    def link_complaint(self, complaint_id, primary_id, reason, actor):
        """Join a complaint to the cluster of `primary_id` (desk): `ComplaintLinked`; the
        agencies' later steps on the primary are recorded on it too. `reason` may be empty when
        a suggestion gives the grounds."""
        return self.workflow.link_complaint(complaint_id, primary_id, reason, actor)

    @rpc(expected_exceptions=EXPECTED)
    def refuse_link(self, complaint_id, primary_id, actor):
        """Refuse a suggestion (desk): recorded, never suggested again."""
        return self.workflow.refuse_link(complaint_id, primary_id, actor)

    # -- RPC: agencies -------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def complaints_for(self, agency_code, status=None):
        """The agency's complaints (lead or coordinating), optionally by internal or public status."""
        return self.workflow.complaints_for(agency_code, status)

    @rpc(expected_exceptions=EXPECTED)
    def acknowledge(self, complaint_id, agency_code, actor):
        """The agency has taken the complaint up (stops the first-response clock for a lead)."""
        return self.workflow.acknowledge(complaint_id, agency_code, actor)

    @rpc(expected_exceptions=EXPECTED)
    def reject(self, complaint_id, agency_code, reason, actor):
        """"Bukan wewenang": the agency hands the complaint back; without a lead left it returns
        to the desk."""
        return self.workflow.reject(complaint_id, agency_code, reason, actor)

    @rpc(expected_exceptions=EXPECTED)
    def respond(self, complaint_id, agency_code, text, resolved, actor):
        """The agency's public answer; `resolved=True` (leads only) closes its part."""
        return self.workflow.respond(complaint_id, agency_code, text, resolved, actor)

    # -- RPC: reading (the console) ------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def get_complaint(self, complaint_id):
        """One complaint by id or tracking code: facts, text, status, agencies, decision, clocks."""
        return self.workflow.get_complaint(complaint_id)

    @rpc(expected_exceptions=EXPECTED)
    def timeline(self, complaint_id):
        """The filing fact and every routing event of a complaint, oldest first, with actors."""
        return self.workflow.timeline(complaint_id)

    # -- HTTP: the same actions for people, one bearer token per agency ------------------------
    @http("GET", "/api/me")
    def http_me(self, request):
        return self._api(request, lambda caller, _body: {
            "agency_code": caller.agency_code, "actor": caller.actor,
            "is_desk": caller.agency_code == self.workflow.desk})

    @http("GET", "/api/agencies")
    def http_agencies(self, request):
        return self._api(request, lambda _caller, _body: self.workflow.agencies())

    @http("GET", "/api/desk/queue")
    def http_desk_queue(self, request):
        return self._api(request, lambda caller, _body: self.workflow.desk_queue(
            caller=caller.agency_code))

    @http("GET", "/api/agencies/<agency_code>/complaints")
    def http_complaints_for(self, request, agency_code):
        return self._api(request, lambda caller, _body: self.workflow.complaints_for(
            agency_code, request.args.get("status") or None, caller=caller.agency_code))

    @http("GET", "/api/complaints/<complaint_id>")
    def http_complaint(self, request, complaint_id):
        return self._api(request, lambda caller, _body: self.workflow.get_complaint(
            complaint_id, caller=caller.agency_code), complaint=complaint_id)

    @http("GET", "/api/complaints/<complaint_id>/timeline")
    def http_timeline(self, request, complaint_id):
        return self._api(request, lambda caller, _body: self.workflow.timeline(
            complaint_id, caller=caller.agency_code), complaint=complaint_id)

    @http("GET", "/api/complaints/<complaint_id>/evidence")
    def http_evidence(self, request, complaint_id):
        return self._api(request, lambda caller, _body: EvidenceAccess(self.workflow).listing(
            complaint_id, caller=caller.agency_code), complaint=complaint_id)

    @http("GET", "/api/complaints/<complaint_id>/evidence/<digest>")
    def http_evidence_file(self, request, complaint_id, digest):
        return self._api_evidence(request, lambda caller: EvidenceAccess(self.workflow).open(
            complaint_id, digest, caller.agency_code, self._media_chunk), EvidenceUnavailable, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/assign")
    def http_assign(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.assign(
            complaint_id, body["agency_codes"], body["note"], caller.actor,
            caller=caller.agency_code), schemas.AssignBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/dismiss")
    def http_dismiss(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.dismiss(
            complaint_id, body["reason"], caller.actor, body["duplicate_of"],
            caller=caller.agency_code), schemas.DismissBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/priority")
    def http_priority(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.set_priority(
            complaint_id, body["priority"], body["reason"], caller.actor,
            caller=caller.agency_code), schemas.PriorityBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/confidentiality")
    def http_confidentiality(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.set_confidential(
            complaint_id, body["confidential"], body["reason"], caller.actor,
            caller=caller.agency_code), schemas.ConfidentialityBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/classification")
    def http_reclassify(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.reclassify(
            complaint_id, body["category"], body["region_code"], body["reason"], caller.actor,
            caller=caller.agency_code), schemas.ReclassifyBody, complaint=complaint_id)

    @http("GET", "/api/desk/suggested-links")
    def http_suggested_links(self, request):
        return self._api(request, lambda caller, _body: self.workflow.suggested_links(
            caller=caller.agency_code))

    @http("POST", "/api/complaints/<complaint_id>/link")
    def http_link(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.link_complaint(
            complaint_id, body["primary"], body["reason"], caller.actor,
            caller=caller.agency_code), schemas.LinkBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/link-refusal")
    def http_refuse_link(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.refuse_link(
            complaint_id, body["primary"], caller.actor,
            caller=caller.agency_code), schemas.RefuseLinkBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/acknowledge")
    def http_acknowledge(self, request, complaint_id):
        return self._api(request, lambda caller, _body: self.workflow.acknowledge(
            complaint_id, caller.agency_code, caller.actor, caller=caller.agency_code),
            schemas.EmptyBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/reject")
    def http_reject(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.reject(
            complaint_id, caller.agency_code, body["reason"], caller.actor,
            caller=caller.agency_code), schemas.RejectBody, complaint=complaint_id)

    @http("POST", "/api/complaints/<complaint_id>/respond")
    def http_respond(self, request, complaint_id):
        return self._api(request, lambda caller, body: self.workflow.respond(
            complaint_id, caller.agency_code, body["text"], body["resolved"], caller.actor,
            caller=caller.agency_code), schemas.RespondBody, complaint=complaint_id)

    def _api(self, request, action, body_schema=None, complaint=None):
        """One ``/api`` request (``web.handle``), wrong tokens counted with the console's sign-in."""
        return web.handle(self.workflow, request, action, body_schema, complaint=complaint,
                          guesses=self.console.token_guesses)

    def _api_evidence(self, request, action, unavailable, complaint=None):
        return web.handle_evidence(self.workflow, request, action, unavailable, complaint=complaint,
                                   guesses=self.console.token_guesses)

    # -- HTTP: the web console for the desk and the agencies (docs/console.md) ----------------
    @http("GET", "/console/")
    def console_home(self, request):
        return self.console.home(request)

    @http("GET", "/console/login")
    def console_login_form(self, request):
        return self.console.login_form(request)

    @http("POST", "/console/login")
    def console_login(self, request):
        return self.console.login(request)

    @http("POST", "/console/keluar")
    def console_logout(self, request):
        return self.console.logout(request)

    @http("GET", "/console/antrian")
    def console_queue(self, request):
        return self.console.queue(request)

    @http("GET", "/console/kotak-masuk")
    def console_inbox(self, request):
        return self.console.inbox(request)

    @http("GET", "/console/gabungan")
    def console_clusters(self, request):
        return self.console.clusters(request)

    @http("GET", "/console/cari")
    def console_search(self, request):
        return self.console.search(request)

    @http("GET", "/console/aduan/<complaint_id>")
    def console_complaint(self, request, complaint_id):
        return self.console.complaint(request, complaint_id)

    @http("POST", "/console/aduan/<complaint_id>/<action>")
    def console_action(self, request, complaint_id, action):
        return self.console.act(request, complaint_id, action, self._reporter_contact)

    @http("GET", "/console/aduan/<complaint_id>/bukti/<digest>")
    def console_evidence(self, request, complaint_id, digest):
        return self.console.evidence(request, complaint_id, digest, self._media_chunk)

    @http("GET", "/console/static/<name>")
    def console_static(self, request, name):
        return self.console.static(request, name)

    def _reporter_contact(self, complaint_id, actor, reason):
        """intake's audited lookup, for the desk's console; never inside a transaction."""
        with eventlet.Timeout(CONTACT_RPC_TIMEOUT_SECONDS, TimeoutError("intake did not answer")):
            return self.intake.reporter_contact(complaint_id, actor, reason)

    def _media_chunk(self, complaint_id, digest, offset):
        """One chunk of a piece of evidence from intake; never inside a transaction."""
        with eventlet.Timeout(MEDIA_RPC_TIMEOUT_SECONDS, TimeoutError("intake did not answer")):
            return self.intake.media(complaint_id, digest, offset)
