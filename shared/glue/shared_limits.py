"""The nameko side of the rate budgets every replica of a service shares
(``shared.core.shared_budget``): a provider handing workers a per-key limit of a public endpoint,
counted in the service's own database."""
from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from shared.core.shared_budget import shared_limiter_from_env
from shared.glue.providers import Storage, _find


def storage_database(provider: DependencyProvider) -> Any:
    """The database of the service ``provider`` is bound to; None for a provider a test built
    outside a container (its limit is then per process)."""
    if provider.container is None:
        return None
    return _find(provider.container, Storage).ensure().database


class SharedRateLimit(DependencyProvider):
    """A per-key token bucket for an unauthenticated public endpoint, shared by every replica of
    the service (and the process's workers), its rate from ``variable`` (per minute; 0: none).
    Workers get the limiter (``take``, ``peek``) or None."""

    def __init__(self, variable: str, default: str):
        self.variable = variable
        self.default = default

    def setup(self):
        self.limiter = shared_limiter_from_env(self.variable, self.default, storage_database(self))

    def get_dependency(self, worker_ctx):
        return self.limiter
