"""Running the real platform for a bench part: every service its own process (the same
``python -m shared.runner`` as production) on a vhost and data directory of the run's own, the
Graph API sandbox watched for acknowledgments, and each service's memory sampled."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from datetime import datetime

import requests

from bench.common import WebhookLoad, log, percentiles, proc_status, temp_dir, vhost
from tests.support.infra import free_port
from tests.support.platform import DEV_PAGE_ID, ROOT, Platform, wait_for

ACK_MARK = "telah kami terima"   # the acknowledgment template (notification/templates/messages.yaml)

BENCH_ENV = {
    "NOTIFICATION_SEND_RATE": "0",          # the sandbox has no Meta cap
    "NTBCARE_CATCHUP_SECONDS": "10",
    "NTBCARE_OUTBOX_POLL_SECONDS": "1",
}


@contextlib.contextmanager
def running_platform(extra_env: dict | None = None, services=None, with_sandbox: bool = True):
    with vhost() as amqp_uri, temp_dir() as data_dir:
        env = dict(BENCH_ENV, **(extra_env or {}))
        kwargs = {"services": services} if services else {}
        platform = Platform(amqp_uri, data_dir, extra_env=env, with_sandbox=with_sandbox, **kwargs)
        try:
            platform.start_all(timeout=90)
            yield platform
        finally:
            platform.stop_all()


def start_second_instance(platform: Platform, service: str) -> str:
    """Another process of the same service: same database and queues, its own web port."""
    name = f"{service}-2"
    env = dict(platform.env)
    port = free_port()
    env[f"{service.upper()}_WEB_ADDRESS"] = f"127.0.0.1:{port}"
    log_file = open(platform.logs_dir / f"{name}.log", "ab")
    platform.processes[name] = subprocess.Popen([sys.executable, "-m", "shared.runner", service], cwd=ROOT,
                                                env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                                start_new_session=True)
    platform._wait_http(f"http://127.0.0.1:{port}/health", 90, name)
    return name


class SandboxWatcher:
    """Polls ``/_sandbox/calls?since_seq=`` and keeps, per PSID, each call's kind and time."""

    def __init__(self, sandbox_url: str, interval: float = 0.05):
        self.url = f"{sandbox_url}/_sandbox/calls"
        self.interval = interval
        self.seq = 0
        self.calls: dict[str, list[dict]] = {}
        self._seen = threading.Condition()   # notified after every poll that brought calls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SandboxWatcher":
        self.seq = max([c["seq"] for c in requests.get(self.url, timeout=30).json()["calls"]] or [0])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                calls = session.get(self.url, params={"since_seq": self.seq}, timeout=30).json()["calls"]
            except requests.RequestException:
                time.sleep(0.5)
                continue
            with self._seen:
                for call in calls:
                    self.seq = max(self.seq, call["seq"])
                    psid = (call.get("recipient") or {}).get("id")
                    if not psid:
                        continue
                    self.calls.setdefault(psid, []).append({
                        "seq": call["seq"], "status": call["status"],
                        "kind": "ack" if ACK_MARK in (call.get("text") or "") else "other",
                        "at": datetime.fromisoformat(call["at"].replace("Z", "+00:00")).timestamp()})
                if calls:
                    self._seen.notify_all()
            time.sleep(self.interval)

    def wait_acknowledged(self, psid: str, timeout: float) -> bool:
        """Block until the complaint of ``psid`` was acknowledged (True) or ``timeout`` passed."""
        deadline = time.time() + timeout
        with self._seen:
            while not self.acked([psid]):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._seen.wait(left)
        return True

    def acked(self, psids) -> int:
        return sum(1 for p in psids if any(c["kind"] == "ack" and c["status"] == 200 for c in self.calls.get(p, ())))

    def settled(self, psids) -> int:
        """Complaints whose acknowledgment AND routed message both arrived."""
        return sum(1 for p in psids if _kinds(self.calls.get(p, ())) >= {"ack", "other"})


def _kinds(calls) -> set:
    return {c["kind"] for c in calls if c["status"] == 200}


class RssSampler:
    """Samples VmRSS of every service process; VmHWM (the kernel's peak) is read at the end."""

    def __init__(self, platform: Platform, interval: float = 0.5):
        self.platform = platform
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            for name, process in list(self.platform.processes.items()):
                rss = proc_status(process.pid).get("VmRSS")
                if rss:
                    self.peak[name] = max(self.peak.get(name, 0), rss)
            time.sleep(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        out = {}
        for name, process in self.platform.processes.items():
            status = proc_status(process.pid)
            out[name] = {"peak_rss_mb_vmhwm": status.get("VmHWM"), "sampled_peak_rss_mb": self.peak.get(name),
                         "rss_mb_at_end": status.get("VmRSS")}
        return out


def wait_settled(watcher: SandboxWatcher, psids, timeout: float) -> float:
    """Wait until every complaint has both messages (or the timeout); returns seconds waited."""
    started = time.time()
    psids = list(psids)
    deadline = started + timeout
    while time.time() < deadline:
        if watcher.settled(psids) >= len(psids):
            break
        time.sleep(0.2)
    time.sleep(0.3)  # let the watcher see any duplicate that would follow
    return time.time() - started


def latency_report(load: WebhookLoad, watcher: SandboxWatcher, psids) -> dict:
    webhook, to_ack, to_routed = [], [], []
    lost, duplicated, unsolicited = 0, 0, 0
    for psid in psids:
        sent = load.sent[psid]
        if psid in load.answered:
            webhook.append(load.answered[psid])
        calls = [c for c in watcher.calls.get(psid, ()) if c["status"] == 200]
        acks = [c for c in calls if c["kind"] == "ack"]
        others = [c for c in calls if c["kind"] != "ack"]
        if psid not in load.answered:
            unsolicited += bool(acks)
            continue
        if not acks:
            lost += 1
            continue
        duplicated += len(acks) > 1
        to_ack.append(acks[0]["at"] - sent)
        if others:
            to_routed.append(others[0]["at"] - sent)
    accepted = len(load.answered.keys() & set(psids))
    return {
        "accepted_webhooks": accepted,
        "webhook_to_200_s": percentiles(webhook),
        "webhook_to_acknowledgment_s": percentiles(to_ack),
        "webhook_to_routed_message_s": percentiles(to_routed),
        "nothing_lost": {"accepted": accepted, "acknowledged_exactly_once": accepted - lost - duplicated,
                         "lost": lost, "duplicated": duplicated, "ack_without_accepted_webhook": unsolicited,
                         "ok": lost == 0 and duplicated == 0},
    }


def fixed_load(platform: Platform, watcher: SandboxWatcher, rate: float, seconds: float,
               drain_timeout: float = 30) -> dict:
    load = WebhookLoad(platform.url("intake"), DEV_PAGE_ID, sandbox_url=platform.sandbox_url)
    log(f"  offered {rate}/s for {seconds}s")
    load_average = list(os.getloadavg())   # how busy the machine was as this load started
    offered = load.fixed_rate(rate, seconds)
    psids = list(load.sent)
    waited = wait_settled(watcher, [p for p in psids if p in load.answered], drain_timeout)
    report = {**offered, "failures": load.failures, "drain_wait_s": round(waited, 1),
              "load_average_1_5_15_at_start": load_average, **latency_report(load, watcher, psids)}
    log(f"    200 p99 {report['webhook_to_200_s']['p99']}s; ack p50/p95/p99 "
        f"{report['webhook_to_acknowledgment_s']['p50']}/{report['webhook_to_acknowledgment_s']['p95']}/"
        f"{report['webhook_to_acknowledgment_s']['p99']}s; lost {report['nothing_lost']['lost']}")
    return report


def saturation(platform: Platform, watcher: SandboxWatcher, seconds: float, concurrency: int = 64,
               drain_timeout: float = 60) -> dict:
    """Closed-loop senders for ``seconds``, each sending its next complaint once the previous one
    was acknowledged (intake answers Meta before it processes: a loop closed on the 200 would
    measure the front door while the work piled up behind it); then the backlog drains.
    Sustained rate = complaints with both messages delivered / (last delivery − first send)."""
    load = WebhookLoad(platform.url("intake"), DEV_PAGE_ID, sandbox_url=platform.sandbox_url)
    log(f"  saturation: {concurrency} senders for {seconds}s, each waiting for its acknowledgment")
    load_average = list(os.getloadavg())
    started = time.time()
    shape = load.saturate(seconds, concurrency, wait_acknowledged=watcher.wait_acknowledged)
    sending_ended = time.time()
    psids = list(load.sent)
    accepted = [p for p in psids if p in load.answered]
    acked_during_load = watcher.acked(accepted)
    waited = wait_settled(watcher, accepted, drain_timeout)
    ack_times = [c["at"] for p in accepted for c in watcher.calls.get(p, ())
                 if c["kind"] == "ack" and c["status"] == 200]
    settle_times = [max(c["at"] for c in watcher.calls[p] if c["status"] == 200)
                    for p in accepted if _kinds(watcher.calls.get(p, ())) >= {"ack", "other"}]
    last = max(settle_times) if settle_times else time.time()
    report = {
        **shape, "failures": load.failures, "load_average_1_5_15_at_start": load_average,
        "accepted_webhooks_per_s": round(len(accepted) / (sending_ended - started), 1),
        "acknowledged_during_load": acked_during_load,
        "acknowledged_per_s_during_load": round(acked_during_load / (sending_ended - started), 1),
        "complaints_settled": len(settle_times),
        "sustained_complaints_per_s": round(len(settle_times) / max(0.001, last - started), 1),
        "acks_per_s_incl_drain": round(
            len(ack_times) / max(0.001, (max(ack_times) if ack_times else last) - started), 1),
        "drain_wait_s": round(waited, 1),
        **latency_report(load, watcher, psids),
    }
    log(f"    accepted {report['accepted_webhooks_per_s']}/s, sustained {report['sustained_complaints_per_s']} "
        f"complaints/s, lost {report['nothing_lost']['lost']}, dup {report['nothing_lost']['duplicated']}")
    return report


def warm_up(platform: Platform, watcher: SandboxWatcher, count: int = 20) -> None:
    load = WebhookLoad(platform.url("intake"), DEV_PAGE_ID, sandbox_url=platform.sandbox_url)
    load.fixed_rate(20, count / 20, senders=4)
    wait_for(lambda: watcher.settled([p for p in load.sent if p in load.answered]) >= len(load.answered),
             timeout=60, message="warm-up acknowledgments")
