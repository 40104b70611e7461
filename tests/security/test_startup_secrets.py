"""Services refuse to start without their secrets outside development: the real process
(``python -m shared.runner <service>``, what ``make run`` and the containers run) exits with a
message naming the variable — and starts when ``NTBCARE_ENV=development``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.infra import free_port
from tests.support.platform import ROOT, Platform


def run(service: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("FACEBOOK_", "NTBCARE_", "ROUTING_", "INTAKE_"))}
    environment.update({"NTBCARE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
                        f"{service.upper()}_WEB_ADDRESS": f"127.0.0.1:{free_port()}"})
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "shared.runner", service], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [{}, {"NTBCARE_ENV": "production"}, {"FACEBOOK_APP_SECRET": ""},
                                 {"NTBCARE_ENV": "staging"}])
def test_intake_refuses_to_start_without_the_app_secret(tmp_path, env):
    finished = run("intake", env, tmp_path)
    assert finished.returncode == 3, finished.stderr
    assert "refusing to start" in finished.stderr and "FACEBOOK_APP_SECRET" in finished.stderr


def test_routing_refuses_to_start_without_the_console_secret(tmp_path):
    finished = run("routing", {"NTBCARE_ENV": "production"}, tmp_path)
    assert finished.returncode == 3, finished.stderr
    assert "ROUTING_CONSOLE_SECRET" in finished.stderr


def test_intake_refuses_a_malformed_rate_limit(tmp_path):
    finished = run("intake", {"FACEBOOK_APP_SECRET": "s", "INTAKE_WEB_RATE_PER_MINUTE": "lots"}, tmp_path)
    assert finished.returncode == 3 and "INTAKE_WEB_RATE_PER_MINUTE" in finished.stderr


def test_intake_starts_without_the_secret_in_development_and_refuses_every_webhook(amqp_uri, tmp_path):
    import requests
    from tests.support import facebook as fb

    platform = Platform(amqp_uri, tmp_path, services=("intake",), with_sandbox=False,
                        extra_env={"FACEBOOK_APP_SECRET": ""})
    platform.start_all()
    try:
        body = fb.page_body(fb.messaging_entry("100000000000001", fb.text_message(
            "100000000000001", fb.new_psid(), "Jalan rusak di Dompu")))
        raw = fb.json.dumps(body).encode()
        for header in (fb.signature(raw, ""), fb.signature(raw, fb.APP_SECRET), "sha256="):
            answer = requests.post(f"{platform.url('intake')}/webhooks/facebook", data=raw, timeout=10,
                                   headers={"X-Hub-Signature-256": header})
            assert answer.status_code == 403     # no secret: nothing can be verified, nothing passes
    finally:
        platform.stop_all()
