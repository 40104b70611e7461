"""Open311 GeoReport v2 on intake's web address, tested against the spec's field lists and with a
real Open311 client library (PyPI's ``georeport``), in JSON and XML: services, service
definitions, POST requests with an API key per client system, GET requests and GET request
answered from reporting (lists only with a key, without codes; confidential requests in no
answer), open/closed status following the design's mapping."""
from __future__ import annotations

import pytest
import requests
from georeport import GeoReport

from tests.support.platform import Platform, wait_for

SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}
API_KEY = "fixmystreet-test-key"


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("open311"), services=("intake", "routing", "reporting"),
                       with_sandbox=False,
                       extra_env={"OPEN311_API_KEYS": f"fixmystreet:{API_KEY},other:other-key",
                                  "OPEN311_RATE_PER_MINUTE": "600"}).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def base(platform):
    return f"{platform.url('intake')}/open311/v2"


def post_request(base, fmt="json", **fields):
    form = {"api_key": API_KEY, "service_code": "infrastruktur",
            "description": "Jembatan gantung di Desa Sembalun Bumbung putus, warga tidak bisa menyeberang.",
            "lat": "-8.35", "long": "116.53", "first_name": "Baiq", "last_name": "Nurul",
            "email": "baiq.nurul@example.org"}
    form.update(fields)
    return requests.post(f"{base}/requests.{fmt}", data=form, timeout=10)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_services_one_per_category_with_the_spec_fields(base, fmt):
    services = GeoReport(base, output_format=fmt).get_service_list()
    assert {s["service_code"] for s in services} == {
        "koperasi_umkm", "lingkungan_hidup", "infrastruktur", "pungli", "pelayanan_umum", "sosial", "kesehatan",
        "lainnya"}
    assert all(SERVICE_FIELDS <= set(s) for s in services)
    definition = GeoReport(base, output_format=fmt).get_service_definition("pungli")
    assert definition["service_code"] == "pungli"


def test_post_requires_a_valid_key_and_valid_input(base):
    assert post_request(base, api_key="wrong").status_code == 403
    refused = post_request(base, description="")
    assert refused.status_code == 400 and refused.json()[0]["code"] == 400
    assert post_request(base, service_code="not-a-category").status_code == 400
    assert requests.post(f"{base}/requests.json", data={"api_key": API_KEY, "description": "x" * 70000},
                         timeout=10).status_code == 413


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_request_lifecycle_through_a_real_client(platform, base, fmt):
    created = post_request(base, fmt=fmt)
    assert created.status_code == 201
    if fmt == "json":
        request_id = created.json()[0]["service_request_id"]
    else:
        import xmltodict
        request_id = xmltodict.parse(created.content)["service_requests"]["request"]["service_request_id"]
    client = GeoReport(base, output_format=fmt)

    def routed():
        found = client.get_service_request(request_id)
        return found if found.get("agency_responsible") else None
    found = wait_for(routed, 30, message="the request known to reporting and routed")
    assert REQUEST_FIELDS <= set(found)
    assert found["service_request_id"] == request_id and found["status"] == "open"
    assert found["service_code"] == "infrastruktur"
    assert found["requested_datetime"].endswith("Z") and found["expected_datetime"]
    assert not found.get("description")  # the citizen's own words are not published
    # A lookup by code needs no key; a list needs one and names no code (docs/intake.md, Open311).
    looked_up = client.get_service_requests(service_request_id=request_id, status="open")
    looked_up = looked_up if isinstance(looked_up, list) else [looked_up]
    assert [r["service_request_id"] for r in looked_up] == [request_id]
    assert requests.get(f"{base}/requests.{fmt}", params={"status": "open"}, timeout=10).status_code == 403
    listed = requests.get(f"{base}/requests.{fmt}", params={"status": "open", "api_key": API_KEY}, timeout=10)
    assert listed.status_code == 200 and request_id not in listed.text and "infrastruktur" in listed.text
    # The reporter's personal data never comes back.
    raw = requests.get(f"{base}/requests/{request_id}.{fmt}", timeout=10).text
    assert "Baiq" not in raw and "baiq.nurul@example.org" not in raw

    # Dismissed by the desk → closed, as the design maps ditolak.
    with platform.rpc() as rpc:
        complaint_id = rpc.routing.get_complaint(request_id)["complaint_id"]
        rpc.routing.dismiss(complaint_id, "Sudah ditangani lewat aduan lain.", "desk-officer")
    wait_for(lambda: client.get_service_request(request_id)["status"] == "closed", 30, message="closed")
    closed = client.get_service_requests(service_request_id=request_id, status="closed")
    closed = closed if isinstance(closed, list) else [closed]
    assert request_id in {r["service_request_id"] for r in closed}


def test_unknown_request_is_404(base):
    assert requests.get(f"{base}/requests/NTB-00000-00000.json", timeout=10).status_code == 404


def test_an_illegal_levy_report_is_in_no_open311_answer(platform, base):
    """Reporting's public status knows it (the citizen's code works there); Open311 answers its
    code as it answers an unknown one, and lists leave it out."""
    created = post_request(base, service_code="pungli",
                           description="Petugas loket meminta uang tambahan Rp50.000 untuk perpanjangan STNK.")
    code = created.json()[0]["service_request_id"]
    wait_for(lambda: requests.get(f"{platform.url('reporting')}/api/complaints/{code}", timeout=10).ok, 30,
             message="the levy report known to reporting")
    unknown = requests.get(f"{base}/requests/NTB-00000-00000.json", timeout=10)
    hidden = requests.get(f"{base}/requests/{code}.json", timeout=10)
    assert (hidden.status_code, hidden.content) == (unknown.status_code, unknown.content) == (404, unknown.content)
    assert requests.get(f"{base}/requests.json", params={"service_request_id": code}, timeout=10).json() == []
    listed = requests.get(f"{base}/requests.json", params={"api_key": API_KEY}, timeout=10).json()
    assert listed and all(r["service_code"] != "pungli" and r["service_request_id"] is None for r in listed)


def test_filing_goes_through_intake_with_the_open311_channel(platform, base):
    created = post_request(base, service_request_id="FMS-42")
    again = post_request(base, service_request_id="FMS-42")
    assert created.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]  # idempotent per client ref
    with platform.rpc() as rpc:
        events = [e for e in rpc.intake.events_since(0, 1000)
                  if e["data"].get("tracking_code") == created.json()[0]["service_request_id"]]
    assert len(events) == 1 and events[0]["data"]["channel"] == "open311"
    assert events[0]["data"]["external_ref"] == "open311:fixmystreet:FMS-42"


def test_status_answers_say_503_when_reporting_is_away(platform, base):
    platform.stop("reporting")
    try:
        response = requests.get(f"{base}/requests.json", params={"api_key": API_KEY}, timeout=30)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert requests.get(f"{base}/services.json", timeout=10).status_code == 200  # intake itself still answers
    finally:
        platform.start("reporting")
