"""JSON text for the hot paths: orjson (C, several times quicker than the standard library's
``json`` at decoding event data and encoding facts), with the standard library as the fallback
for the few values orjson refuses and ``json`` accepts (numbers beyond 64 bits, lone surrogates,
``NaN``), so nothing that read or wrote before is refused now.

Text written here is compact (no blanks after ``,`` and ``:``) and UTF-8 (not ``\\u`` escapes);
what reads it back decodes JSON, so text written before (``json.dumps``'s blanks and escapes)
reads the same. Two differences from ``json`` remain, neither of which a stored event can meet
(its data passed the catalogue's schemas): an integer beyond 64 bits decodes as a float, and a
float that is not a number (``NaN``, which is not JSON) is written as ``null``."""
from __future__ import annotations

import json
from typing import Any

import orjson

_orjson_loads, _orjson_dumps = orjson.loads, orjson.dumps
# Types orjson would write but ``json`` refuses or writes otherwise (datetimes, dataclasses,
# subclasses of str, int, dict, list) go to the standard library, whose verdict stands.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_SORTED = orjson.OPT_SORT_KEYS | _PASSTHROUGH
# For ``encode``: subclasses of str, int, dict and list written as what they are (an event store's
# ``StoredEnvelope`` is a dict), as ``json`` writes them too.
_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_DecodeError = orjson.JSONDecodeError
_EncodeError = orjson.JSONEncodeError


def loads(text: str | bytes) -> Any:
    """``json.loads``, quicker."""
    try:
        return _orjson_loads(text)
    except _DecodeError:
        return json.loads(text)


def dumps_sorted(value: Any) -> str:
    """Compact JSON text of ``value`` with every object's keys sorted: equal values, equal text."""
    try:
        return _orjson_dumps(value, option=_SORTED).decode("utf-8")
    except _EncodeError:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``, keys in their order."""
    try:
        return _orjson_dumps(value, option=_PASSTHROUGH).decode("utf-8")
    except _EncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, for a message body: no text in between, and a subclass of dict
    (a ``StoredEnvelope``) or str written by orjson rather than sent to the standard library."""
    try:
        return _orjson_dumps(value, option=_PLAIN)
    except _EncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
