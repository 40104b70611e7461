"""Seeds a history straight into the services' own event stores (their real append API), before
the platform starts — how the reporting tests get thousands of complaints without filing each
one over RPC. The history counts as already published and already consumed by routing and
notification (outbox emptied, their checkpoints set), so only reporting works through it.

The seeder plays routing's part for routing's events, so it records them as routing does (v2):
each carries ``data.lifecycle``, folded with routing's own ``shared.core.events.lifecycle``."""
from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, func, select

from shared.core.events import types as ev
from shared.core.events.catalogue import SOURCES
from shared.core.events.lifecycle import Lifecycle
from shared.core.eventstore import PendingEvent
from shared.core.store import ServiceStore
from shared.core.reference import CATEGORIES, CONFIDENTIAL_CATEGORIES, REGION_CODES

PAGE_ID = "100000000000001"
AGENCY_FOR = {"koperasi_umkm": "diskop-ukm", "lingkungan_hidup": "dlhk", "infrastruktur": "dpupr",
              "pungli": "polda-ntb", "pelayanan_umum": "biro-organisasi", "sosial": "dinsos",
              "kesehatan": "dikes", "lainnya": "inspektorat"}
FIRST_RESPONSE_HOURS = {"urgent": 1, "important": 24, "normal": 48}
AGENCY_NAMES = {"diskop-ukm": "Dinas Koperasi dan UKM", "dlhk": "Dinas Lingkungan Hidup dan Kehutanan",
                "dpupr": "Dinas PUPR", "polda-ntb": "Polda NTB (Saber Pungli)",
                "biro-organisasi": "Biro Organisasi", "dinsos": "Dinas Sosial", "dikes": "Dinas Kesehatan",
                "inspektorat": "Inspektorat"}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _metadata(service: str):
    if service == "intake":
        from services.intake.adapters import tables
    elif service == "routing":
        from services.routing.adapters import tables
    else:
        from services.notification.adapters import tables
    return tables.metadata


class Seeder:
    def __init__(self, data_dir: Path):
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stores = {name: ServiceStore(name, _metadata(name), emits_events=True,
                                          url=f"sqlite:///{data_dir.resolve() / (name + '.db')}")
                       for name in ("intake", "routing", "notification")}
        for store in self.stores.values():
            store.prepare()  # migrated, as the services will find it
        self.pending: dict[str, list[PendingEvent]] = defaultdict(list)
        self.secrets: list[str] = []     # personal data that must never reach reporting
        self.complaints: list[dict] = []
        self.lifecycles: dict[str, Lifecycle] = {}

    # -- building blocks ---------------------------------------------------------------------
    def add(self, source: str, event_type: str, complaint_id: str, at: datetime, data: dict) -> PendingEvent:
        if SOURCES[event_type] == "routing":
            # As routing records it: the lifecycle after this event.
            lifecycle = self.lifecycles.get(complaint_id)
            if lifecycle is None:
                raise ValueError("routing events are added between the complaint's filing and "
                                 "the flush that writes it")
            lifecycle.apply(event_type, data)
            data = dict(data, lifecycle=lifecycle.snapshot())
        elif event_type == ev.COMPLAINT_AMENDED:
            data = {"levy_reported": False, **data}
        event = PendingEvent(event_type, complaint_id, data, occurred_at=at)
        self.pending[source].append(event)
        return event

    def filed(self, filed_at: datetime, category: str, region_code: str | None, *, channel="facebook_messenger",
              priority="normal", index: int = 0) -> dict:
        complaint_id = str(uuid.uuid4())
        psid = f"PSID{index:06d}{uuid.uuid4().hex[:6]}"
        name, phone = f"Pelapor{index:05d} Wiranata", f"0817{index:08d}"
        reply_to = ({"page_id": PAGE_ID, "comment_id": f"{index}_{psid}", "post_id": "1_2"}
                    if channel == "facebook_comment" else {"page_id": PAGE_ID, "psid": psid})
        self.secrets += [psid, name, phone]
        code = "NTB-" + uuid.uuid4().hex[:5].upper() + "-" + uuid.uuid4().hex[:5].upper()
        confidential = category in CONFIDENTIAL_CATEGORIES
        self.lifecycles[complaint_id] = Lifecycle(confidential)
        self.add("intake", "ComplaintFiled", complaint_id, filed_at, {
            "tracking_code": code, "channel": channel, "filed_at": iso(filed_at),
            "text": f"Nama saya {name}, HP {phone}. Mohon perhatian atas masalah {category}.",
            "attachments": [], "category": category, "region_code": region_code, "priority": priority,
            "reasons": {"category": [], "region": [], "priority": []},
            "confidential": confidential, "reply_to": reply_to,
            "last_citizen_message_at": iso(filed_at), "external_ref": None})
        complaint = {"complaint_id": complaint_id, "tracking_code": code, "filed_at": filed_at,
                     "category": category, "region_code": region_code, "priority": priority,
                     "psid": psid, "channel": channel, "reply_to": reply_to}
        self.complaints.append(complaint)
        return complaint

    def at_desk(self, c: dict, at: datetime) -> None:
        self.add("routing", "ComplaintRouted", c["complaint_id"], at, {
            "lead_agencies": ["diskominfotik"], "coordinating_agencies": [], "decided_by": "rule:desk-fallback",
            "reason": "ditelaah desk", "priority": c["priority"], "due_at": {"triage": iso(at + timedelta(days=3))}})

    def routed(self, c: dict, at: datetime, agency: str, coordinating=()) -> dict:
        due = {"first_response": iso(at + timedelta(hours=FIRST_RESPONSE_HOURS[c["priority"]])),
               "follow_up": iso(at + timedelta(days=7))}
        self.add("routing", "ComplaintRouted", c["complaint_id"], at, {
            "lead_agencies": [agency], "coordinating_agencies": list(coordinating),
            "decided_by": "operator:desk-ani", "reason": "sesuai kewenangan", "priority": c["priority"],
            "due_at": due, "agency_names": {code: AGENCY_NAMES[code] for code in (agency, *coordinating)
                                            if code in AGENCY_NAMES}})
        return due

    def rejected(self, c: dict, at: datetime, agency: str) -> None:
        """"Bukan wewenang" by the only lead: back to the desk with a triage clock."""
        self.add("routing", "ComplaintRejectedByAgency", c["complaint_id"], at, {
            "agency_code": agency, "reason": "bukan wewenang", "actor": "officer:andi",
            "returned_to_desk": True, "due_at": {"triage": iso(at + timedelta(days=3))}})

    def confidentiality(self, c: dict, at: datetime, confidential: bool) -> None:
        self.add("routing", "ComplaintConfidentialityChanged", c["complaint_id"], at, {
            "confidential": confidential, "reason": "ditelaah desk: menyebut pungutan liar",
            "actor": "operator:desk-ani"})

    def acknowledged(self, c, at, agency):
        self.add("routing", "ComplaintAcknowledged", c["complaint_id"], at,
                 {"agency_code": agency, "actor": "officer:andi"})

    def responded(self, c, at, agency, resolved=False, text="Sudah kami tindak lanjuti di lapangan."):
        event = self.add("routing", "ComplaintResponded", c["complaint_id"], at, {
            "agency_code": agency, "text": text, "resolved": resolved, "actor": "officer:andi"})
        lifecycle = self.lifecycles[c["complaint_id"]]
        if resolved and all(lifecycle.parts[code]["resolved"] for code in lifecycle.lead_agencies):
            # As routing does: the last lead resolving its part resolves the complaint.
            self.add("routing", "ComplaintResolved", c["complaint_id"], at, {"actor": "officer:andi"})
        return event

    def notified(self, c, at):
        data = {"trigger_event_id": str(uuid.uuid4()), "channel": "messenger", "messaging_type": "MESSAGE_TAG",
                "tag": "HUMAN_AGENT", "graph_message_id": f"m_{uuid.uuid4().hex[:10]}"}
        if c["channel"] == "facebook_comment":
            data.update(channel="comment_private", recipient_psid=c["psid"] + "R")
            self.secrets.append(c["psid"] + "R")
        self.add("notification", "CitizenNotified", c["complaint_id"], at, data)

    # -- a whole synthetic history -----------------------------------------------------------
    def history(self, count: int, start: datetime, months: int, seed: int = 6) -> None:
        """``count`` complaints over ``months`` months from ``start``, using every event type."""
        rng = random.Random(seed)
        span = timedelta(days=30.4 * months)
        for index in range(count):
            filed_at = start + timedelta(seconds=rng.uniform(0, span.total_seconds()))
            category = rng.choice(CATEGORIES)
            region = rng.choice(REGION_CODES) if rng.random() > 0.1 else None
            channel = rng.choice(("facebook_messenger", "facebook_messenger", "facebook_comment", "web"))
            priority = rng.choice(("urgent", "important", "normal", "normal"))
            c = self.filed(filed_at, category, region, channel=channel, priority=priority, index=index)
            cid, t = c["complaint_id"], filed_at
            if index % 17 == 3:   # a photo kept in intake's media store (no draw from rng: same history)
                self.add("intake", "EvidenceStored", cid, t + timedelta(minutes=1), {
                    "media_id": str(uuid.uuid4()), "type": "image", "state": "stored", "digest": "ab" * 32,
                    "content_type": "image/jpeg", "size": 48213, "reason": None})
            if index % 23 == 5:   # a 👍 in the conversation: a reaction, never complaint text
                self.add("intake", "CitizenReacted", cid, t + timedelta(minutes=2), {
                    "reaction": "like", "sticker_id": "369239263222822", "message_at": iso(t)})
            roll = rng.random()
            if roll < 0.08:
                self.add("intake", "ComplaintAmended", cid, t + timedelta(minutes=5), {
                    "text": "tambahan keterangan", "why": "more_messages", "last_citizen_message_at": iso(t)})
            elif roll < 0.10:
                self.add("intake", "CitizenMessageReceived", cid, t + timedelta(minutes=6), {
                    "text": "halo", "attachments": [], "reply_to": c["reply_to"], "message_at": iso(t),
                    "levy_reported": False})
            elif roll < 0.11:
                self.add("intake", "StatusRequested", cid, t + timedelta(days=1), {
                    "tracking_code": c["tracking_code"], "reply_to": c["reply_to"], "message_at": iso(t)})
            elif roll < 0.12 and channel == "facebook_comment":
                self.add("intake", "CitizenCommentRemoved", cid, t + timedelta(days=1),
                         {"comment_id": c["reply_to"]["comment_id"]})
            # Most complaints go straight to an agency by rule; some pass by the desk first.
            desk_first = rng.random() < 0.12
            if desk_first:
                self.at_desk(c, t + timedelta(seconds=2))
            if index % 19 == 7:   # the desk corrects the region (issue 20; no draw from rng)
                self.add("routing", "ComplaintReclassified", cid, t + timedelta(seconds=3), {
                    "category_before": category, "category_after": category, "region_before": region,
                    "region_after": REGION_CODES[index % len(REGION_CODES)], "reason": "desa di kabupaten lain",
                    "actor": "operator:desk-ani", "rerouted": False})
            if rng.random() < 0.04:
                self.add("routing", "ComplaintDismissed", cid, t + timedelta(hours=3), {
                    "reason": "aduan ganda", "duplicate_of": None, "actor": "operator:desk-ani"})
                continue
            if rng.random() < 0.06:
                if not desk_first:
                    self.at_desk(c, t + timedelta(seconds=2))
                continue  # still at the desk
            agency = AGENCY_FOR[category]
            t += timedelta(hours=rng.uniform(0.5, 30))
            due = self.routed(c, t, agency, coordinating=["inspektorat"] if rng.random() < 0.1 else [])
            if rng.random() < 0.05:
                self.rejected(c, t + timedelta(hours=2), agency)
                agency = "inspektorat"
                t += timedelta(hours=5)
                due = self.routed(c, t, agency)
            if rng.random() < 0.03:
                # The desk marks it confidential (a levy it read in the text), sometimes unmarks it.
                self.confidentiality(c, t + timedelta(minutes=30), True)
                if rng.random() < 0.3:
                    self.confidentiality(c, t + timedelta(hours=1), False)
            if rng.random() < 0.12:
                self.add("routing", "ComplaintEscalated", cid, t + timedelta(hours=FIRST_RESPONSE_HOURS[priority]), {
                    "breach": "first_response", "due_at": due["first_response"],
                    "notified": ["inspektorat", "diskominfotik"]})
            if rng.random() < 0.45:
                continue  # no response yet
            t += timedelta(hours=rng.uniform(0.2, 60))
            if rng.random() < 0.25:
                self.acknowledged(c, t, agency)
            if rng.random() < 0.1:
                continue
            t += timedelta(hours=rng.uniform(1, 120))
            resolved_in_answer = rng.random() < 0.4
            self.responded(c, t, agency, resolved=resolved_in_answer)
            if rng.random() < 0.2:
                self.notified(c, t + timedelta(seconds=3))
            elif rng.random() < 0.1:
                self.add("notification", "CitizenNotificationFailed", cid, t + timedelta(seconds=4), {
                    "trigger_event_id": str(uuid.uuid4()), "reason": "outside window", "code": 10,
                    "permanent": True})
            if not resolved_in_answer and rng.random() < 0.3:
                self.responded(c, t + timedelta(days=2), agency, resolved=True,
                               text="Masalah sudah selesai ditangani.")
                t += timedelta(days=2)
            self.citizen_loop(c, t, agency, index)

    def citizen_loop(self, c: dict, t: datetime, agency: str, index: int) -> None:
        """The citizen's answer to "Sudah selesai?" on some resolved complaints (no draw from the
        rng: the rest of the history stays the same): a "belum" that reopens and is resolved again,
        ratings, a refused reopen."""
        cid = c["complaint_id"]
        if self.lifecycles[cid].closed != "resolved":
            return
        answer = {"words": "", "score": None, "via": "quick_reply", "tracking_code": c["tracking_code"],
                  "reply_to": c["reply_to"] if c["channel"] != "web" else None, "message_at": iso(t)}
        if index % 7 == 1:
            self.add("intake", "CitizenAnsweredFollowUp", cid, t + timedelta(hours=1),
                     dict(answer, answer="not_solved", words="belum, masih sama saja"))
            self.add("routing", "ComplaintReopened", cid, t + timedelta(hours=1, seconds=1), {
                "words": "belum, masih sama saja", "actor": "citizen", "reopen_count": 1, "to_desk": False,
                "due_at": {"follow_up": iso(t + timedelta(days=7))}, "answer_event_id": None})
            self.responded(c, t + timedelta(days=1), agency, resolved=True, text="Sudah kami perbaiki ulang.")
            t += timedelta(days=1)
        if index % 13 == 6 and self.complaints and self.complaints[0]["complaint_id"] != cid:
            primary = self.complaints[0]
            self.add("routing", "ComplaintLinked", cid, t + timedelta(minutes=30), {
                "primary_complaint_id": primary["complaint_id"], "primary_tracking_code": primary["tracking_code"],
                "reason": "jalan yang sama", "actor": "operator:desk-ani", "because": ["similar_words"],
                "score": 0.5})
        if index % 3 == 0:
            score = 1 + index % 5
            self.add("intake", "CitizenAnsweredFollowUp", cid, t + timedelta(hours=2),
                     dict(answer, answer="rating", score=score, words=str(score)))
            self.add("routing", "CitizenRated", cid, t + timedelta(hours=2, seconds=1), {
                "score": score, "words": str(score), "agencies": [agency], "answer_event_id": None})
        elif index % 11 == 4:
            self.add("routing", "ComplaintReopenRefused", cid, t + timedelta(days=20), {
                "reason": "period_over", "words": "belum pak", "answer_event_id": None, "period_days": 14})

    # -- writing -----------------------------------------------------------------------------
    def flush(self, chunk: int = 5000) -> dict[str, int]:
        """Append everything through each store's own API, as already published history."""
        last = {}
        for source, events in self.pending.items():
            store = self.stores[source]
            for start in range(0, len(events), chunk):
                with store.database.transaction() as tx:
                    tx.append(events[start:start + chunk])
            with store.database.transaction() as tx:
                tx.execute(delete(store.event_store.outbox))
        self.pending.clear()
        self.lifecycles.clear()  # written: memory stays flat over many rounds (bench)
        for source, store in self.stores.items():
            with store.database.read() as connection:
                last[source] = store.event_store.last_position(connection)
        return last

    def mark_consumed(self) -> None:
        """Routing and notification have handled this history already (they must not react)."""
        last = {}
        for source, store in self.stores.items():
            with store.database.read() as connection:
                last[source] = store.event_store.last_position(connection)
        for consumer, sources in (("routing", ["intake", "notification"]),
                                  ("notification", ["intake", "routing"])):
            store = self.stores[consumer]
            with store.database.transaction() as tx:
                for source in sources:
                    tx.execute(delete(store.checkpoints).where(store.checkpoints.c.source == source))
                    tx.execute(store.checkpoints.insert().values(source=source, position=last[source],
                                                                 updated_at=iso(datetime.now(timezone.utc))))

    def count(self, source: str) -> int:
        store = self.stores[source]
        with store.database.read() as connection:
            return connection.execute(select(func.count()).select_from(store.event_store.events)).scalar_one()

    def dispose(self) -> None:
        for store in self.stores.values():
            store.database.dispose()
