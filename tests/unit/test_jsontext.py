"""``shared.core.jsontext``: orjson's speed, the standard library's verdicts."""
import json

import pytest

from shared.core import jsontext


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [1.5, None, True, "é", "😀"]}, [], {}, "teks", 0, -7, 0.1, 1e16,
    {"nested": {"z": [{"y": 1, "x": 2}]}},
])
def test_text_reads_back_as_the_same_value(value):
    for text in (jsontext.dumps(value), jsontext.dumps_sorted(value)):
        assert json.loads(text) == value
        assert jsontext.loads(text) == value


def test_sorted_text_is_the_same_for_equal_values_and_compact():
    assert jsontext.dumps_sorted({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
    assert jsontext.dumps_sorted({"a": {"c": 3, "d": 2}, "b": 1}) == '{"a":{"c":3,"d":2},"b":1}'
    assert jsontext.dumps({"b": 1, "a": "ü"}) == '{"b":1,"a":"ü"}'


def test_text_the_standard_library_wrote_reads_the_same():
    value = {"teks": "Jalan rusak ü", "n": [1, 2.5, None]}
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)):
        assert jsontext.loads(text) == value
    assert jsontext.loads(b'{"a": 1}') == {"a": 1}


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    # A lone surrogate: orjson refuses it both ways, the standard library takes it.
    assert jsontext.loads('{"s": "\\ud800"}') == {"s": "\ud800"}
    assert json.loads(jsontext.dumps_sorted({"s": "\ud800"})) == {"s": "\ud800"}
    assert json.loads(jsontext.dumps({"s": "\ud800"})) == {"s": "\ud800"}
    # NaN is not JSON; the standard library reads it, and so does this.
    assert jsontext.loads("NaN") != jsontext.loads("NaN")


def test_malformed_text_is_still_refused():
    for text in ("{", '{"a": }', "", "[1,]"):
        with pytest.raises(ValueError):
            jsontext.loads(text)


def test_what_the_standard_library_refuses_is_still_refused():
    import datetime
    import enum

    class Colour(str, enum.Enum):
        RED = "red"

    for dump in (jsontext.dumps, jsontext.dumps_sorted):
        with pytest.raises(TypeError):
            dump({"at": datetime.datetime(2026, 1, 1)})
        with pytest.raises(TypeError):
            dump({object(): 1})
        assert json.loads(dump({"c": Colour.RED, "n": 1})) == {"c": "red", "n": 1}
    assert json.loads(jsontext.dumps({1: "one"})) == {"1": "one"}  # as json.dumps writes it


def test_a_message_body_is_the_text_as_utf8_bytes_even_for_an_envelope_read_back_from_a_store():
    from unittest import mock

    from shared.core.events.envelope import StoredEnvelope
    envelope = StoredEnvelope({"event_id": "e1", "event_type": "ComplaintFiled", "position": 3,
                               "data": {"text": "Jalan rusak di Praya — é", "score": 1.5, "tags": [1, 2]}})
    body = jsontext.encode(envelope)
    assert body == json.dumps(dict(envelope), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with mock.patch.object(jsontext.json, "dumps", side_effect=AssertionError("the slow path")):
        jsontext.encode(envelope)   # a dict subclass is written by orjson, not the standard library
    assert jsontext.encode({"n": 2 ** 70}) == b'{"n":1180591620717411303424}'   # orjson refuses: json writes
