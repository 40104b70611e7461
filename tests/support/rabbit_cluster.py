"""A three-node RabbitMQ cluster on loopback for the tests, started from the installed
``rabbitmq-server`` (no containers): each node has its own name (``ntbA@localhost`` …), AMQP,
distribution and management ports, and its own data, log and plugin files in a temporary
directory; all share one Erlang cookie (a ``.erlang.cookie`` in a temporary ``HOME``, used by the
nodes and by the ``rabbitmqctl`` calls made here). The machine's own node (``rabbit@localhost``,
port 5672) is never addressed: every ``rabbitmqctl`` call names its node with ``-n``.

``RabbitCluster(tmp).start()`` starts the nodes, joins B and C to A, and waits until the
management API lists three running nodes; ``stop_node``/``start_node`` stop and start one node's
whole Erlang VM (``Node.kill``: SIGKILL, what a machine failure looks like), ``close()`` kills
everything."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import requests

from tests.support.infra import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the wrapper in /usr/sbin switches to the rabbitmq user
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
AUTH = ("guest", "guest")


def available() -> bool:
    return os.path.exists(SERVER) and os.path.exists(CTL) and shutil.which("erl") is not None


class Node:
    def __init__(self, letter: str, base: Path, home: Path, host: str = "127.0.0.1",
                 amqp_port: int | None = None, management_port: int | None = None):
        self.name = f"ntb{letter}@localhost"
        self.base = base / letter
        self.home = home
        self.host = host
        self.amqp_port, self.dist_port = amqp_port or free_port(), free_port()
        self.management_port = management_port or free_port()
        self.process: subprocess.Popen | None = None
        (self.base / "log").mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {host}:{self.amqp_port}\n"
            f"management.tcp.ip = {host}\nmanagement.tcp.port = {self.management_port}\n"
            "log.console = false\nlog.file.level = warning\n")
        (self.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        (self.base / "conf.d").mkdir(exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
        env.update({
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self.base / "conf.d"),  # not the machine's /etc/rabbitmq/conf.d
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def amqp_uri(self, vhost: str = "/", user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@{self.host}:{self.amqp_port}/{quote(vhost, safe='')}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    def start(self) -> None:
        (self.base / "node.pid").unlink(missing_ok=True)  # a killed node's would mislead `wait`
        log = open(self.base / "log" / "console.log", "ab")
        self.process = subprocess.Popen([SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def ctl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([CTL, "-n", self.name, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {result.stdout}{result.stderr}"
                               f"\n{self.log_tail()}")
        return result

    def await_startup(self, timeout: float = 90) -> None:
        # `wait` first waits for the pid file (the VM may not be registered with epmd yet), then
        # for the broker application.
        self.ctl("wait", str(self.base / "node.pid"), "--timeout", str(int(timeout)), timeout=timeout + 10)

    def stop(self) -> None:
        """The whole VM, as when its machine goes down (``rabbitmqctl stop``, then the process)."""
        if self.process is None:
            return
        self.ctl("stop", timeout=60, check=False)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """Whatever is left of the node's process group (the script forks the Erlang VM)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, characters: int = 2000) -> str:
        texts = []
        for path in sorted((self.base / "log").glob("*.log")):
            texts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-characters:])
        return "\n".join(texts)


class RabbitCluster:
    def __init__(self, directory: Path, letters: str = "ABC"):
        self.directory = Path(directory)
        home = self.directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.nodes = [Node(letter, self.directory, home) for letter in letters]

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 120) -> "RabbitCluster":
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.await_startup(timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        self.wait_running(len(self.nodes), timeout)
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.kill()  # nothing to keep: the data directories are the test's temporary ones

    # -- one node down and back -------------------------------------------------------------
    def stop_node(self, node: Node) -> None:
        node.stop()

    def start_node(self, node: Node, timeout: float = 90) -> None:
        node.start()
        node.await_startup(timeout)

    # -- through the management API of any running node --------------------------------------
    def api(self, path: str, method: str = "GET", **kwargs):
        last: Exception | None = None
        for node in self.nodes:
            if not node.running:
                continue
            try:
                response = requests.request(method, f"{node.management_url}/api/{path}", auth=AUTH, timeout=10,
                                            **kwargs)
                response.raise_for_status()
                return response.json() if response.content else None
            except requests.RequestException as error:
                last = error
        raise RuntimeError(f"no node's management API answered {path}: {last}")

    def running_nodes(self) -> list[str]:
        return [node["name"] for node in self.api("nodes") if node.get("running")]

    def wait_running(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        running: list[str] = []
        while time.monotonic() < deadline:
            try:
                running = self.running_nodes()
                if len(running) >= count:
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{count} running nodes expected, {running} after {timeout}s")

    def create_vhost(self, vhost: str) -> None:
        self.api(f"vhosts/{quote(vhost, safe='')}", "PUT")
        self.api(f"permissions/{quote(vhost, safe='')}/guest", "PUT",
                 json={"configure": ".*", "write": ".*", "read": ".*"})

    def queues(self, vhost: str) -> list[dict]:
        return self.api(f"queues/{quote(vhost, safe='')}")

    def amqp_uri(self, vhost: str, user: str = "guest", password: str = "guest") -> str:
        """Every node's address, ``;``-separated (kombu's failover list, as ``AMQP_URI`` takes it)."""
        return ";".join(node.amqp_uri(vhost, user, password) for node in self.nodes)
