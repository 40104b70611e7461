"""Committed transactions per complaint (issue 17, item 2): one Messenger webhook carried in process
from Meta's POST to the acknowledgment Meta accepted — intake stores the body and processes it
(``WebhookInbox.store_body`` + ``drain``, as the service does behind the 200), notification's
consumer handles intake's ``ComplaintFiled`` and its sender delivers the acknowledgment to a fake
Graph client — counting the COMMITs each database sees (a SQLAlchemy ``commit`` event listener on
every engine), write transactions and read-only ones apart.

Not counted: the outbox relays' ``mark_published`` (one write per publish batch, not per complaint
under load), routing (not on the acknowledgment's path) and the shared send budget's reservation
(its own engine, ``synchronous=NORMAL``; counted separately as ``budget`` when a budget is used).

Also ``inbox_rate``: stored bodies processed per second by intake alone, one body a commit and
eight (the inbox's group commit under a backlog). ``python -m bench.transactions [complaints]``
prints both as JSON.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextlib.contextmanager
def commits(engines: dict[str, Engine]) -> Iterator[Counter]:
    """Count COMMITs per engine name while the block runs: ``<name>`` for write transactions,
    ``<name>:read`` for read-only ones (``Database.read``)."""
    counted: Counter = Counter()
    listeners = []
    for name, engine in engines.items():
        def on_commit(connection: Any, _name: str = name) -> None:
            readonly = connection.get_execution_options().get("readonly")
            counted[f"{_name}:read" if readonly else _name] += 1
        event.listen(engine, "commit", on_commit)
        listeners.append((engine, on_commit))
    try:
        yield counted
    finally:
        for engine, listener in listeners:
            event.remove(engine, "commit", listener)


@contextlib.contextmanager
def _auto_migrate() -> Iterator[None]:
    """Fresh files are migrated as a development start does (``NTBCARE_AUTO_MIGRATE=1``)."""
    before = os.environ.get("NTBCARE_AUTO_MIGRATE")
    os.environ["NTBCARE_AUTO_MIGRATE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NTBCARE_AUTO_MIGRATE", None)
        else:
            os.environ["NTBCARE_AUTO_MIGRATE"] = before


class _Graph:
    """The Graph client's two calls, always accepted."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.sent: list[dict] = []

    def send_message(self, page_id, access_token, recipient, text, messaging_type="RESPONSE", tag=None,
                     quick_replies=None):
        from services.notification.adapters.graph_client import SendResult
        self.sent.append({"recipient": dict(recipient), "text": text})
        return SendResult(f"m_{next(self.ids)}", recipient.get("id"))

    def reply_to_comment(self, comment_id, access_token, text):
        from services.notification.adapters.graph_client import CommentResult
        return CommentResult(f"{comment_id}_{next(self.ids)}")

    def close(self) -> None:
        pass


def measure(folder: Path, complaints: int = 1) -> dict[str, Any]:
    """File ``complaints`` complaints (one webhook body each) and acknowledge each; the commits per
    complaint on each database."""
    from shared.core.consumer import EventConsumer
    from services.intake.adapters.store import build_store as intake_store
    from services.intake.application.inbox import WebhookInbox, WebhookSettings
    from services.notification.adapters.deliveries import Deliveries
    from services.notification.adapters.sender import DeliveryLoop
    from services.notification.application.handling import NotificationHandlers
    from services.notification.domain.policy import RetryPolicy
    from services.notification.service import build_store as notification_store
    from tests.support import facebook as fb
    from tests.support.platform import DEV_PAGE_ID

    intake = intake_store(f"sqlite:///{folder / 'intake.db'}")
    notification = notification_store(f"sqlite:///{folder / 'notification.db'}")
    with _auto_migrate():
        intake.prepare()
        notification.prepare()
    try:
        inbox = WebhookInbox(intake, WebhookSettings(frozenset(), 120))
        consumer = EventConsumer(notification.database, notification.quarantine,
                                 NotificationHandlers(notification).table(), notification.checkpoints,
                                 notification.processed, notification.failures)
        graph = _Graph()
        loop = DeliveryLoop(Deliveries(notification.database), graph, RetryPolicy(base_seconds=0.01),
                            send_rate=0, token_for=lambda _page: "token", spawn=lambda f: f())
        loop.running = True
        position = 0
        with commits({"intake": intake.database.engine,
                      "notification": notification.database.engine}) as counted:
            for number in range(complaints):
                body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
                    DEV_PAGE_ID, fb.new_psid(), f"Jalan rusak berlubang di Praya nomor {number}")))
                inbox.store_body(json.dumps(body).encode())
                inbox.drain()
                for envelope in intake.events_since(position):
                    position = envelope["position"]
                    consumer.handle(envelope, "intake")
                loop.dispatch()
        assert len(graph.sent) == complaints, f"{len(graph.sent)} acknowledgments for {complaints} complaints"
        return {"complaints": complaints,
                "per_complaint": {name: round(count / complaints, 2) for name, count in sorted(counted.items())}}
    finally:
        intake.database.dispose()
        notification.database.dispose()


def inbox_rate(folder: Path, bodies: int = 200, group: int = 1, url: str | None = None) -> float:
    """Stored bodies (one Messenger complaint each, distinct citizens) processed per second by
    intake alone, ``group`` bodies a transaction; on a SQLite file in ``folder``
    (``synchronous=FULL``) unless ``url`` names another (empty) database."""
    import time

    from services.intake.adapters.store import build_store as intake_store
    from services.intake.application.inbox import WebhookInbox, WebhookSettings
    from tests.support import facebook as fb
    from tests.support.platform import DEV_PAGE_ID

    store = intake_store(url or f"sqlite:///{folder / f'inbox-{group}.db'}")
    with _auto_migrate():
        store.prepare()
    try:
        inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
        ids = [inbox.store_body(json.dumps(fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
            DEV_PAGE_ID, fb.new_psid(), f"Jalan rusak berlubang di Praya nomor {n}")))).encode())
            for n in range(bodies)]
        inbox.process_many(ids[:1])  # warm: classifier, statements
        started = time.perf_counter()
        for start in range(1, len(ids), group):
            inbox.process_many(ids[start:start + group])
        return round((len(ids) - 1) / (time.perf_counter() - started), 1)
    finally:
        store.database.dispose()


def main(argv: list[str]) -> None:
    complaints = int(argv[0]) if argv else 20
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(Path(folder), complaints)
        figures["inbox_bodies_per_second"] = [
            {"bodies_a_commit": group, "rate": inbox_rate(Path(folder), group=group)} for group in (1, 8, 1, 8)]
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
