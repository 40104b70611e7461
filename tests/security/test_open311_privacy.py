"""Open311 answers that leak nothing (issue 16, "Open311 lists every tracking code").

Before, ``GET /open311/v2/requests.json?service_code=pungli`` with no key paged through every
illegal-levy report with its tracking code, agency and dates, ``status_notes`` carried the
agencies' answers, and ``service_request_id=`` took 200 codes per request (100× the status page's
guessing rate). Now:

* a list needs an API key, and even then carries no tracking codes, no ``status_notes`` and no
  confidential complaint (an illegal levy, or one routing's lifecycle made confidential);
* a lookup by code takes at most 10 codes, each costing one token of the per-address limit;
* a confidential complaint's code answers exactly like an unknown code (404, the same body).

In-process: intake's real Open311 entrypoints and settings (keys, limiter) on a nameko worker;
reporting's answers are built with reporting's own ``public.complaint_status`` from projection
rows, as its ``find_complaints``/``complaint_status`` return them.
"""
from __future__ import annotations

import pytest
from nameko.testing.services import worker_factory

from shared.core.errors import NotFound
from services.intake.adapters.open311_web import Open311Settings
from services.intake.service import IntakeService
from services.reporting.domain.public import complaint_status
from tests.interface.harness import json_of, request, text_of

KEY = "open311-key-of-fixmystreet"
ANSWER = "Ruas jalan ini kami perbaiki pekan depan."
LEVY_ANSWER = "Oknum petugas loket Samsat Praya sudah kami periksa."


def status(code: str, category: str, confidential: bool, answer: str) -> dict:
    """reporting's public status of a complaint (its real ``complaint_status``) from a projection row."""
    row = {"tracking_code": code, "public_status": "diproses", "category": category, "region_code": "5202",
           "lead_agencies": ["dpupr"], "coordinating_agencies": [], "agency_names": {"dpupr": "Dinas PUPR NTB"},
           "confidential": confidential, "filed_at": "2026-11-02T01:00:00.000000Z",
           "updated_at": "2026-11-03T01:00:00.000000Z", "next_due_at": "2026-11-05T01:00:00.000000Z"}
    answers = [{"agency_code": "dpupr", "text": answer, "resolved": False,
                "answered_at": "2026-11-03T01:00:00.000000Z"}]
    return complaint_status(row, answers)


PLAIN = status("NTB-PLAIN-00001", "infrastruktur", False, ANSWER)
LEVY = status("NTB-LEVYY-00002", "pungli", True, LEVY_ANSWER)
# Not a levy by category, but the desk (or a levy found in a later message) made it confidential.
MARKED = status("NTB-MARKD-00003", "pelayanan_umum", True, LEVY_ANSWER)
CODES = [s["tracking_code"] for s in (PLAIN, LEVY, MARKED)]


class Reporting:
    """reporting's RPC as Open311 calls it; records the calls."""

    def __init__(self, statuses):
        self.statuses = {s["tracking_code"]: s for s in statuses}
        self.calls: list = []

    def find_complaints(self, filters):
        self.calls.append(filters)
        wanted = filters.get("tracking_codes")
        return [s for code, s in self.statuses.items() if (wanted is None or code in wanted)
                and filters.get("category") in (None, s["category"])]

    def complaint_status(self, tracking_code):
        self.calls.append(tracking_code)
        if tracking_code not in self.statuses:
            raise NotFound("no complaint with that tracking code")
        return self.statuses[tracking_code]


@pytest.fixture
def intake(monkeypatch):
    monkeypatch.setenv("OPEN311_API_KEYS", f"fixmystreet:{KEY}")
    monkeypatch.setenv("OPEN311_RATE_PER_MINUTE", "600")
    return make_worker()


def make_worker():
    settings = Open311Settings()
    settings.setup()
    return worker_factory(IntakeService, reporting=Reporting([PLAIN, LEVY, MARKED]), open311_settings=settings)


def get_list(worker, fmt="json", **query):
    return worker.open311_requests(request("GET", f"/open311/v2/requests.{fmt}", query=query), fmt)


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("query", [{}, {"service_code": "pungli"}, {"status": "open"}, {"api_key": "guessed"}])
def test_a_list_needs_an_api_key(intake, fmt, query):
    refused = get_list(intake, fmt, **query)
    assert refused.status_code == 403
    assert "api_key" in text_of(refused) and not any(code in text_of(refused) for code in CODES)
    assert intake.reporting.calls == []     # nothing was even asked


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_list_carries_no_codes_no_answers_and_no_confidential_complaint(intake, fmt):
    answer = get_list(intake, fmt, api_key=KEY)
    assert answer.status_code == 200
    body = text_of(answer)
    for secret in CODES + [ANSWER, LEVY_ANSWER, "pungli", "pelayanan_umum"]:
        assert secret not in body
    if fmt == "json":
        [item] = json_of(answer)
        assert item["service_request_id"] is None and item["status_notes"] is None
        assert (item["service_code"], item["status"]) == ("infrastruktur", "open")
    else:
        assert body.count("<request>") == 1
    # Asking for illegal levies by name lists none.
    assert json_of(get_list(intake, api_key=KEY, service_code="pungli")) == []


def test_a_lookup_takes_at_most_ten_codes(intake):
    eleven = ",".join(f"NTB-GUESS-{n:05d}" for n in range(11))
    refused = get_list(intake, service_request_id=eleven)
    assert refused.status_code == 400 and "at most 10" in json_of(refused)[0]["description"]
    assert intake.reporting.calls == []
    ten = ",".join([PLAIN["tracking_code"]] + [f"NTB-GUESS-{n:05d}" for n in range(9)])
    [found] = json_of(get_list(intake, service_request_id=ten))
    # The holder of a code sees its complaint, as on the public status page.
    assert found["service_request_id"] == PLAIN["tracking_code"] and ANSWER in found["status_notes"]


def test_each_code_looked_up_costs_one_read_of_the_address_limit(monkeypatch):
    monkeypatch.setenv("OPEN311_API_KEYS", f"fixmystreet:{KEY}")
    monkeypatch.setenv("OPEN311_RATE_PER_MINUTE", "12")
    worker = make_worker()
    ten = ",".join(f"NTB-GUESS-{n:05d}" for n in range(10))
    assert get_list(worker, service_request_id=ten).status_code == 200
    limited = get_list(worker, service_request_id="NTB-GUESS-00097,NTB-GUESS-00098,NTB-GUESS-00099")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    # Another address has its own allowance.
    other = worker.open311_requests(request("GET", "/open311/v2/requests.json", remote_addr="198.51.100.20",
                                            query={"service_request_id": ten}), "json")
    assert other.status_code == 200


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_confidential_complaint_answers_exactly_like_an_unknown_code(intake, fmt):
    def lookup(code):
        return intake.open311_request(request("GET", f"/open311/v2/requests/{code}.{fmt}"), code, fmt)

    unknown = lookup("NTB-NOSUC-00009")
    assert unknown.status_code == 404
    for hidden in (LEVY["tracking_code"], MARKED["tracking_code"], "not-even-a-code"):
        answer = lookup(hidden)
        assert (answer.status_code, answer.get_data(), answer.content_type) == (
            unknown.status_code, unknown.get_data(), unknown.content_type)
    assert lookup(PLAIN["tracking_code"]).status_code == 200
    # In a lookup of several codes, a confidential one is absent just as an unknown one is.
    listed = get_list(intake, fmt, service_request_id=",".join(CODES + ["NTB-NOSUC-00009"]))
    assert listed.status_code == 200
    assert PLAIN["tracking_code"] in text_of(listed)
    assert LEVY["tracking_code"] not in text_of(listed) and MARKED["tracking_code"] not in text_of(listed)
