"""A steady stream of complaints and agency answers for the fault suite, driven from the test
process the way the outside world drives the platform:

* complaints alternate between Meta's signed webhook (one Messenger message, its own PSID) and
  ``intake.file_complaint`` over RPC (a Messenger ``reply_to`` with its own PSID and an
  ``external_ref``);
* a delivery that was not acknowledged (HTTP status other than 200, a refused connection, an RPC
  error or timeout) is retried with the *same* body or ``external_ref`` until it is — as Meta
  retries webhooks and a well-behaved integrating system retries its calls;
* for a share of the RPC complaints an agency answers (``routing.assign`` → ``acknowledge`` →
  ``respond`` with a unique text); an answer whose ``respond`` call failed is retried only after
  routing's timeline shows it was not recorded (``respond`` is not idempotent).

What was acknowledged, and how many attempts were refused, is kept per complaint for the audit
(``tests.support.audit``). The stream runs in plain threads of the test process.
"""
from __future__ import annotations

import itertools
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import requests
from nameko.standalone.rpc import ClusterRpcProxy

from shared.core.errors import IllegalAction, NotFound
from tests.support import facebook
from tests.support.platform import DEV_PAGE_ID

TEXTS = (
    "Jalan provinsi di Desa Kuripan Lombok Barat rusak parah dan berlubang, mohon diperbaiki.",
    "Sampah menumpuk di pasar Cakranegara Mataram sudah seminggu tidak diangkut.",
    "Air PDAM di Selong Lombok Timur mati tiga hari berturut-turut.",
    "Pelayanan KTP di kantor Disdukcapil Kota Bima sangat lambat.",
    "Ada pungutan liar saat mengurus izin usaha di kecamatan Praya Lombok Tengah.",
    "Puskesmas di Dompu kekurangan obat untuk pasien anak.",
    "Koperasi simpan pinjam di Sumbawa tidak mengembalikan simpanan anggota.",
    "Lampu jalan di Jalan Udayana Mataram mati sudah dua minggu.",
)
ANSWER_AGENCY = "dpupr"


def call_with_deadline(function, seconds: float):
    """Run ``function`` in a daemon thread and give up waiting after ``seconds``: a nameko
    standalone proxy can hang while the broker restarts, and one hung call must not stall the
    stream. Returns (thread, value); raises the call's error, or TimeoutError."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller
            outcome["error"] = error
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise CallStillRunning(thread)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class CallStillRunning(TimeoutError):
    def __init__(self, thread: threading.Thread):
        super().__init__("no answer in time; the call is still running")
        self.thread = thread


@dataclass
class Complaint:
    """One complaint the stream sends, and what the platform answered."""

    number: int
    channel: str                      # webhook | rpc
    psid: str
    text: str
    mid: str | None = None            # webhook: Meta's message id
    body: dict | None = None          # webhook: the exact body, resent as is on a retry
    external_ref: str | None = None   # rpc
    wants_answer: bool = False
    attempts: int = 0
    refused: int = 0                  # attempts not acknowledged (5xx, refused, RPC error, timeout)
    statuses: list = field(default_factory=list)
    acknowledged_at: float | None = None
    complaint_id: str | None = None   # rpc: what file_complaint returned
    extra_deliveries: int = 0         # duplicates sent on purpose (webhook, after the 200)
    answer_text: str | None = None
    answer_step: str = "assign"       # assign | acknowledge | respond | check | done
    answer_attempts: int = 0
    answer_call: threading.Thread | None = None  # an answer call given up on but still running

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None


class ComplaintStream:
    def __init__(self, platform, rate: float = 6.0, answer_share: float = 0.5, rpc_timeout: float = 8.0,
                 page_id: str = DEV_PAGE_ID, duplicate_webhooks: bool = False, workers: int = 8,
                 seed: int = 7, http_timeout: float = 10.0):
        self.platform = platform
        self.rate = rate
        self.answer_share = answer_share
        self.rpc_timeout = rpc_timeout
        self.http_timeout = http_timeout
        self.page_id = page_id
        self.duplicate_webhooks = duplicate_webhooks
        self.random = random.Random(seed)
        self.complaints: list[Complaint] = []
        self._work: queue.Queue = queue.Queue()
        self._retry: list[tuple[float, Complaint]] = []
        self._answers: list[Complaint] = []
        self._lock = threading.Lock()
        self._producing = False
        self._running = False
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        self._workers = workers
        self.run_id = uuid.uuid4().hex[:6]

    # -- control -------------------------------------------------------------------------
    def start(self) -> "ComplaintStream":
        self._running = self._producing = True
        targets = [self._produce, self._retrier, self._answerer] + [self._worker] * self._workers
        for target in targets:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop_producing(self) -> None:
        self._producing = False

    def drain(self, timeout: float) -> None:
        """Keep retrying until every complaint is acknowledged and every answer recorded."""
        self.stop_producing()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_acknowledged() and self.answers_done():
                return
            time.sleep(0.2)
        missing = [c.number for c in self.complaints if not c.acknowledged]
        answers = [(c.number, c.answer_step) for c in self.answered_subset() if c.answer_step != "done"]
        raise AssertionError(f"after {timeout}s still unacknowledged: {missing[:20]}; answers pending: {answers[:20]}")

    def close(self) -> None:
        self._running = self._producing = False
        for _ in range(self._workers):
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=15)

    # -- state ---------------------------------------------------------------------------
    def all_acknowledged(self) -> bool:
        with self._lock:
            return all(c.acknowledged for c in self.complaints)

    def answered_subset(self) -> list[Complaint]:
        return [c for c in self.complaints if c.wants_answer]

    def answers_done(self) -> bool:
        return all(c.answer_step == "done" for c in self.answered_subset())

    def figures(self) -> dict:
        complaints = list(self.complaints)
        return {
            "sent": len(complaints),
            "webhook": sum(c.channel == "webhook" for c in complaints),
            "rpc": sum(c.channel == "rpc" for c in complaints),
            "acknowledged": sum(c.acknowledged for c in complaints),
            "refused_attempts": sum(c.refused for c in complaints),
            "duplicate_deliveries_sent": sum(c.extra_deliveries for c in complaints),
            "answers": sum(c.answer_step == "done" for c in self.answered_subset()),
        }

    # -- producing -----------------------------------------------------------------------
    def new_complaint(self, channel: str) -> Complaint:
        number = next(self._numbers)
        psid = facebook.new_psid()
        text = f"{self.random.choice(TEXTS)} (aduan {self.run_id}-{number})"
        complaint = Complaint(number=number, channel=channel, psid=psid, text=text)
        if channel == "webhook":
            complaint.mid = facebook.new_mid()
            complaint.body = facebook.page_body(facebook.messaging_entry(
                self.page_id, facebook.text_message(self.page_id, psid, text, mid=complaint.mid)))
        else:
            complaint.external_ref = f"fault-{self.run_id}-{number}"
            complaint.wants_answer = self.random.random() < self.answer_share
            if complaint.wants_answer:
                complaint.answer_text = f"Sudah kami tindak lanjuti, nomor jawaban {self.run_id}-{number}."
        self._citizen_wrote(complaint)
        with self._lock:
            self.complaints.append(complaint)
        return complaint

    def _citizen_wrote(self, complaint: Complaint) -> None:
        """Each complaint stands for a person who wrote to the Page: the Graph API sandbox,
        like Meta, answers only people who did, so it learns of the message (the webhook body
        itself, or the conversation behind an RPC filing)."""
        if not getattr(self.platform, "sandbox_port", None):
            return
        if complaint.channel == "webhook":
            path, payload = "webhooks", complaint.body
        else:
            path, payload = "conversations", {"page_id": self.page_id, "psid": complaint.psid}
        requests.post(f"{self.platform.sandbox_url}/_sandbox/{path}", json=payload,
                      timeout=10).raise_for_status()

    def _produce(self):
        channels = itertools.cycle(("webhook", "rpc"))
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while self._producing:
            self._work.put(self.new_complaint(next(channels)))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _worker(self):
        while self._running:
            complaint = self._work.get()
            if complaint is None:
                return
            if complaint.acknowledged and complaint.channel == "webhook":
                self._deliver_webhook(complaint)  # a duplicate on purpose, as Meta sometimes does
                continue
            ok = self._deliver_webhook(complaint) if complaint.channel == "webhook" else self._file_rpc(complaint)
            if ok:
                continue
            complaint.refused += 1
            delay = min(0.25 * 2 ** min(complaint.refused, 3), 2.0)
            with self._lock:
                self._retry.append((time.monotonic() + delay, complaint))

    def _retrier(self):
        while self._running:
            now = time.monotonic()
            with self._lock:
                due = [c for at, c in self._retry if at <= now]
                self._retry = [(at, c) for at, c in self._retry if at > now]
            for complaint in due:
                self._work.put(complaint)
            time.sleep(0.1)

    def _deliver_webhook(self, complaint: Complaint) -> bool:
        complaint.attempts += 1
        try:
            response = facebook.signed_post(f"{self.platform.url('intake')}/webhooks/facebook",
                                            complaint.body, timeout=self.http_timeout)
            status = response.status_code
        except requests.RequestException as error:
            status = type(error).__name__
        complaint.statuses.append(status)
        if status != 200:
            return False
        if not complaint.acknowledged:
            complaint.acknowledged_at = time.monotonic()
            if self.duplicate_webhooks:
                # Meta delivers it again — once or twice more, later, interleaved with others.
                for _ in range(self.random.choice((1, 2))):
                    complaint.extra_deliveries += 1
                    with self._lock:
                        self._retry.append((time.monotonic() + self.random.uniform(0.05, 2.0), complaint))
        return True

    def _file_rpc(self, complaint: Complaint) -> bool:
        complaint.attempts += 1
        payload = {"text": complaint.text, "channel": "api", "external_ref": complaint.external_ref,
                   "reply_to": {"page_id": self.page_id, "psid": complaint.psid}}
        def call():
            with ClusterRpcProxy({"AMQP_URI": self.platform.amqp_uri, "serializer": "json"},
                                 timeout=self.rpc_timeout) as rpc:
                return rpc.intake.file_complaint(payload)
        try:
            result = call_with_deadline(call, self.rpc_timeout + 5)
        except Exception as error:
            complaint.statuses.append(type(error).__name__)
            return False
        complaint.statuses.append("ok")
        if complaint.complaint_id not in (None, result["complaint_id"]):
            raise AssertionError(f"external_ref {complaint.external_ref} gave two complaint ids")
        complaint.complaint_id = result["complaint_id"]
        complaint.acknowledged_at = time.monotonic()
        if complaint.wants_answer:
            with self._lock:
                self._answers.append(complaint)
        return True

    # -- agency answers ------------------------------------------------------------------
    def _answerer(self):
        while self._running:
            with self._lock:
                pending = [c for c in self._answers if c.answer_step != "done"]
            for complaint in pending:
                if not self._running:
                    return
                self._answer_step(complaint)
            time.sleep(0.3)

    def _answer_step(self, complaint: Complaint) -> None:
        if complaint.answer_call is not None and complaint.answer_call.is_alive():
            return  # never two answer calls for one complaint at once
        complaint.answer_attempts += 1

        def call():
            with ClusterRpcProxy({"AMQP_URI": self.platform.amqp_uri, "serializer": "json"},
                                 timeout=self.rpc_timeout) as rpc:
                self._advance_answer(rpc, complaint)
        try:
            call_with_deadline(call, self.rpc_timeout + 5)
        except Exception as error:
            if isinstance(error, CallStillRunning):
                complaint.answer_call = error.thread
            if complaint.answer_step == "respond":
                complaint.answer_step = "check"  # it may have been recorded: look before retrying

    def _advance_answer(self, rpc, complaint: Complaint) -> None:
        cid, actor = complaint.complaint_id, f"{ANSWER_AGENCY}:petugas"
        if complaint.answer_step == "assign":
            try:
                rpc.routing.assign(cid, [ANSWER_AGENCY], "Diteruskan untuk ditindaklanjuti.", "desk:ayu")
            except NotFound:
                return  # routing has not seen ComplaintFiled yet
            except IllegalAction as error:
                if "already" not in str(error):
                    raise
            complaint.answer_step = "acknowledge"
        if complaint.answer_step == "acknowledge":
            try:
                rpc.routing.acknowledge(cid, ANSWER_AGENCY, actor)
            except IllegalAction as error:
                if "already" not in str(error) and "acknowledg" not in str(error):
                    raise
            complaint.answer_step = "respond"
        if complaint.answer_step == "check":
            recorded = [e for e in rpc.routing.timeline(cid) if e["event_type"] == "ComplaintResponded"
                        and e["data"].get("text") == complaint.answer_text]
            complaint.answer_step = "done" if recorded else "respond"
        if complaint.answer_step == "respond":
            complaint.answer_step = "check"
            rpc.routing.respond(cid, ANSWER_AGENCY, complaint.answer_text, False, actor)
            complaint.answer_step = "done"
