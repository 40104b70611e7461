"""What the fault suite checks after each fault, through the platform's own outputs: the services'
logs (``events_since`` over RPC), the Graph API sandbox's record of calls, the broker's
management API and — read-only — the services' databases (SQLite files, or PostgreSQL) for
their outboxes, checkpoints and pending work.

``Audit.problems()`` lists what is not settled yet (empty = settled); ``Audit.verdict()`` then
counts what the scenario reports: complaints sent, acknowledged, lost, duplicates."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from tests.support import infra
from tests.support.load import ComplaintStream
from tests.support.platform import wait_for

SOURCES_OF = {"intake": ("routing", "notification"), "routing": ("intake",),
              "notification": ("intake", "routing"), "reporting": ("intake", "routing", "notification")}
EMITTERS = ("intake", "routing", "notification")


def read_log(platform, service: str) -> list[dict]:
    events: list[dict] = []
    with platform.rpc(timeout=60) as rpc:
        while True:
            page = getattr(rpc, service).events_since(events[-1]["position"] if events else 0, 1000)
            events += page
            if len(page) < 1000:
                return events


def query(platform, service: str, sql: str, *args):
    """Read-only SQL on a service's database: its SQLite file, or its ``<SERVICE>_DATABASE_URL``
    (PostgreSQL; a connection per query, so a restarted server is no stale pool)."""
    url = platform.env.get(f"{service.upper()}_DATABASE_URL", "")
    if url.startswith("postgresql"):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.exec_driver_sql(sql.replace("?", "%s"), args)]
        finally:
            engine.dispose()
    path = Path(platform.data_dir) / f"{service}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as connection:
        return connection.execute(sql, args).fetchall()


def reporting_snapshot(platform) -> dict:
    generation = query(platform, "reporting", "SELECT generation FROM projection_state")[0][0]
    return {name: sorted(query(platform, "reporting", f"SELECT * FROM {name}_g{generation}"), key=repr)
            for name in ("facts", "complaints", "assignments", "answers")}


def _abandoned_reply_queue(name: str, consumers: int) -> bool:
    # A caller that gave up waiting (an RPC timeout while the callee was down) leaves its reply
    # queue behind with the late answer in it; nameko declares it with x-expires (5 minutes), so
    # the broker deletes it. Nothing waits for that message: it is not stuck work.
    return name.startswith("rpc.reply-") and consumers == 0


def queue_backlog(vhost: str) -> list[str]:
    """Queues holding messages, by the management API (its figures lag up to ~5 s)."""
    return [f"{q['name']}: ready={q.get('messages_ready')} unacked={q.get('messages_unacknowledged')}"
            for q in infra.queues(vhost)
            if (q.get("messages_ready", 0) or q.get("messages_unacknowledged", 0))
            and not _abandoned_reply_queue(q["name"], q.get("consumers", 0))]


def queue_backlog_now(vhost: str) -> list[str]:
    """The same from the broker itself (``rabbitmqctl list_queues``: exact at this moment), so
    the recovery time is not inflated by the management API's statistics interval. Without a
    local ``rabbitmqctl`` (a broker in a container) the management API's figures are used."""
    if shutil.which("rabbitmqctl") is None:
        return queue_backlog(vhost)
    listing = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", vhost, "--no-table-headers",
                              "name", "messages_ready", "messages_unacknowledged", "consumers"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    backlog = []
    for line in listing.splitlines():
        name, ready, unacked, consumers = line.rsplit(None, 3)
        if (int(ready) or int(unacked)) and not _abandoned_reply_queue(name, int(consumers)):
            backlog.append(f"{name}: ready={ready} unacked={unacked}")
    return backlog


class Audit:
    def __init__(self, platform, vhost: str, stream: ComplaintStream | None = None):
        self.platform = platform
        self.vhost = vhost
        self.stream = stream
        self.logs: dict[str, list[dict]] = {}
        self.settled_at: float | None = None
        self.trace: list[tuple[float, list[str]]] = []  # what was still unsettled, and when

    # -- reading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        self.logs = {service: read_log(self.platform, service) for service in EMITTERS}

    def events(self, service: str, event_type: str) -> list[dict]:
        return [e for e in self.logs[service] if e["event_type"] == event_type]

    def filed_by_psid(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for event in self.events("intake", "ComplaintFiled"):
            psid = (event["data"].get("reply_to") or {}).get("psid")
            if psid:
                found.setdefault(psid, []).append(event)
        return found

    def delivered_calls(self) -> list[dict]:
        return self.platform.sandbox_calls(status=200)

    # -- settling --------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is not finished yet; an empty list means everything settled."""
        problems: list[str] = []
        stream = self.stream
        if stream is not None:
            if not stream.all_acknowledged():
                problems.append("complaints not acknowledged yet")
            if not stream.answers_done():
                problems.append("agency answers not recorded yet")
        self.refresh()
        filed = self.events("intake", "ComplaintFiled")
        by_psid = self.filed_by_psid()
        if stream is not None:
            missing = [c.number for c in stream.complaints if c.acknowledged and c.psid not in by_psid]
            if missing:
                problems.append(f"acknowledged but not in intake's log: {missing[:10]}")
        routed = {e["complaint_id"] for e in self.events("routing", "ComplaintRouted")}
        unrouted = [e["complaint_id"] for e in filed if e["complaint_id"] not in routed]
        if unrouted:
            problems.append(f"{len(unrouted)} filed complaints not routed")
        notified = {e["data"]["trigger_event_id"] for e in self.events("notification", "CitizenNotified")}
        unnotified = [e["complaint_id"] for e in filed
                      if (e["data"].get("reply_to") or {}).get("psid") and e["event_id"] not in notified]
        if unnotified:
            problems.append(f"{len(unnotified)} citizens without their acknowledgment")
        if stream is not None:
            texts = {c["text"] for c in self.delivered_calls() if c.get("text")}
            unanswered = [c.number for c in stream.answered_subset()
                          if c.answer_step == "done" and not any(c.answer_text in t for t in texts)]
            if unanswered:
                problems.append(f"agency answers not at the sandbox: {unanswered[:10]}")
        pending = query(self.platform, "notification",
                        "SELECT count(*) FROM outgoing_messages WHERE state='pending'")[0][0]
        if pending:
            problems.append(f"{pending} outgoing messages pending")
        inbox = query(self.platform, "intake", "SELECT count(*) FROM webhook_inbox WHERE state='pending'")[0][0]
        if inbox:
            problems.append(f"{inbox} webhook bodies pending")
        for service in EMITTERS:
            outbox = query(self.platform, service, "SELECT count(*) FROM outbox")[0][0]
            if outbox:
                problems.append(f"{service}: {outbox} events not published")
        last = {service: (self.logs[service][-1]["position"] if self.logs[service] else 0) for service in EMITTERS}
        for consumer, sources in SOURCES_OF.items():
            checkpoints = dict(query(self.platform, consumer, "SELECT source, position FROM consumer_checkpoints"))
            for source in sources:
                if checkpoints.get(source, 0) < last[source]:
                    problems.append(f"{consumer} behind {source}: {checkpoints.get(source, 0)} < {last[source]}")
        backlog = queue_backlog_now(self.vhost)
        if backlog:
            problems.append(f"queues not empty: {backlog[:5]}")
        return problems

    def wait_settled(self, timeout: float) -> float:
        """Seconds until everything settled (the recovery time when called at a fault's end)."""
        started = time.monotonic()
        problems: list[str] = []
        while time.monotonic() - started < timeout:
            try:
                problems = self.problems()
            except Exception as error:  # a service may still be coming back
                problems = [f"{type(error).__name__}: {error}"]
            summary = sorted(p.split(":")[0] for p in problems)
            if not self.trace or self.trace[-1][1] != summary:
                self.trace.append((round(time.monotonic() - started, 1), summary))
            if not problems:
                self.settled_at = time.monotonic()
                return self.settled_at - started
            time.sleep(0.5)
        raise AssertionError(f"not settled after {timeout}s: {problems}")

    # -- verdict ---------------------------------------------------------------------------
    def duplicates(self) -> tuple[int, list[dict]]:
        """Messages Meta accepted that notification never recorded as sent (``CitizenNotified``
        with Meta's message id): the row stayed pending, so the message went out again — the
        documented crash window. Two different messages may share a text (a confidential
        complaint re-routed is told "forwarded" twice), so texts are not compared."""
        recorded = {e["data"].get("graph_message_id") for e in self.events("notification", "CitizenNotified")}
        unrecorded = [c for c in self.delivered_calls()
                      if (c.get("response") or {}).get("message_id", (c.get("response") or {}).get("id"))
                      not in recorded]
        return len(unrecorded), [{k: c.get(k) for k in ("seq", "at", "kind", "messaging_type")}
                                 for c in unrecorded]

    def verdict(self) -> dict:
        """Counts after settling; ``lost`` must be 0."""
        self.refresh()
        stream = self.stream
        by_psid = self.filed_by_psid()
        routed = {e["complaint_id"] for e in self.events("routing", "ComplaintRouted")}
        texts = {c["text"] for c in self.delivered_calls() if c.get("text")}
        lost, twice = [], []
        for complaint in (stream.complaints if stream else []):
            if not complaint.acknowledged:
                continue
            filed = by_psid.get(complaint.psid, [])
            if len(filed) > 1:
                twice.append(complaint.number)
            if not filed or filed[0]["complaint_id"] not in routed \
                    or (complaint.complaint_id and filed[0]["complaint_id"] != complaint.complaint_id):
                lost.append(complaint.number)
            if complaint.wants_answer and not any(complaint.answer_text in t for t in texts):
                lost.append(complaint.number)
        duplicates, _ = self.duplicates()
        figures = dict(stream.figures()) if stream else {}
        figures.update({"lost": len(lost), "lost_numbers": lost[:20], "filed_twice": len(twice),
                        "duplicates": duplicates,
                        "messages_delivered": len(self.delivered_calls()),
                        "messages_recorded": len(self.events("notification", "CitizenNotified")),
                        "graph_calls": len(self.platform.sandbox_calls()),
                        "quarantined": self.quarantined_counts(),
                        "handler_failures": self.handler_failure_counts()})
        return figures

    def quarantined_counts(self) -> dict[str, int]:
        with self.platform.rpc() as rpc:
            return {service: len(getattr(rpc, service).quarantined(1000)) for service in SOURCES_OF}

    def handler_failure_counts(self) -> dict[str, int]:
        return {service: query(self.platform, service, "SELECT count(*) FROM handler_failures")[0][0]
                for service in SOURCES_OF}

    def assert_quiet(self, seconds: float = 3.0) -> None:
        """Nothing loops: no log grows, no call goes out, no queue fills over a few seconds."""
        def sample():
            self.refresh()
            return ({s: len(self.logs[s]) for s in EMITTERS}, len(self.platform.sandbox_calls()),
                    self.quarantined_counts())
        before = sample()
        time.sleep(seconds)
        after = sample()
        assert after == before, f"still moving after settling: {before} -> {after}"
        # RPC queues are busy for an instant every catch-up tick (services pull each other's
        # logs): every queue must be empty at one moment, not at every moment.
        # Under a loaded machine one ``rabbitmqctl`` listing takes seconds, so the wait is long
        # enough for several, and the failure names what the last one saw.
        seen: list[list[str]] = []

        # An RPC queue with a call being served (unacknowledged, none waiting) is that instant.
        def empty_now():
            seen.append([q for q in queue_backlog_now(self.vhost)
                         if not (q.startswith("rpc-") and ": ready=0 " in q)])
            return not seen[-1]
        try:
            wait_for(empty_now, 30, interval=0.3, message="every queue empty at one moment")
        except AssertionError as error:
            raise AssertionError(f"{error}; the last listings: {seen[-3:]}") from None
        # The management API agrees about the consumers' event queues once its statistics caught
        # up (its figure for an RPC queue may still show the audit's own last call: an idle queue
        # does not always report again, so the exact check above is the broker's own).
        wait_for(lambda: not [q for q in queue_backlog(self.vhost) if q.startswith("evt-")], 15, interval=1,
                 message=f"management API showing every event queue empty: {queue_backlog(self.vhost)}")

    def assert_projection_equals_rebuild(self) -> dict:
        before = reporting_snapshot(self.platform)
        with self.platform.rpc(timeout=120) as rpc:
            result = rpc.reporting.rebuild()
        after = reporting_snapshot(self.platform)
        for name in before:
            if after[name] != before[name]:
                # The projection holds no personal data: the rows themselves say what differs.
                live_only = [row for row in before[name] if row not in after[name]][:3]
                rebuilt_only = [row for row in after[name] if row not in before[name]][:3]
                raise AssertionError(f"reporting's {name} differs from a fresh rebuild: live only "
                                     f"{live_only}; rebuilt only {rebuilt_only}")
        return result


def print_figures(scenario: str, figures: dict) -> None:
    print(f"\nFAULT-FIGURES {scenario} " + json.dumps(figures, sort_keys=True))
