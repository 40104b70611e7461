"""kombu's ``json`` serializer by orjson (``shared/glue/message_json.py``): what kombu's own
serializer would decode, it decodes the same; the Python types kombu writes as markers still
round-trip through kombu's own code; the wire format stays ``application/json`` in UTF-8."""
from __future__ import annotations

import datetime
import decimal
import json

import pytest
from kombu import serialization
from kombu.utils import json as kombu_json

from shared.glue import message_json

BODIES = [
    {"args": ["intake", 0, 1000], "kwargs": {}},
    {"result": [{"event_id": "e", "data": {"teks": "Jalan rusak ü", "n": [1, 2.5, None, True]}}], "error": None},
    [], {}, "teks", 7,
]


@pytest.mark.parametrize("body", BODIES)
def test_plain_bodies_round_trip_and_read_as_kombus(body):
    encoded = message_json.dumps(body)
    assert json.loads(encoded) == body
    assert message_json.loads(encoded) == body
    assert message_json.loads(kombu_json.dumps(body)) == body
    assert kombu_json.loads(encoded) == body


def test_kombus_marked_types_still_go_through_kombu():
    body = {"at": datetime.datetime(2026, 12, 1, 8, 30, tzinfo=datetime.timezone.utc),
            "day": datetime.date(2026, 12, 1), "amount": decimal.Decimal("1.50"), "raw": b"\x00\xff"}
    encoded = message_json.dumps(body)
    assert encoded == kombu_json.dumps(body)                 # kombu's own text, markers and all
    assert message_json.loads(encoded) == kombu_json.loads(encoded) == body


def test_malformed_text_is_refused_as_kombu_refuses_it():
    for text in (b"{", b'{"a": }', b""):
        with pytest.raises(ValueError):
            message_json.loads(text)


def test_installed_it_is_kombus_json_serializer_on_the_wire():
    message_json.install()
    try:
        content_type, encoding, data = serialization.dumps({"a": "ü"}, serializer="json")
        assert (content_type, encoding) == ("application/json", "utf-8")
        assert serialization.loads(data, content_type, encoding) == {"a": "ü"}
        assert json.loads(data) == {"a": "ü"}
    finally:
        serialization.register("json", kombu_json.dumps, kombu_json.loads,
                               content_type="application/json", content_encoding="utf-8")


def test_subclasses_are_written_as_json_writes_them_and_by_orjson():
    import enum

    from shared.core.events.envelope import StoredEnvelope

    class Colour(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    body = {"page": [StoredEnvelope(position=1, data={"a": Colour.RED, "n": Level.HIGH})]}
    encoded = message_json.dumps(body)
    assert isinstance(encoded, bytes)                        # orjson's, not the fallback's str
    assert json.loads(encoded) == json.loads(kombu_json.dumps(body)) == {
        "page": [{"position": 1, "data": {"a": "red", "n": 3}}]}
