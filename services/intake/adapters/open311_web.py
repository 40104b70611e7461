"""Open311 GeoReport v2 entrypoints on intake's web address under ``/open311/v2/`` (JSON and XML).
``POST requests`` files into intake (channel ``open311``) with an API key per client system;
``GET requests`` and ``GET requests/{id}`` are answered from reporting over RPC — lookups by code
for anyone, lists only with an API key and without codes, answers or confidential complaints
(``domain/open311.py`` says what each may show). Mixed into ``IntakeService`` so it shares
intake's filing path (no second path)."""
from __future__ import annotations

import json
import logging

import eventlet
from marshmallow import ValidationError
from nameko.exceptions import RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from shared.core import config
from shared.core.errors import NotFound
from shared.core.errors import ValidationFailed as RemoteValidationFailed
from shared.glue.http import BodyTooLarge, client_address, read_body
from shared.core.shared_budget import shared_limiter_from_env
from shared.glue.shared_limits import storage_database
from services.intake.domain import open311
from services.intake.adapters.schemas import RpcComplaint

log = logging.getLogger("intake.open311")
# reporting not running (no queue), not answering in time, or the broker briefly away.
REPORTING_DOWN = (UnknownService, RpcTimeout, eventlet.Timeout, OSError)
REPORTING_TIMEOUT_SECONDS = 10
FORMATS = ("json", "xml")


class Open311Settings(DependencyProvider):
    """API keys (``OPEN311_API_KEYS``, ``client:key,…``) and a per-key request limit
    (``OPEN311_RATE_PER_MINUTE`` [60]) shared by every replica of intake (counted in its database)."""

    def setup(self):
        self.keys = open311.ApiKeys(config.env("OPEN311_API_KEYS"))
        self.limiter = shared_limiter_from_env("OPEN311_RATE_PER_MINUTE", "60", storage_database(self))

    def get_dependency(self, worker_ctx):
        return self


def _respond(status: int, fmt: str, rows, root: str = "service_requests", item: str = "request",
             headers: dict | None = None) -> Response:
    if fmt == "xml":
        if status >= 400:
            body = open311.to_xml("errors", "error", rows)
        else:
            body = open311.to_xml(root, item, rows)
        response = Response(body, status=status, content_type="text/xml; charset=utf-8")
    else:
        response = Response(json.dumps(rows, ensure_ascii=False), status=status,
                            content_type="application/json; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _format(fmt: str) -> str | None:
    return fmt if fmt in FORMATS else None


class Open311Endpoints:
    open311_settings = Open311Settings()

    def _open311_limited(self, request, fmt, lookups: int = 1):
        """Status lookups are limited per client address (``OPEN311_RATE_PER_MINUTE``), one token
        per code looked up, so several codes in one request guess no faster than one each."""
        limiter = self.open311_settings.limiter
        if limiter is None:
            return None
        key = f"open311-read:{client_address(request)}"
        for _ in range(max(1, lookups)):
            decision = limiter.take(key)
            if not decision.allowed:
                return _respond(429, fmt, open311.errors(429, "too many requests; try again later"),
                                headers={"Retry-After": str(decision.retry_after_seconds)})
        return None

    def _open311_client_limited(self, client, fmt):
        """Requests with an API key are limited per key (the same bucket as its POSTs)."""
        limiter = self.open311_settings.limiter
        if limiter is None:
            return None
        decision = limiter.take(f"open311:{client}")
        if decision.allowed:
            return None
        return _respond(429, fmt, open311.errors(429, "too many requests for this api_key; try again later"),
                        headers={"Retry-After": str(decision.retry_after_seconds)})

    @http("GET", "/open311/v2/services.<fmt>")
    def open311_services(self, request, fmt):
        if not _format(fmt):
            return _respond(404, "json", open311.errors(404, "format must be json or xml"))
        return _respond(200, fmt, open311.services(), root="services", item="service")

    @http("GET", "/open311/v2/services/<code>.<fmt>")
    def open311_service_definition(self, request, code, fmt):
        if not _format(fmt):
            return _respond(404, "json", open311.errors(404, "format must be json or xml"))
        definition = open311.service_definition(code)
        if definition is None:
            return _respond(404, fmt, open311.errors(404, f"unknown service_code {code}"))
        if fmt == "xml":
            return Response(open311.definition_xml(code), content_type="text/xml; charset=utf-8")
        return _respond(200, fmt, definition)

    @http("POST", "/open311/v2/requests.<fmt>")
    def open311_create(self, request, fmt):
        if not _format(fmt):
            return _respond(404, "json", open311.errors(404, "format must be json or xml"))
        try:
            read_body(request, limit=64 * 1024)
        except BodyTooLarge as error:
            return _respond(413, fmt, open311.errors(413, str(error)))
        form = request.form.to_dict() if request.form else {}
        if not form and request.is_json:
            body = request.get_json(silent=True)
            form = body if isinstance(body, dict) else {}
        form = {key: str(value) for key, value in form.items() if value is not None}
        client = self.open311_settings.keys.client_for(form.get("api_key"))
        if client is None:
            return _respond(403, fmt, open311.errors(403, "a valid api_key is required to post requests"))
        limited = self._open311_client_limited(client, fmt)
        if limited is not None:
            return limited
        complaint = open311.complaint_from_request(form, client)
        try:
            payload = RpcComplaint().load(complaint)
        except ValidationError as error:
            described = "; ".join(f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                                  for field, msgs in error.messages.items())
            return _respond(400, fmt, open311.errors(400, described))
        result = self._file(payload)
        log.info("open311 request filed", extra={"complaint_id": result["complaint_id"]})
        return _respond(201, fmt, [{"service_request_id": result["tracking_code"],
                                    "service_notice": "Aduan diterima; status dapat dicek dengan kode ini.",
                                    "account_id": None}])

    @http("GET", "/open311/v2/requests.<fmt>")
    def open311_requests(self, request, fmt):
        """With ``service_request_id``: a lookup of those codes (public, per-address limit). Without:
        a list, for holders of an API key only, with no codes, no answers and no confidential
        complaints (``domain.open311``)."""
        if not _format(fmt):
            return _respond(404, "json", open311.errors(404, "format must be json or xml"))
        args = request.args
        try:
            codes = open311.lookup_codes(args.get("service_request_id"))
        except open311.TooManyCodes as error:
            return _respond(400, fmt, open311.errors(400, str(error)))
        if codes:
            refused = self._open311_limited(request, fmt, lookups=len(codes))
        else:
            client = self.open311_settings.keys.client_for(args.get("api_key"))
            if client is None:
                return _respond(403, fmt, open311.errors(
                    403, "a valid api_key is required to list requests; "
                         "look a request up by its service_request_id without one"))
            refused = self._open311_client_limited(client, fmt)
        if refused is not None:
            return refused
        filters: dict = {}
        if codes:
            filters["tracking_codes"] = codes
        if args.get("service_code"):
            filters["category"] = args["service_code"]
        if args.get("start_date"):
            filters["filed_from"] = args["start_date"]
        if args.get("end_date"):
            filters["filed_to"] = args["end_date"]
        if args.get("status"):
            filters["status"] = args["status"]
        # Without dates the spec asks for the last 90 days; newest first, capped at 1000.
        filters["limit"] = 1000
        try:
            with eventlet.Timeout(REPORTING_TIMEOUT_SECONDS):
                found = self.reporting.find_complaints(filters)
        except RemoteValidationFailed as error:
            return _respond(400, fmt, open311.errors(400, str(error)))
        except REPORTING_DOWN:
            return _respond(503, fmt, open311.errors(503, "status answers are unavailable; try again shortly"),
                            headers={"Retry-After": "30"})
        view = open311.request_view if codes else open311.listed_view
        return _respond(200, fmt, [view(status) for status in found if open311.may_be_shown(status)])

    @http("GET", "/open311/v2/requests/<request_id>.<fmt>")
    def open311_request(self, request, request_id, fmt):
        if not _format(fmt):
            return _respond(404, "json", open311.errors(404, "format must be json or xml"))
        limited = self._open311_limited(request, fmt)
        if limited is not None:
            return limited
        try:
            with eventlet.Timeout(REPORTING_TIMEOUT_SECONDS):
                status = self.reporting.complaint_status(request_id)
        except (NotFound, RemoteValidationFailed):
            status = None
        except REPORTING_DOWN:
            return _respond(503, fmt, open311.errors(503, "status answers are unavailable; try again shortly"),
                            headers={"Retry-After": "30"})
        if status is None or not open311.may_be_shown(status):
            # Unknown, malformed and confidential codes answer alike: nothing tells them apart.
            return _respond(404, fmt, open311.errors(404, open311.NOT_FOUND))
        return _respond(200, fmt, [open311.request_view(status)])
