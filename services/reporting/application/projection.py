"""Keeping reporting's projection: its handler table (every event a projection keeps a fact of,
which is also its subscription list), whether the live path may write, and a rebuild from the
sources' logs. How the logs are read (RPC, or anything else) is the caller's ``fetch``."""
from __future__ import annotations

from typing import Optional

from shared.core.events import Envelope
from shared.core.handlers import EventHandlers, handles
from shared.core.store import ServiceStore
from services.reporting.adapters import repository
from services.reporting.domain.projections import KEPT_FIELDS


class ReportingHandlers(EventHandlers):
    """Every event a projection keeps a fact of: the types are ``KEPT_FIELDS``' keys."""

    @handles(*KEPT_FIELDS)
    def apply(self, tx, envelope: Envelope):
        repository.apply_event(tx, envelope.to_dict())


def live_path_open(store: ServiceStore) -> bool:
    """Whether catch-up may fill the live generation: not while it has another shape than the
    code's (the shape rebuild reads the logs itself, then sets the checkpoints)."""
    return repository.shape_is_current(store.database)


def rebuild(store: ServiceStore, fetch: repository.Fetch, progress: Optional[dict] = None,
            helper_reads: Optional[dict[str, str]] = None) -> dict:
    """A new generation from every source's log (``fetch(source, position, limit)``), switched to
    in one transaction with the consumer's checkpoints. ``helper_reads``: the logs a helper
    process may read beside it, and how (``rpc``)."""
    return repository.rebuild(store.database, fetch, store.checkpoints, store.processed, store.failures,
                              progress=progress, helper_reads=helper_reads)
