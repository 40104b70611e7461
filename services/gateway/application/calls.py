"""The gateway's one use case: answer an outside system's call — refuse it unless its proven
caller was granted the operation, otherwise make the internal RPC on the caller's behalf."""
from __future__ import annotations

import logging
from typing import Any, Callable

from services.gateway.domain.grants import Grants, IncomingCall, arguments

log = logging.getLogger("gateway")

#: ``rpc(operation, args, kwargs)``: the internal call, made with the caller's identity attached.
Rpc = Callable[[str, list[Any], dict[str, Any]], Any]


def answer(call: IncomingCall, grants: Grants, rpc: Rpc) -> Any:
    try:
        grants.check(call)
        args, kwargs = arguments(call.body)
    except Exception as refusal:
        # Who tried what, never the arguments (they may hold a reporter's contact details).
        log.warning("refused %s from %s: %s", call.operation, call.caller or "(no user_id)", refusal)
        raise
    return rpc(call.operation, args, kwargs)
