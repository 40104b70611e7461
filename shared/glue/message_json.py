"""The broker's JSON, quicker: kombu's ``json`` serializer (what nameko encodes every RPC call,
reply and event with) re-registered with orjson, the same ``application/json`` in UTF-8 on the
wire, so other systems see no difference.

kombu's own encoder writes a few Python types as markers (``{"__type__": "datetime",
"__value__": …}``: datetimes, dates, times, decimals, UUIDs, bytes, objects with ``__json__``) and
its decoder turns them back. Here orjson writes what is plain JSON (subclasses of str, int, dict
and list as their base type, as ``json`` does), and everything else — datetimes, dataclasses,
decimals, bytes, anything orjson refuses — goes to kombu's own encoder, whose output stands;
text carrying a ``"__type__"`` key is decoded by kombu's own decoder. One difference is left: a
``uuid.UUID`` object in a body would be written as its string (orjson knows UUIDs), where kombu
wrote a marker; the services put only strings there. Text is compact (no blanks after ``,`` and
``:``).

Why: the standard library's encoder was 43 % of a source service's time while a rebuild read its
log over RPC, and the decoder 16 % of reporting's (``docs/performance.md``, eighth round)."""
from __future__ import annotations

from typing import Any

import orjson
from kombu.serialization import register
from kombu.utils import json as kombu_json

# Subclasses of str, int, dict and list are written as their base type, as ``json`` writes them
# (the event stores hand out ``StoredEnvelope``, a dict); datetimes and dataclasses go to kombu.
_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_orjson_dumps, _orjson_loads = orjson.dumps, orjson.loads


def dumps(value: Any) -> bytes | str:
    try:
        return _orjson_dumps(value, option=_PLAIN)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return kombu_json.dumps(value)


def loads(data: bytes | str | bytearray | memoryview) -> Any:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    marker = b'"__type__"' if isinstance(data, bytes) else '"__type__"'
    if marker not in data:  # type: ignore[operator]
        try:
            return _orjson_loads(data)
        except orjson.JSONDecodeError:
            pass
    return kombu_json.loads(data)


def install() -> None:
    """Replaces kombu's ``json`` serializer in this process (idempotent)."""
    register("json", dumps, loads, content_type="application/json", content_encoding="utf-8")
