"""The desk's correction end to end (issue 20, items 3 and 4), on real processes and the real
broker: a complaint filed with a wrong region goes to the wrong district by the rules; the desk
corrects the region over the agency API (an agency may not); routing records the correction and
re-routes to the right district by the rule that now applies; reporting reads the correction from
the events, and ``ntbcare classifier report`` (RPC to reporting) shows the region kept 0 of 1 and
the category kept 1 of 1."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from shared.core.events import parse_iso
from shared.core.reference import month_key
from tests.support.platform import ROOT, Platform, wait_for

DESK = "diskominfotik"
TOKENS = {DESK: "desk-secret-token-20", "pemkab-lobar": "lobar-secret-token-20"}
TEXT = "Jalan desa di Sengkol rusak berlubang, mohon segera diperbaiki"


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("corrections"),
                       services=("intake", "routing", "reporting"), with_sandbox=False, extra_env={
                           "ROUTING_TOKENS": ",".join(f"{code}:{token}" for code, token in TOKENS.items()),
                       }).start_all()
    yield running
    running.stop_all()


def api(platform, path, agency, body, actor=None):
    headers = {"Authorization": f"Bearer {TOKENS[agency]}"}
    if actor:
        headers["X-Actor"] = actor
    return requests.post(f"{platform.url('routing')}{path}", json=body, headers=headers, timeout=10)


def ntbcare(platform, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=platform.env,
                          capture_output=True, text=True, timeout=120, check=True)


def test_a_wrong_region_corrected_by_the_desk_reroutes_and_counts_against_the_classifier(platform):
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": TEXT, "channel": "api", "category": "infrastruktur",
                                           "location": {"region_code": "5201"}})
    cid = filed["complaint_id"]

    def routed():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(cid)
        return complaint if complaint["decided_by"] else None
    complaint = wait_for(routed, 30, message="routing of the filed complaint")
    assert (complaint["region_code"], complaint["lead_agencies"]) == ("5201", ["pemkab-lobar"])

    path = f"/api/complaints/{cid}/classification"
    body = {"region_code": "5202", "reason": "Desa Sengkol ada di Kecamatan Pujut, Lombok Tengah"}
    refused = api(platform, path, "pemkab-lobar", body)
    assert refused.status_code == 403
    corrected = api(platform, path, DESK, body, actor="Sari")
    assert corrected.status_code == 200, corrected.text
    view = corrected.json()
    assert view["recorded"] == ["ComplaintReclassified", "ComplaintRouted"]
    assert (view["region_code"], view["filed_region_code"], view["lead_agencies"]) == (
        "5202", "5201", ["pemkab-loteng"])

    with platform.rpc() as rpc:
        events = [e for e in rpc.routing.events_since(0, 1000) if e["complaint_id"] == cid]
    assert [e["event_type"] for e in events] == ["ComplaintRouted", "ComplaintReclassified", "ComplaintRouted"]
    correction, reroute = events[1]["data"], events[2]["data"]
    assert (correction["region_before"], correction["region_after"], correction["rerouted"]) == ("5201", "5202", True)
    assert correction["actor"].endswith("Sari")
    assert reroute["decided_by"] == "rule:jalan-kabupaten" and reroute["lead_agencies"] == ["pemkab-loteng"]
    assert reroute["lifecycle"]["lead_agencies"] == ["pemkab-loteng"]

    def reported():
        result = json.loads(ntbcare(platform, "classifier", "report", "--json").stdout)
        return result if result["reviewed"] == 1 else None
    result = wait_for(reported, 60, interval=1, message="reporting to read the correction")
    assert (result["category"]["kept"], result["category"]["reviewed"]) == (1, 1)
    assert (result["region"]["kept"], result["region"]["reviewed"]) == (0, 1)
    assert result["by_region"]["5201"]["corrected_to"] == {"5202": 1}
    text = ntbcare(platform, "classifier", "report").stdout
    assert "category kept 1 of 1" in text and "region kept 0 of 1" in text
    filing_month = month_key(parse_iso(view["filed_at"]))   # the filing month in WITA
    month = json.loads(ntbcare(platform, "classifier", "report", "--json", "--month", filing_month).stdout)
    assert (month["month"], month["region"]["kept"], month["region"]["reviewed"]) == (filing_month, 0, 1)
