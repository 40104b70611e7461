"""Open311 GeoReport v2 for intake's web address (``/open311/v2/``): the service list (one per
category), the mapping of a POSTed request into intake's filing, and the rendering of request
statuses (answered from reporting) as JSON or XML. Pure functions.

Privacy: a request's ``description`` is the citizen's own text, which often carries a name,
phone or address, so status answers leave it out (as they leave out the reporter); only the
public status, the responsible agency and the times are given.

What a caller may see (issue 16, "Open311 lists every tracking code"): a tracking code is the key
to its complaint, so

* a **lookup by code** (``requests/{code}``, or ``requests?service_request_id=a,b``; at most
  ``MAX_CODES_PER_LOOKUP`` codes) shows those complaints — their code, status and, unless
  confidential, the agencies' answer (``status_notes``) — like reporting's public status page;
* a **list** (``requests`` without codes; API key required) shows figures only: no code, no
  ``status_notes``;
* a **confidential** complaint (an illegal levy, or any complaint routing's lifecycle says is
  confidential now) is in no Open311 answer at all: lists leave it out and a lookup of its code
  answers exactly as for a code that does not exist.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any
from xml.etree import ElementTree

from shared.core import reference
from shared.core.reference import CATEGORIES, CONFIDENTIAL_CATEGORIES

#: category → (service_name, description), from the shared reference data.
SERVICE_NAMES = {code: (reference.CATEGORY_TITLES[code], reference.CATEGORY_DESCRIPTIONS[code])
                 for code in CATEGORIES}

OPEN_STATUSES = frozenset(reference.OPEN_STATUSES)

# Codes one lookup may carry. The spec lets ``service_request_id`` list several; a citizen or a
# partner system asks about a handful at a time. Each code also costs one token of the per-address
# read limit, so a longer list buys no faster guessing — 10 only keeps one request small.
MAX_CODES_PER_LOOKUP = 10
# Every "you may not see this" answers with this very body, as an unknown code does.
NOT_FOUND = "no such request"


def services() -> list[dict[str, Any]]:
    return [{"service_code": code, "service_name": SERVICE_NAMES[code][0], "description": SERVICE_NAMES[code][1],
             "metadata": False, "type": "realtime", "keywords": code.replace("_", ", "),
             "group": "NTBCare"} for code in CATEGORIES]


def service_definition(code: str) -> dict[str, Any] | None:
    if code not in CATEGORIES:
        return None
    return {"service_code": code, "attributes": []}


class ApiKeys:
    """API keys per client system from ``OPEN311_API_KEYS`` (``client:key,client:key``), kept only
    as SHA-256 digests and compared in constant time."""

    def __init__(self, spec: str | None):
        self._digests: dict[str, str] = {}
        for item in (spec or "").split(","):
            client, sep, key = item.strip().partition(":")
            if sep and client.strip() and key.strip():
                self._digests[client.strip()] = hashlib.sha256(key.strip().encode()).hexdigest()

    def client_for(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = None
        for client, expected in self._digests.items():
            if hmac.compare_digest(digest, expected):
                found = client
        return found


def complaint_from_request(form: dict[str, Any], client: str) -> dict[str, Any]:
    """A POSTed Open311 request → the payload of intake's filing (channel ``open311``)."""
    text = (form.get("description") or "").strip()
    complaint: dict[str, Any] = {"text": text, "channel": "open311"}
    if form.get("service_code"):
        complaint["category"] = form["service_code"]
    location: dict[str, Any] = {}
    if form.get("address_string"):
        location["address"] = form["address_string"]
    for ours, theirs in (("lat", "lat"), ("lon", "long")):
        if form.get(theirs) not in (None, ""):
            location[ours] = form[theirs]
    if location:
        complaint["location"] = location
    name = " ".join(p for p in (form.get("first_name"), form.get("last_name")) if p)
    reporter = {k: v for k, v in (("name", name), ("phone", form.get("phone")), ("email", form.get("email"))) if v}
    if reporter:
        complaint["reporter"] = reporter
    if form.get("media_url"):
        complaint["attachments"] = [{"type": "image", "url": form["media_url"]}]
    if form.get("service_request_id") or form.get("external_ref"):
        complaint["external_ref"] = f"open311:{client}:{form.get('external_ref') or form.get('service_request_id')}"
    return complaint


class TooManyCodes(ValueError):
    """More codes in one lookup than ``MAX_CODES_PER_LOOKUP``."""


def lookup_codes(raw: str | None) -> list[str]:
    """The codes of ``service_request_id=a,b,…`` (blank items dropped, duplicates once)."""
    codes = list(dict.fromkeys(code.strip() for code in (raw or "").split(",") if code.strip()))
    if len(codes) > MAX_CODES_PER_LOOKUP:
        raise TooManyCodes(f"at most {MAX_CODES_PER_LOOKUP} service_request_id values per request")
    return codes


def may_be_shown(status: dict[str, Any]) -> bool:
    """Whether Open311 may show this complaint at all: never a confidential one — by category
    (an illegal levy) or by routing's current lifecycle."""
    return not status.get("confidential") and status.get("category") not in CONFIDENTIAL_CATEGORIES


def listed_view(status: dict[str, Any]) -> dict[str, Any]:
    """A complaint as a list shows it: the request's fields without the tracking code (the key to
    the complaint) and without ``status_notes`` (the agencies' answers)."""
    return {**request_view(status), "service_request_id": None, "status_notes": None}


def request_view(status: dict[str, Any]) -> dict[str, Any]:
    """reporting's public status of a complaint → an Open311 service request (a lookup by its
    code). Answer texts reporting withholds (``None``) stay out of ``status_notes``."""
    agencies = status.get("agencies") or []
    category = status.get("category")
    names = SERVICE_NAMES.get(category) if isinstance(category, str) else None
    public = status.get("status")
    notes = status.get("status_label") or public
    answers = status.get("answers") or []
    if answers and answers[-1].get("text"):
        notes = f"{notes}: {answers[-1]['text']}"
    return {
        "service_request_id": status["tracking_code"],
        "status": "open" if public in OPEN_STATUSES else "closed",
        "status_notes": notes,
        "service_name": names[0] if names else category,
        "service_code": category,
        "description": None,
        "agency_responsible": ", ".join(a.get("name") or a.get("code") for a in agencies) or None,
        "service_notice": None,
        "requested_datetime": _zoned(status.get("filed_at")),
        "updated_datetime": _zoned(status.get("updated_at") or status.get("filed_at")),
        "expected_datetime": _zoned(status.get("expected_at")),
        "address": status.get("region_name"),
        "address_id": None, "zipcode": None, "lat": None, "long": None, "media_url": None,
    }


def _zoned(value: str | None) -> str | None:
    """Open311 wants ISO 8601 with a zone; ours end in Z, which is one — keep seconds only."""
    if not value:
        return None
    from shared.core.events import isoformat_utc, parse_iso
    return isoformat_utc(parse_iso(value)).split(".")[0] + "Z"


def definition_xml(code: str) -> bytes:
    top = ElementTree.Element("service_definition")
    ElementTree.SubElement(top, "service_code").text = code
    ElementTree.SubElement(top, "attributes")
    body: bytes = ElementTree.tostring(top, encoding="utf-8")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def to_xml(root: str, item: str, rows: list[dict[str, Any]]) -> bytes:
    top = ElementTree.Element(root)
    for row in rows:
        element = ElementTree.SubElement(top, item)
        for key, value in row.items():
            child = ElementTree.SubElement(element, key)
            if isinstance(value, bool):
                child.text = "true" if value else "false"
            elif isinstance(value, list):
                for entry in value:
                    sub = ElementTree.SubElement(child, "attribute")
                    sub.text = str(entry)
            elif value is not None:
                child.text = str(value)
    body: bytes = ElementTree.tostring(top, encoding="utf-8")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def errors(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description}]
