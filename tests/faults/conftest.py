"""The fault suite's platform: each test module (one per fault) gets the whole platform — intake,
routing, notification and reporting as separate processes, the Graph API sandbox, its own
RabbitMQ vhost and data directory — with short intervals, so recovery is measured in seconds.
A module may add settings in ``PLATFORM_ENV``. The figures of every scenario are summarised at
the end of the run."""
from __future__ import annotations

import pytest

from tests.faults.scenario import FAULT_ENV, FIGURES
from tests.support.platform import Platform


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory, request):
    env = dict(FAULT_ENV)
    env.update(getattr(request.module, "PLATFORM_ENV", {}))
    running = Platform(amqp_uri, tmp_path_factory.mktemp("faults"), extra_env=env).start_all()
    yield running
    running.stop_all()


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("fault suite: figures")
    columns = ("sent", "acknowledged", "lost", "duplicates", "refused_attempts", "recovery_seconds")
    terminalreporter.write_line(f"{'scenario':<28}" + "".join(f"{c:>18}" for c in columns))
    for name, figures in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name:<28}" + "".join(f"{figures.get(c, '-')!s:>18}" for c in columns))
