"""Intake: turns citizens' messages into recorded complaints (``ComplaintFiled`` …) and keeps the
reporter's contact, the only personal data in the platform. Channels: Meta's Page webhook
(``/webhooks/facebook``), the web form (``POST /api/complaints``) and RPC for other systems."""
from __future__ import annotations

import hmac
import json
import logging

import eventlet
from marshmallow import ValidationError
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from shared.core import config
from shared.core.errors import EXPECTED, IllegalAction, NotFound, ValidationFailed
from shared.core.events import Envelope
from shared.core.text import check_unicode
from shared.glue.http import (BodyTooLarge, NotJson, client_address, json_response, read_body, read_json,
                              too_many_requests, unsupported_media_type)
from shared.glue.providers import Consumer, Storage
from shared.glue.relay import OutboxRelay
from shared.glue.shared_limits import SharedRateLimit
from shared.core.ratelimit import per_minute_from_env
from shared.glue.service_base import ServiceBase
from shared.core.events import types as ev
from shared.core.handlers import EventHandlers, handles
from shared.glue.subscriptions import listens_to
from services.intake.adapters.open311_web import Open311Endpoints
from services.intake.application.complaints import Complaints
from services.intake.application.evidence import Evidence, media_poll_seconds, media_settings_from_env
from services.intake.adapters.media_fetch import MediaFetcher
from services.intake.adapters.media_files import MediaFiles
from services.intake.application.inbox import WebhookInbox, settings_from_env
from services.intake.adapters.background import BackgroundWork, ForegroundFirst
from services.intake.adapters.caller import CallerSystem
from services.intake.adapters.schemas import RpcComplaint, WebComplaint
from services.intake.adapters.store import (build_store, find_complaint, remember_conversation, set_state)
from services.intake.domain.webhook import MAX_WEBHOOK_BYTES, SIGNATURE_HEADER, signature_valid

log = logging.getLogger("intake")


def check_startup() -> None:
    if not config.facebook_app_secret() and not config.is_development():
        raise config.ConfigError(
            "FACEBOOK_APP_SECRET is not set; webhooks could not be verified. Set it, or set "
            "NTBCARE_ENV=development for a local run.")
    per_minute_from_env(WEB_RATE_VARIABLE, WEB_RATE_DEFAULT)
    check_media_settings()
    settings_from_env()   # FACEBOOK_INSTAGRAM_ACCOUNTS and INTAKE_STANDBY_MODE must be readable


WEB_RATE_VARIABLE, WEB_RATE_DEFAULT = "INTAKE_WEB_RATE_PER_MINUTE", "30"


def inbox_retry_seconds() -> float:
    return float(config.env("INTAKE_INBOX_RETRY_SECONDS", "30"))


def drain_inbox(store, priority: ForegroundFirst | None = None) -> int:
    """Process every stored webhook body still pending, oldest first, giving way between items —
    never inside a transaction — to the webhook answering Meta's next deliveries (one body a
    transaction while they arrive)."""
    inbox = WebhookInbox(store, settings_from_env())
    if priority is None:
        return inbox.drain(pause=lambda: eventlet.sleep(0))
    return inbox.drain(pause=priority.give_way, busy=priority.arriving)


def check_media_settings() -> None:
    """The media store's settings are readable and its directory writable; a host let past the
    private-address check outside development is worth a warning."""
    settings = media_settings_from_env()
    try:
        MediaFiles(settings.directory).ensure()
    except OSError as error:
        raise config.ConfigError(f"INTAKE_MEDIA_DIR {settings.directory!r} cannot be used: {error}") from None
    if settings.allow_hosts and not config.is_development():
        log.warning("INTAKE_MEDIA_ALLOW_HOSTS lets evidence downloads reach %s even on private or "
                    "local addresses (meant for the Graph sandbox in development)", sorted(settings.allow_hosts))


def status_url(tracking_code: str) -> str:
    """Where anyone can look the complaint up (reporting's public status, unless configured)."""
    template = config.env("INTAKE_STATUS_URL") or \
        f"http://{config.web_address('reporting')}/api/complaints/{{tracking_code}}"
    return template.replace("{tracking_code}", tracking_code)


class IntakeHandlers(EventHandlers):
    """Routing's lifecycle says whether a complaint is still open (a message after it closed
    starts a new complaint) and whether it is confidential; notification hands a comment's
    complaint over to Messenger. Also intake's subscriptions."""

    @handles(ev.COMPLAINT_RESOLVED, ev.COMPLAINT_DISMISSED, ev.COMPLAINT_CONFIDENTIALITY_CHANGED,
             ev.COMPLAINT_REOPENED)
    def on_lifecycle(self, tx, envelope: Envelope):
        lifecycle = envelope.data["lifecycle"]
        set_state(tx, envelope.complaint_id, is_open=lifecycle["open"],
                  confidential=lifecycle["confidential"])

    @handles(ev.CITIZEN_NOTIFIED)
    def on_citizen_notified(self, tx, envelope: Envelope):
        psid = envelope.data.get("recipient_psid")
        if not psid:
            return
        complaint = find_complaint(tx.connection, envelope.complaint_id)
        if complaint is None or not complaint["reply_to"]:
            return
        page_id = json.loads(complaint["reply_to"]).get("page_id")
        if page_id:
            # After a private reply to a comment, the citizen's Messenger answers continue that
            # complaint (not a new one).
            remember_conversation(tx, str(page_id), str(psid), envelope.complaint_id, False, None)


# CitizenNotified may wait a quarter second for others (shared.glue.batching: lingering): a private
# reply's conversation is needed when the citizen next writes, seconds later at least. Routing's
# lifecycle events may not: a closed complaint must be closed here before the citizen can answer
# the question it sends (notification lingers 100 ms on them), and a confidential one at once.
@listens_to(IntakeHandlers, linger_ms=250, urgent=(ev.COMPLAINT_RESOLVED, ev.COMPLAINT_DISMISSED,
                                                   ev.COMPLAINT_CONFIDENTIALITY_CHANGED, ev.COMPLAINT_REOPENED))
class IntakeService(Open311Endpoints, ServiceBase):
    name = "intake"

    store = Storage(build_store)
    relay = OutboxRelay()
    reporting = RpcProxy("reporting")  # Open311 status answers come from reporting
    consumer = Consumer(IntakeHandlers)
    # Per client address, on the public web form only: refusing the signed webhook would only
    # make Meta retry, i.e. duplicates later. Counted in intake's database: every replica spends
    # one budget per address.
    web_rate_limit = SharedRateLimit(WEB_RATE_VARIABLE, WEB_RATE_DEFAULT)
    # Processes stored webhook bodies behind the 200 (woken by the webhook and the inbox timer).
    inbox_worker = BackgroundWork(drain_inbox, inbox_retry_seconds, "webhook inbox processing")
    # The outside system the gateway says is calling (RPC context data); None for internal callers.
    caller_system = CallerSystem()

    # -- Meta's Page webhook ----------------------------------------------------------------
    @http("GET", "/webhooks/facebook")
    def facebook_verify(self, request):
        args = request.args
        token = config.facebook_verify_token()
        if (args.get("hub.mode") == "subscribe" and token and args.get("hub.verify_token") is not None
                and _same(args.get("hub.verify_token"), token)):
            return Response(args.get("hub.challenge", ""), status=200, mimetype="text/plain")
        return Response("forbidden", status=403, mimetype="text/plain")

    @http("POST", "/webhooks/facebook")
    def facebook_webhook(self, request):
        try:
            raw = read_body(request, MAX_WEBHOOK_BYTES)
        except BodyTooLarge:
            return Response("too large", status=413, mimetype="text/plain")
        if not signature_valid(raw, request.headers.get(SIGNATURE_HEADER), config.facebook_app_secret()):
            log.warning("webhook refused: missing or wrong signature")
            return Response("forbidden", status=403, mimetype="text/plain")
        try:
            with self.inbox_worker.foreground():   # the inbox processing waits for this answer
                self._inbox().store_body(raw)
        except Exception as error:  # not stored: Meta must retry
            log.error("webhook body could not be stored: %s", type(error).__name__)
            return Response("unavailable", status=503, mimetype="text/plain")
        # Durably stored: Meta gets its 200 now; the inbox worker processes the body behind it
        # (a slow classifier or a database hiccup never turns into a non-200 and Meta's retries).
        self.inbox_worker.wake()
        return Response("EVENT_RECEIVED", status=200, mimetype="text/plain")

    @timer(interval=inbox_retry_seconds(), eager=True)
    def process_left_over_bodies(self):
        """Bodies still pending — a run that met a database failure, a crash after the 200 —
        are processed again: the timer wakes the inbox worker (one processing run at a time)."""
        self.inbox_worker.wake()

    def _inbox(self) -> WebhookInbox:
        return WebhookInbox(self.store, settings_from_env())

    def health_extra(self) -> dict:
        try:
            return {"webhook_bodies_pending": len(self._inbox().pending(older_than_seconds=0, limit=1000)),
                    "evidence_downloads_pending": self._evidence().pending()}
        except Exception:
            return {}

    def replay_item(self, item: dict, actor: str) -> str:
        if item["kind"] == "webhook":
            return self._inbox().replay(item, actor)
        return super().replay_item(item, actor)

    # -- evidence: attachments downloaded into the media store (docs/intake.md) --------------
    @timer(interval=media_poll_seconds(), eager=True)
    def download_evidence(self):
        """Every due download (new attachments, retries after their backoff), behind the webhook:
        no transaction is open while a file is fetched."""
        return self._evidence().run_due()

    @rpc(expected_exceptions=EXPECTED)
    def media(self, complaint_id, digest, offset=0, limit=None):
        """Part of a stored attachment of the complaint (routing's evidence endpoint reads it,
        after checking the caller may see it): ``{digest, content_type, size, offset, length,
        data}`` with ``data`` base64, at most ``limit`` (≤ 4 MiB, default 1 MiB) bytes from
        ``offset``."""
        return self._evidence().chunk(complaint_id, digest, offset, limit)

    def _evidence(self) -> Evidence:
        settings = media_settings_from_env()
        return Evidence(self.store, settings, MediaFetcher(settings))

    # -- events from routing and notification -------------------------------------------------
    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()

    # -- filing ------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def file_complaint(self, complaint):
        try:
            check_unicode(complaint)
        except ValueError as error:
            raise ValidationFailed(str(error))
        try:
            payload = RpcComplaint().load(complaint if isinstance(complaint, dict) else {})
        except ValidationError as error:
            raise ValidationFailed(error.messages_dict if hasattr(error, "messages_dict") else error.messages)
        return Complaints(self.store).file(payload, caller_system=self.caller_system)

    def _file(self, payload: dict) -> dict:
        """The web form's and Open311's filing: the platform's own doors, no outside caller."""
        return Complaints(self.store).file(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_complaint(self, complaint_id):
        return Complaints(self.store).get(complaint_id)

    @rpc(expected_exceptions=EXPECTED)
    def reporter_contact(self, complaint_id, actor, reason):
        return Complaints(self.store).reporter_contact(complaint_id, actor, reason)

    @http("POST", "/api/complaints")
    def web_complaint(self, request):
        if self.web_rate_limit is not None:
            decision = self.web_rate_limit.take(client_address(request))
            if not decision.allowed:
                return too_many_requests(decision, "too many complaints from this address; try again later")
        try:
            body = read_json(request)
            payload = WebComplaint().load(body if isinstance(body, dict) else {})
        except BodyTooLarge as error:
            return json_response(413, {"error": str(error)})
        except NotJson as error:   # a cross-site form cannot file without a CORS preflight
            return unsupported_media_type(error)
        except ValueError as error:
            return json_response(400, {"error": str(error)})
        except ValidationError as error:
            return json_response(400, {"error": "invalid complaint", "fields": error.messages})
        payload["channel"] = "web"
        result = self._file(payload)
        result["status_url"] = status_url(result["tracking_code"])
        return json_response(201, result)

    @http("POST", "/api/complaints/<string:tracking_code>/reopen")
    def web_reopen(self, request, tracking_code):
        """The public status page's "Belum selesai" for a web, API or Open311 complaint: ``{"text":
        "…"}`` with the citizen's words; 202 ``{"tracking_code", "received": true}``. Rate-limited
        per address with the web form's budget."""
        if self.web_rate_limit is not None:
            decision = self.web_rate_limit.take(client_address(request))
            if not decision.allowed:
                return too_many_requests(decision, "too many requests from this address; try again later")
        try:
            body = read_json(request)
            check_unicode(body)
        except BodyTooLarge as error:
            return json_response(413, {"error": str(error)})
        except NotJson as error:
            return unsupported_media_type(error)
        except ValueError as error:
            return json_response(400, {"error": str(error)})
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return json_response(400, {"error": "invalid request", "fields": {"text": ["required"]}})
        try:
            result = Complaints(self.store).answer_by_code(tracking_code, text)
        except ValidationFailed as error:
            return json_response(400, {"error": "invalid request", "fields": error.args[0] if error.args else {}})
        except NotFound:
            return json_response(404, {"error": "unknown tracking code"})
        except IllegalAction as error:
            return json_response(409, {"error": str(error)})
        return json_response(202, result)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
