"""Every event schema of the catalogue under arbitrary data: ``validate_data`` either accepts or
raises ``InvalidEvent`` with a reason — never another exception; the same holds for whole
envelopes (``validate_envelope``). And events generated to the design's table validate, survive a
JSON round trip unchanged and validate again as envelopes."""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from hypothesis import given, strategies as st
from marshmallow import fields

from shared.core.events import InvalidEvent, isoformat_utc, validate_data, validate_envelope
from shared.core.events.catalogue import (BREACHES, CATALOGUE, CATEGORIES, CHANNELS, FOLLOW_UP_VIA, LINK_REASONS,
                                     NOTIFY_CHANNELS, PRIORITIES, REOPEN_REFUSALS,
                                     REGION_CODES, SOURCES, event_types_of)
from shared.core.reference import PUBLIC_STATUSES
from tests.support.lifecycle import snapshot
from tests.fuzz.strategies import PURE, json_values

SCHEMAS = sorted(CATALOGUE)
PER_SCHEMA = PURE.__class__(PURE, max_examples=100)

iso_times = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(isoformat_utc)
texts = st.text(max_size=50)
agency_codes = st.sampled_from(["dpupr", "diskominfotik", "pemkab-loteng", "polda-ntb"])
reply_to = st.one_of(st.none(),
                     st.fixed_dictionaries({"page_id": st.just("100000000000001"), "psid": st.just("7000001")}),
                     st.fixed_dictionaries({"page_id": st.just("100000000000001"), "comment_id": st.just("1_2"),
                                            "post_id": st.one_of(st.none(), st.just("1"))}))
attachments = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["image", "file"]), "url": texts}), max_size=2)

VALID_DATA = {
    "ComplaintFiled": st.fixed_dictionaries({
        "tracking_code": st.text(min_size=4, max_size=32), "channel": st.sampled_from(CHANNELS),
        "filed_at": iso_times, "text": texts, "attachments": attachments,
        "category": st.sampled_from(CATEGORIES), "region_code": st.one_of(st.none(), st.sampled_from(REGION_CODES)),
        "priority": st.sampled_from(PRIORITIES),
        "reasons": st.fixed_dictionaries({k: st.lists(texts, max_size=2) for k in ("category", "region", "priority")}),
        "confidential": st.booleans(), "reply_to": reply_to,
        "last_citizen_message_at": st.one_of(st.none(), iso_times), "external_ref": st.one_of(st.none(), texts)}),
    "ComplaintAmended": st.fixed_dictionaries({
        "text": texts, "why": st.sampled_from(["more_messages", "comment_edited"]),
        "last_citizen_message_at": st.one_of(st.none(), iso_times)}),
    "CitizenMessageReceived": st.fixed_dictionaries({
        "text": texts, "attachments": attachments, "reply_to": reply_to, "message_at": iso_times}),
    "CitizenCommentRemoved": st.fixed_dictionaries({"comment_id": texts}),
    "StatusRequested": st.fixed_dictionaries({"tracking_code": texts, "reply_to": reply_to, "message_at": iso_times}),
    "CitizenReacted": st.fixed_dictionaries({
        "reaction": st.sampled_from(["like", "sticker", "heart"]),
        "sticker_id": st.one_of(st.none(), st.sampled_from(["369239263222822", "126361874215276"])),
        "message_at": iso_times}),
    "EvidenceStored": st.one_of(
        st.fixed_dictionaries({
            "media_id": st.uuids().map(str), "type": st.sampled_from(["image", "video", "audio", "file"]),
            "state": st.just("stored"), "digest": st.binary(min_size=1).map(lambda b: hashlib.sha256(b).hexdigest()),
            "content_type": st.sampled_from(["image/jpeg", "video/mp4", "application/pdf"]),
            "size": st.integers(1, 25 * 1024 * 1024), "reason": st.none()}),
        st.fixed_dictionaries({
            "media_id": st.uuids().map(str), "type": st.sampled_from(["image", "video"]), "state": st.just("lost"),
            "digest": st.none(), "content_type": st.none(), "size": st.none(), "reason": st.text(min_size=1)})),
    "ComplaintRouted": st.fixed_dictionaries({
        "lead_agencies": st.lists(agency_codes, min_size=1, max_size=2),
        "coordinating_agencies": st.lists(agency_codes, max_size=2),
        "decided_by": st.sampled_from(["rule:desk-fallback", "operator:diskominfotik:ani"]), "reason": texts,
        "priority": st.sampled_from(PRIORITIES),
        "due_at": st.dictionaries(st.sampled_from(BREACHES), iso_times, max_size=3)}),
    "ComplaintAcknowledged": st.fixed_dictionaries({"agency_code": agency_codes, "actor": texts}),
    "ComplaintRejectedByAgency": st.fixed_dictionaries({"agency_code": agency_codes,
                                                        "reason": st.text(min_size=1), "actor": texts}),
    "ComplaintResponded": st.fixed_dictionaries({"agency_code": agency_codes, "text": st.text(min_size=1),
                                                 "resolved": st.booleans(), "actor": texts}),
    "ComplaintResolved": st.fixed_dictionaries({"actor": texts}),
    "ComplaintEscalated": st.fixed_dictionaries({"breach": st.sampled_from(BREACHES), "due_at": iso_times,
                                                 "notified": st.lists(agency_codes, max_size=3)}),
    "ComplaintDismissed": st.fixed_dictionaries({"reason": st.text(min_size=1),
                                                 "duplicate_of": st.one_of(st.none(), texts), "actor": texts}),
    "CitizenNotified": st.fixed_dictionaries({
        "trigger_event_id": st.uuids().map(str), "channel": st.sampled_from(NOTIFY_CHANNELS),
        "messaging_type": st.one_of(st.none(), st.sampled_from(["RESPONSE", "MESSAGE_TAG"])),
        "tag": st.one_of(st.none(), st.just("HUMAN_AGENT")), "graph_message_id": st.one_of(st.none(), texts)},
        optional={"recipient_psid": st.one_of(st.none(), texts)}),
    "CitizenNotificationFailed": st.fixed_dictionaries({
        "trigger_event_id": st.uuids().map(str), "reason": texts,
        "code": st.one_of(st.none(), st.integers(-2 ** 31, 2 ** 31)), "permanent": st.booleans()}),
}


# Routing's events carry the complaint's lifecycle from v2 on; ComplaintAmended v2 says whether
# the new text reports a levy.
lifecycles = st.builds(lambda status, confidential: snapshot(status, confidential=confidential),
                       st.sampled_from(PUBLIC_STATUSES), st.booleans())


def _with(strategy, **extra):
    return st.tuples(strategy, st.fixed_dictionaries(extra)).map(lambda pair: {**pair[0], **pair[1]})


VALID_DATA_BY_VERSION = {(event_type, 1): strategy for event_type, strategy in VALID_DATA.items()}
VALID_DATA_BY_VERSION.update({
    (event_type, 2): _with(VALID_DATA[event_type], lifecycle=lifecycles)
    for event_type in event_types_of("routing") if (event_type, 2) in CATALOGUE})
VALID_DATA_BY_VERSION[("ComplaintAmended", 2)] = _with(VALID_DATA["ComplaintAmended"],
                                                       levy_reported=st.booleans())
VALID_DATA_BY_VERSION[("CitizenMessageReceived", 2)] = _with(VALID_DATA["CitizenMessageReceived"],
                                                             levy_reported=st.booleans())
# The citizen's loop and clusters (issue 19).
_optional_id = st.one_of(st.none(), st.uuids().map(str))
VALID_DATA_BY_VERSION[("CitizenAnsweredFollowUp", 1)] = st.one_of(
    st.fixed_dictionaries({
        "answer": st.sampled_from(["solved", "not_solved", "unclear_rating", "stale"]), "words": texts,
        "score": st.none(), "via": st.sampled_from(FOLLOW_UP_VIA), "tracking_code": texts, "reply_to": reply_to,
        "message_at": iso_times}),
    st.fixed_dictionaries({
        "answer": st.just("rating"), "words": texts, "score": st.integers(1, 5),
        "via": st.sampled_from(FOLLOW_UP_VIA), "tracking_code": texts, "reply_to": reply_to,
        "message_at": iso_times}))
VALID_DATA_BY_VERSION[("ComplaintReopened", 1)] = st.fixed_dictionaries({
    "words": texts, "actor": st.text(min_size=1), "reopen_count": st.integers(1, 5), "to_desk": st.booleans(),
    "due_at": st.dictionaries(st.sampled_from(BREACHES), iso_times, max_size=3), "answer_event_id": _optional_id,
    "lifecycle": lifecycles})
VALID_DATA_BY_VERSION[("ComplaintReopenRefused", 1)] = st.fixed_dictionaries({
    "reason": st.sampled_from(REOPEN_REFUSALS), "words": texts, "answer_event_id": _optional_id,
    "lifecycle": lifecycles})
VALID_DATA_BY_VERSION[("CitizenRated", 1)] = st.fixed_dictionaries({
    "score": st.integers(1, 5), "words": texts, "agencies": st.lists(agency_codes, max_size=3),
    "answer_event_id": _optional_id, "lifecycle": lifecycles})
VALID_DATA_BY_VERSION[("ComplaintLinked", 1)] = st.fixed_dictionaries({
    "primary_complaint_id": st.uuids().map(str), "primary_tracking_code": st.text(min_size=4, max_size=32),
    "reason": st.text(min_size=1), "actor": st.text(min_size=1),
    "because": st.lists(st.sampled_from(LINK_REASONS), max_size=3),
    "score": st.one_of(st.none(), st.floats(0, 1), st.integers(0, 1)), "lifecycle": lifecycles})
VALID_DATA_BY_VERSION[("ComplaintConfidentialityChanged", 1)] = st.fixed_dictionaries({
    "confidential": st.booleans(), "reason": st.text(min_size=1), "actor": st.text(min_size=1),
    "lifecycle": lifecycles})

# The desk's correction (issue 20).
_regions = st.one_of(st.none(), st.sampled_from(REGION_CODES))
VALID_DATA_BY_VERSION[("ComplaintReclassified", 1)] = st.fixed_dictionaries({
    "category_before": st.sampled_from(CATEGORIES), "category_after": st.sampled_from(CATEGORIES),
    "region_before": _regions, "region_after": _regions, "reason": st.text(min_size=1),
    "actor": st.text(min_size=1), "rerouted": st.booleans(), "lifecycle": lifecycles})


def field_names(event_type, version):
    return [name for name, field in CATALOGUE[(event_type, version)]._declared_fields.items()
            if isinstance(field, fields.Field)]


def test_every_schema_has_a_valid_data_strategy():
    assert set(SCHEMAS) == set(VALID_DATA_BY_VERSION)


def accept_or_invalid(event_type, version, data) -> bool:
    try:
        validate_data(event_type, version, data)
        return True
    except InvalidEvent as error:
        assert error.reason
        return False


@pytest.mark.parametrize("event_type, version", SCHEMAS)
def test_arbitrary_data_is_accepted_or_refused_with_a_reason(tried, event_type, version):
    names = field_names(event_type, version)
    required = [name for name, field in CATALOGUE[(event_type, version)]._declared_fields.items()
                if field.required]
    # Arbitrary JSON, and dicts with the schema's own field names holding arbitrary values.
    data = st.one_of(json_values, st.dictionaries(st.sampled_from(names) | st.text(max_size=8), json_values,
                                                  max_size=len(names) + 2))

    @PER_SCHEMA
    @given(data=data)
    def run(data):
        tried[f"event schema {event_type} v{version}: arbitrary data"] += 1
        if accept_or_invalid(event_type, version, data):
            # Accepted only when every field a consumer relies on is there.
            assert isinstance(data, dict) and all(name in data for name in required)

    run()


@pytest.mark.parametrize("event_type, version", SCHEMAS)
def test_valid_events_validate_and_round_trip(tried, event_type, version):
    @PER_SCHEMA
    @given(data=VALID_DATA_BY_VERSION[(event_type, version)], position=st.integers(min_value=1, max_value=2 ** 40),
           occurred=iso_times, mutate=st.one_of(st.none(), st.sampled_from(field_names(event_type, version))),
           junk=json_values)
    def run(data, position, occurred, mutate, junk):
        tried[f"event schema {event_type} v{version}: valid events (+ one field mutated)"] += 1
        assert accept_or_invalid(event_type, version, data), data
        envelope = {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": version,
                    "source": SOURCES[event_type], "position": position, "complaint_id": str(uuid.uuid4()),
                    "version": 1, "occurred_at": occurred, "data": data}
        travelled = json.loads(json.dumps(envelope, ensure_ascii=False))
        assert travelled == envelope
        validate_envelope(travelled, SOURCES[event_type])
        if mutate is not None:  # one required field replaced by anything: accepted or refused, never a crash
            accept_or_invalid(event_type, version, {**data, mutate: junk})
            try:
                validate_envelope({**envelope, "data": {**data, mutate: junk}})
            except InvalidEvent as error:
                assert error.reason

    run()


@PURE
@given(envelope=st.one_of(json_values, st.dictionaries(
    st.sampled_from(["event_id", "event_type", "schema_version", "source", "position", "complaint_id",
                     "version", "occurred_at", "data"]), json_values)))
def test_arbitrary_envelopes(tried, envelope):
    tried["event envelope: arbitrary"] += 1
    try:
        validate_envelope(envelope)
    except InvalidEvent as error:
        assert error.reason
