"""Retention: what a service keeps only for a while — processed webhook bodies (commenters'
names), dedupe keys, quarantine items already replayed — is pruned after its
``*_RETENTION_DAYS`` (0 = keep forever). What still has work to do (a pending webhook body, an
unresolved quarantine item) is never pruned.

Each service's store carries a list of ``RetentionRule``s (``ServiceStore.retention_rules``);
every store prunes its replayed quarantine items, intake adds its inbox and seen-items rules
(``services/intake/adapters/retention.py``). ``shared.glue.retention`` runs them on a timer.
Framework-free: rules get a ``Database`` and a cutoff, and delete in small batches, each its
own short transaction, so a first run over years of rows never holds a long write lock.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from shared.core import config
from shared.core.events import isoformat_utc, utc_now

if TYPE_CHECKING:
    from shared.core.db import Database
    from shared.core.quarantine import Quarantine

log = logging.getLogger(__name__)

BATCH_ROWS = 500
QUARANTINE_RETENTION_VARIABLE, QUARANTINE_RETENTION_DEFAULT = "NTBCARE_QUARANTINE_RETENTION_DAYS", "180"


def retention_days(variable: str, default: str) -> float:
    """Days from the environment; 0 keeps forever. A malformed or negative value is a ConfigError."""
    raw = config.env(variable, default)
    try:
        days = float(raw)
    except ValueError:
        raise config.ConfigError(f"{variable} must be a number of days (0 = keep forever), not {raw!r}") from None
    if days < 0:
        raise config.ConfigError(f"{variable} must be 0 (keep forever) or more days, not {raw!r}")
    return days


def check_interval_seconds() -> float:
    """``NTBCARE_RETENTION_CHECK_SECONDS`` [3600]: how often the retention rules run."""
    return float(config.env("NTBCARE_RETENTION_CHECK_SECONDS", "3600"))


@dataclass(frozen=True)
class RetentionRule:
    """Prune what is older than ``days_variable`` days: ``prune(database, cutoff_iso, batch)``
    removes (or blanks) at most ``batch`` rows in one transaction and returns how many."""

    name: str
    days_variable: str
    default_days: str
    prune: Callable[["Database", str, int], int]

    def days(self) -> float:
        return retention_days(self.days_variable, self.default_days)


def run_rules(database: "Database", rules: list[RetentionRule], now: datetime | None = None,
              pause: Callable[[], None] = lambda: None) -> dict[str, int]:
    """Apply every rule whose retention is not 0; returns rows pruned per rule. ``pause`` runs
    between batches, outside any transaction (the service's other green threads go on there)."""
    now = now or utc_now()
    pruned: dict[str, int] = {}
    for rule in rules:
        days = rule.days()
        if days == 0:
            continue
        cutoff = isoformat_utc(now - timedelta(days=days))
        total = 0
        while True:
            count = rule.prune(database, cutoff, BATCH_ROWS)
            total += count
            if count < BATCH_ROWS:
                break
            pause()
        pruned[rule.name] = total
    if any(pruned.values()):
        log.info("retention: pruned %s", pruned)
    return pruned


def quarantine_rule(quarantine: "Quarantine") -> RetentionRule:
    """Replayed quarantine items (their payload may be a webhook body with a commenter's name)
    go ``NTBCARE_QUARANTINE_RETENTION_DAYS`` [180] after their replay; unresolved ones stay."""

    def prune(database: "Database", cutoff: str, batch: int) -> int:
        with database.read() as connection:  # no write lock when there is nothing to prune
            ids = quarantine.replayed_before(connection, cutoff, batch)
        if ids:
            with database.transaction() as tx:
                quarantine.delete_replayed(tx.connection, ids, cutoff)
        return len(ids)

    return RetentionRule("quarantine_replayed", QUARANTINE_RETENTION_VARIABLE, QUARANTINE_RETENTION_DEFAULT, prune)
