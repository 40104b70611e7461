"""The deployment files stay valid and in step with what `make run` runs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_binary() -> str:
    candidate = Path(sys.executable).parent / "docker-compose"
    return str(candidate) if candidate.exists() else shutil.which("docker-compose")


def test_compose_file_is_valid():
    result = subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_same_commands_as_make_run():
    rendered = subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "--profile", "dev",
                               "config", "--format", "json"], capture_output=True, text=True, cwd=ROOT, check=True)
    import json
    services = json.loads(rendered.stdout)["services"]
    procfile = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        name, _, command = line.partition(":")
        procfile[name.strip()] = command.split()[1:]  # drop the venv's python
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile
    for name, command in procfile.items():
        compose_name = "graph-sandbox" if name == "sandbox" else name
        assert ["-m"] + services[compose_name]["command"] == command, name
    for name in ("intake", "routing", "notification", "reporting"):
        assert "healthcheck" in services[name] and services[name]["restart"] == "unless-stopped"
    for name in ("rabbitmq", "postgres"):
        assert "healthcheck" in services[name]
