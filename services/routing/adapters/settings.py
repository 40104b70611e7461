"""Routing's own configuration from the environment (documented in docs/routing.md).

``ROUTING_TOKENS`` ("agency_code:token,agency_code:token") provisions the bearer tokens of the
agency API; ``ROUTING_SLA_SECONDS`` shortens clocks for tests and drills;
``ROUTING_SLA_CHECK_SECONDS`` [60] is how often the breach timer runs. The data files default to
the ones shipped in ``services/routing/data`` and can be pointed elsewhere, so a deployment edits
its directory, rules and holidays without touching code.
"""
from __future__ import annotations

from pathlib import Path

from shared.core.config import ConfigError, env, number, parse_pairs
from services.routing.domain import directory, rules, sla
def sla_check_seconds() -> float:
    return float(number("ROUTING_SLA_CHECK_SECONDS", "60", above=0))


def reopen_days() -> float:
    """``ROUTING_REOPEN_DAYS`` [14]: how long after its resolution a citizen's "belum" reopens a
    complaint (later it is refused with a clear reply)."""
    return float(number("ROUTING_REOPEN_DAYS", "14", at_least=0))


def sla_seconds() -> str | None:
    return env("ROUTING_SLA_SECONDS")


def agencies_file() -> Path:
    return Path(env("ROUTING_AGENCIES_FILE", str(directory.DEFAULT_PATH)))


def rules_file() -> Path:
    return Path(env("ROUTING_RULES_FILE", str(rules.DEFAULT_PATH)))


def holidays_file() -> Path:
    return Path(env("ROUTING_HOLIDAYS_FILE", str(sla.DEFAULT_HOLIDAYS_PATH)))


def parse_tokens(value: str | None) -> list[tuple[str, str]]:
    """``ROUTING_TOKENS`` as (agency code, token) pairs; an agency may have several tokens."""
    pairs = parse_pairs(value, "ROUTING_TOKENS", "agency_code:token,agency_code:token")
    for code, token in pairs:
        if len(token) < 8:
            raise ConfigError(f"ROUTING_TOKENS: the token of {code!r} is shorter than 8 characters")
    return pairs


def tokens() -> list[tuple[str, str]]:
    return parse_tokens(env("ROUTING_TOKENS"))
