"""``intake.file_complaint`` trusts its caller less (issue 16): outside systems reach it only
through the gateway, which names them in the RPC's nameko context data (``caller_system``).

* ``external_ref`` is unique per caller system: two systems may use the same reference, and one
  system's reference never answers with — or later swallows — another system's complaint;
* an outside caller may not file Meta's channels, ``reply_to`` or ``last_citizen_message_at``
  (the Page would message whatever PSID or comment it chose);
* intake records who filed the complaint, in its own table — not in the public event.

Driven through the real RPC (a ``ClusterRpcProxy`` that sets the context data, as the gateway's
proxy does) against one real intake process.
"""
from __future__ import annotations

import sqlite3
import uuid
from contextlib import contextmanager

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from shared.core.errors import ValidationFailed
from tests.support.platform import DEV_PAGE_ID, Platform

TEXT = "Bantuan sosial PKH di Desa Sukamulia tidak pernah sampai ke warga"


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("caller-trust"), services=("intake",),
                       with_sandbox=False).start_all()
    yield running
    running.stop_all()


@contextmanager
def rpc_as(platform, caller_system=None):
    """An RPC proxy calling as the gateway does for ``caller_system`` (None: an internal caller)."""
    context = {"caller_system": caller_system} if caller_system is not None else None
    with ClusterRpcProxy({"AMQP_URI": platform.amqp_uri, "serializer": "json"}, context_data=context,
                         timeout=30) as proxy:
        yield proxy


def file_as(platform, caller_system, **complaint):
    with rpc_as(platform, caller_system) as rpc:
        return rpc.intake.file_complaint({"text": TEXT, **complaint})


def filed_events(platform) -> list[dict]:
    with platform.rpc() as rpc:
        return [e for e in rpc.intake.events_since(0, 1000) if e["event_type"] == "ComplaintFiled"]


def complaint_row(platform, complaint_id) -> dict:
    connection = sqlite3.connect(f"file:{platform.data_dir / 'intake.db'}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return dict(connection.execute("select * from complaints where complaint_id = ?",
                                       (complaint_id,)).fetchone())
    finally:
        connection.close()


def test_the_same_external_ref_from_two_systems_files_two_complaints(platform):
    ref = f"REF-{uuid.uuid4().hex[:8]}"
    lapor = file_as(platform, "lapor-sp4n", external_ref=ref)
    other = file_as(platform, "sipp-ntb", external_ref=ref)
    internal = file_as(platform, None, external_ref=ref)
    # Three callers, three complaints: none answers with another's id and code.
    assert len({lapor["complaint_id"], other["complaint_id"], internal["complaint_id"]}) == 3
    assert len({lapor["tracking_code"], other["tracking_code"], internal["tracking_code"]}) == 3
    # Each caller's own reference stays idempotent.
    assert file_as(platform, "lapor-sp4n", external_ref=ref) == lapor
    assert file_as(platform, "sipp-ntb", external_ref=ref) == other
    assert file_as(platform, None, external_ref=ref) == internal
    assert len([e for e in filed_events(platform) if e["data"]["external_ref"] == ref]) == 3


@pytest.mark.parametrize("refused_field, complaint", [
    ("channel", {"channel": "facebook_messenger"}),
    ("channel", {"channel": "facebook_comment"}),
    ("channel", {"channel": "instagram_direct"}),
    ("reply_to", {"reply_to": {"page_id": DEV_PAGE_ID, "psid": "7000000000000777"}}),
    ("reply_to", {"channel": "api", "reply_to": {"page_id": DEV_PAGE_ID, "comment_id": "1_2", "post_id": "1"}}),
    ("last_citizen_message_at", {"last_citizen_message_at": "2026-11-30T01:00:00Z"}),
])
def test_outside_callers_may_not_reach_citizens_on_meta(platform, refused_field, complaint):
    before = len(filed_events(platform))
    with pytest.raises(ValidationFailed) as refused:
        file_as(platform, "lapor-sp4n", **complaint)
    assert refused_field in str(refused.value)
    assert len(filed_events(platform)) == before


def test_internal_callers_keep_their_messenger_conversations(platform):
    """The platform's own callers (no caller_system) may still hand over a Messenger conversation."""
    filed = file_as(platform, None, channel="facebook_messenger",
                    reply_to={"page_id": DEV_PAGE_ID, "psid": "7000000000000778"})
    assert complaint_row(platform, filed["complaint_id"])["caller_system"] == ""


def test_the_caller_system_is_recorded_by_intake_not_published(platform):
    filed = file_as(platform, "lapor-sp4n", external_ref=f"REF-{uuid.uuid4().hex[:8]}")
    assert complaint_row(platform, filed["complaint_id"])["caller_system"] == "lapor-sp4n"
    [event] = [e for e in filed_events(platform) if e["complaint_id"] == filed["complaint_id"]]
    assert "caller_system" not in event["data"] and "lapor-sp4n" not in str(event["data"])


@pytest.mark.parametrize("caller_system", ["LAPOR SP4N", "", {"name": "lapor-sp4n"}, "x" * 65])
def test_a_malformed_caller_system_is_refused(platform, caller_system):
    before = len(filed_events(platform))
    with pytest.raises(ValidationFailed):
        file_as(platform, caller_system)
    assert len(filed_events(platform)) == before
