"""Who is calling intake's RPC: the outside system the gateway names in the call's nameko
context data under ``caller_system`` (e.g. ``"lapor-sp4n"``). The platform's own services,
scripts and tests pass none. Only the gateway may set it — outside systems have no write on
``nameko-rpc`` — so intake trusts the value it finds and checks only its shape."""
from __future__ import annotations

from nameko.contextdata import ContextDataProvider

CALLER_SYSTEM_KEY = "caller_system"


class CallerSystem(ContextDataProvider):
    """Workers get the calling system's name, or None for an internal caller."""

    context_key = CALLER_SYSTEM_KEY
