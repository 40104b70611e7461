"""Text checks shared by every way text comes in (HTTP bodies, webhook bodies, RPC payloads)."""
from __future__ import annotations

import json
from typing import Any


def check_unicode(value: Any) -> None:
    """JSON may spell lone UTF-16 surrogates (``"\\ud800"``) that no UTF-8 database can store:
    refuse them at the door (``ValueError``) rather than fail later, half-way through a write."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("body holds text that is not valid Unicode (a lone surrogate)") from None
