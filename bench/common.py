"""What every bench part shares: the machine's description, result files, percentiles, a
RabbitMQ vhost and data directory of the run's own, a webhook load generator, and RSS probes."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform as py_platform
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import requests

from sandbox.control import meta_saw
from tests.support import facebook, infra

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    info = {"nproc": os.cpu_count(), "ram_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "kernel": py_platform.release(), "python": py_platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            # Other work on the machine skews every figure: say how busy it was.
            "load_average_1_5_15": list(os.getloadavg())}
    with contextlib.suppress(Exception):
        overview = requests.get(f"{infra.RABBIT_MANAGEMENT}/api/overview", auth=infra.RABBIT_AUTH, timeout=5).json()
        info["rabbitmq"] = overview.get("rabbitmq_version")
        info["erlang"] = overview.get("erlang_version")
    with contextlib.suppress(Exception):
        from sqlalchemy import create_engine, text
        engine = create_engine(infra.POSTGRES_ADMIN_URL)
        with engine.connect() as connection:
            info["postgresql"] = connection.execute(text("SHOW server_version")).scalar()
        engine.dispose()
    return info


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"part": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), **result}
    path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    print(f"  -> {path.relative_to(RESULTS.parent.parent)}")
    return path


def percentiles(values, points=(50, 95, 99)) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {f"p{p}": None for p in points} | {"max": None, "n": 0}
    out = {}
    for p in points:
        index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        out[f"p{p}"] = round(ordered[index], 4)
    out["max"] = round(ordered[-1], 4)
    out["n"] = len(ordered)
    return out


@contextlib.contextmanager
def vhost():
    name = f"ntbcare-bench-{uuid.uuid4().hex[:8]}"
    infra.create_vhost(name)
    try:
        yield infra.amqp_uri(name)
    finally:
        with contextlib.suppress(requests.RequestException):
            infra.delete_vhost(name)


@contextlib.contextmanager
def temp_dir(prefix="ntbcare-bench-"):
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


# -- memory ------------------------------------------------------------------------------------
def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


# -- webhook load --------------------------------------------------------------------------------
class WebhookLoad:
    """Posts signed Messenger webhooks (one new PSID each, so each files a complaint) to intake,
    either at a fixed offered rate (open loop: a send is due every 1/rate s whether or not the
    previous answer came) or at saturation (closed loop, ``concurrency`` senders back to back).

    Latency is measured from the moment the request was due, so a generator that falls behind
    shows up as latency rather than as a lower offered load (no coordinated omission).

    With ``sandbox_url`` the Graph API sandbox is told, before the clock starts, which PSIDs
    wrote to the Page (as Meta knows because it delivered their webhooks): it refuses to answer
    a PSID that never wrote. The measured path stays the plain signed POST to intake."""

    REGISTER_BATCH = 500  # PSIDs per webhook body shown to the sandbox

    def __init__(self, intake_url: str, page_id: str, app_secret: str = facebook.APP_SECRET,
                 sandbox_url: str | None = None):
        self.host, _, port = intake_url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.page_id = page_id
        self.app_secret = app_secret
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}        # psid -> wall time the request was due
        self.answered: dict[str, float] = {}    # psid -> seconds to the 200
        self.failures: dict[str, int] = {}
        self.sandbox_url = sandbox_url
        self._ready: list[str] = []             # PSIDs the sandbox already knows wrote

    def prepare(self, count: int) -> None:
        """Make ``count`` new PSIDs and, with a sandbox, tell it they wrote to the Page: one
        webhook body of up to REGISTER_BATCH messages per call to ``/_sandbox/webhooks``."""
        psids = [_psid() for _ in range(count)]
        self._register(psids)
        with self.lock:
            self._ready.extend(psids)

    def _register(self, psids: list[str]) -> None:
        if not self.sandbox_url:
            return
        for i in range(0, len(psids), self.REGISTER_BATCH):
            batch = psids[i:i + self.REGISTER_BATCH]
            body = facebook.page_body(facebook.messaging_entry(self.page_id, *(
                facebook.text_message(self.page_id, psid, "bench") for psid in batch)))
            learned = meta_saw(self.sandbox_url, body)
            if learned.get("conversations") != len(batch):
                raise RuntimeError(f"the sandbox learned {learned} from {len(batch)} messages")

    def _next_psid(self) -> str:
        """A prepared PSID; when they run out, a new one registered now (the caller takes its
        clock after this, so the registration is not measured)."""
        with self.lock:
            if self._ready:
                return self._ready.pop()
        psid = _psid()
        self._register([psid])
        return psid

    def _body(self, psid: str) -> bytes:
        body = facebook.page_body(facebook.messaging_entry(self.page_id, facebook.text_message(
            self.page_id, psid, "Jalan di Desa Kuripan Lombok Barat rusak parah, banyak lubang besar, "
                                "mohon segera diperbaiki sebelum musim hujan.")))
        return json.dumps(body, separators=(",", ":")).encode()

    def _send(self, connection_holder: list, psid: str, due: float) -> None:
        raw = self._body(psid)
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": facebook.signature(raw, self.app_secret)}
        with self.lock:
            self.sent[psid] = due
        for attempt in range(2):
            try:
                if connection_holder[0] is None:
                    connection_holder[0] = http.client.HTTPConnection(self.host, self.port, timeout=30)
                connection = connection_holder[0]
                connection.request("POST", "/webhooks/facebook", body=raw, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                break
            except (OSError, http.client.HTTPException) as error:
                connection_holder[0] = None
                status = type(error).__name__
                if attempt:
                    break
        elapsed = time.time() - due
        with self.lock:
            if status == 200:
                self.answered[psid] = elapsed
            else:
                self.failures[str(status)] = self.failures.get(str(status), 0) + 1

    def fixed_rate(self, rate: float, seconds: float, senders: int = 24) -> dict:
        """Offer ``rate`` webhooks/s for ``seconds``; returns what was offered and accepted."""
        total = int(rate * seconds)
        self.prepare(total)
        start = time.time() + 0.2
        next_index = iter(range(total))
        index_lock = threading.Lock()

        def sender():
            holder = [None]
            while True:
                with index_lock:
                    index = next(next_index, None)
                if index is None:
                    return
                due = start + index / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                self._send(holder, self._next_psid(), due)

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
        return {"offered_rate": rate, "seconds": seconds, "offered": total}

    def saturate(self, seconds: float, concurrency: int = 16, prepared_per_s: int = 500,
                 wait_acknowledged: Callable[[str, float], bool] | None = None) -> dict:
        """Closed loop for ``seconds``; ``prepared_per_s`` × ``seconds`` PSIDs are registered
        with the sandbox before the clock starts (beyond that, each is registered just before
        its send, outside the measured time but in the sender's loop). With
        ``wait_acknowledged(psid, timeout)`` a sender sends its next complaint only once the
        previous one was acknowledged (or 60 s passed): at most ``concurrency`` complaints between
        Meta's webhook and the acknowledgment, so the loop measures complaints carried end to
        end — not how fast the front door answers while work piles up behind it."""
        self.prepare(int(prepared_per_s * seconds))
        stop_at = time.time() + seconds

        def sender():
            holder = [None]
            while time.time() < stop_at:
                psid = self._next_psid()
                self._send(holder, psid, time.time())
                if wait_acknowledged is not None and psid in self.answered:
                    wait_acknowledged(psid, 60)

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
        started = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
        return {"concurrency": concurrency, "seconds": round(time.time() - started, 2)}


_psid_counter = iter(range(1, 10**9))


def _psid() -> str:
    return str(8_000_000_000_000_000 + uuid.uuid4().int % 10**12 * 1000 + next(_psid_counter) % 1000)
