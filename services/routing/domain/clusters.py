"""Duplicates and clusters: which open complaint a new one probably repeats, and what an agency's
step on a cluster's primary complaint means for the complaints linked to it.

Suggestions (the desk confirms or refuses each; nothing is linked without the desk):

- *Words*: a text's word set is its lower-cased words with common chat spellings expanded
  (``jln`` → ``jalan``, ``blm`` → ``belum``), letters repeated for emphasis collapsed
  (``parahhh`` → ``parah``), the particles ``-nya``/``-lah``/``-kah``/``-pun`` cut, and stop words,
  numbers and words shorter than three letters left out. Two texts are as similar as the Jaccard
  index of their word sets (shared words / all words): simple, and explainable by listing the
  shared words.
- *A match* with an open complaint filed at most ``window`` apart: comments under the same Facebook
  post (``same_post``; the post id is public, not personal) match whatever their words; otherwise
  the same category *and* the same known region (``same_category_region``) with a similarity of
  at least ``threshold`` (``similar_words``).
- *The suggestion* names the best match (same post first, then the highest similarity, then the
  earliest) — or rather its *anchor*: the primary it is linked to, or the complaint its own
  pending suggestion points at — so five comments under one post are suggested as one cluster
  around the first, not as a chain.

One answer for the cluster (``follow_step``): when an agency acknowledges or answers the primary,
routing records the same step on every linked complaint, each in its own stream; a linked
complaint first takes the primary's agencies (a ``ComplaintRouted`` decided by ``rule:cluster``)
when it does not have them. A step the linked complaint's state refuses (already acknowledged,
closed meanwhile) is skipped: the cluster never blocks the primary.

Pure domain code: no framework, no clock, no I/O.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Optional, Sequence

from services.routing.domain.disposition import (
    COMPLAINT_ACKNOWLEDGED, COMPLAINT_RESPONDED, Disposition, DomainError, InvalidAction, NewEvent,
)
from services.routing.domain.sla import SlaPolicy

SAME_POST, SAME_PLACE, SIMILAR_WORDS = "same_post", "same_category_region", "similar_words"
CLUSTER_RULE = "rule:cluster"
DEFAULT_THRESHOLD = 0.35
DEFAULT_WINDOW_HOURS = 72

# Chat spellings seen in complaints, to their dictionary form (only words that carry meaning or
# are stop words once expanded).
_SPELLINGS = {
    "jln": "jalan", "jl": "jalan", "jalanan": "jalan", "yg": "yang", "dgn": "dengan",
    "dg": "dengan", "tdk": "tidak", "gak": "tidak", "ga": "tidak", "nggak": "tidak",
    "ngga": "tidak", "gk": "tidak", "sdh": "sudah", "udh": "sudah", "udah": "sudah",
    "blm": "belum", "msh": "masih", "krn": "karena", "karna": "karena", "utk": "untuk",
    "dr": "dari", "sy": "saya", "kmi": "kami", "tlg": "tolong", "mhn": "mohon", "rsk": "rusak",
    "bgt": "banget", "skrg": "sekarang", "bln": "bulan", "hr": "hari", "thn": "tahun",
    "lbg": "lubang", "jmbtn": "jembatan", "sampah2": "sampah",
}
_STOP_WORDS = frozenset("""
    yang dan di ke dari ini itu ada sudah belum tidak untuk dengan pada karena atau juga saja
    masih sangat banyak lagi akan bisa mau tolong mohon bapak ibu pak bu admin kak min saya kami
    kita kamu anda mereka dia nya sejak sampai hingga oleh bagi agar supaya kalau jika sudah
    sekarang hari bulan tahun minggu kemarin tadi pagi siang sore malam terima kasih tolonglah
    mohon segera cepat kapan kenapa mengapa bagaimana apa siapa mana sini situ sana dong deh
    sih kok lah kan pun tersebut para semua setiap telah sedang lebih kurang paling banget
    harus perlu dapat dalam luar atas bawah depan belakang antara""".split())
_PARTICLES = ("nya", "lah", "kah", "pun")
_REPEATS = re.compile(r"(.)\1{2,}")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def words_of(text: str) -> frozenset[str]:
    """The word set two texts are compared by (see the module docstring)."""
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    out = set()
    for raw in _NOT_WORD.split(_REPEATS.sub(r"\1", plain.lower())):
        word = _SPELLINGS.get(raw, raw)
        for particle in _PARTICLES:
            if len(word) > len(particle) + 3 and word.endswith(particle):
                word = _SPELLINGS.get(word[:-len(particle)], word[:-len(particle)])
                break
        if len(word) < 3 or word.isdigit() or word in _STOP_WORDS:
            continue
        out.add(word)
    return frozenset(out)


def similarity(a: Iterable[str], b: Iterable[str]) -> float:
    """The Jaccard index of two word sets, 0 when both are empty."""
    first, second = set(a), set(b)
    union = first | second
    return round(len(first & second) / len(union), 4) if union else 0.0


@dataclass(frozen=True)
class Filing:
    """What a suggestion compares of a complaint."""
    complaint_id: str
    tracking_code: str
    category: str
    region_code: Optional[str]
    post_id: Optional[str]
    filed_at: datetime
    words: frozenset[str]


@dataclass(frozen=True)
class Match:
    candidate_id: str
    score: float
    because: tuple[str, ...]
    common_words: tuple[str, ...]
    hours_apart: float


@dataclass(frozen=True)
class SuggestionRules:
    threshold: float = DEFAULT_THRESHOLD
    window: timedelta = field(default=timedelta(hours=DEFAULT_WINDOW_HOURS))

    def match(self, new: Filing, candidate: Filing) -> Optional[Match]:
        """Why ``new`` probably repeats ``candidate``, or None."""
        if new.complaint_id == candidate.complaint_id:
            return None
        apart = abs(new.filed_at - candidate.filed_at)
        if apart > self.window:
            return None
        score = similarity(new.words, candidate.words)
        same_post = bool(new.post_id) and new.post_id == candidate.post_id
        same_place = (new.category == candidate.category and new.region_code is not None
                      and new.region_code == candidate.region_code)
        similar = score >= self.threshold
        because = tuple(reason for reason, holds in ((SAME_POST, same_post), (SAME_PLACE, same_place),
                                                     (SIMILAR_WORDS, similar)) if holds)
        if not (same_post or (same_place and similar)):
            return None
        return Match(candidate.complaint_id, score, because,
                     tuple(sorted(new.words & candidate.words)), round(apart.total_seconds() / 3600, 2))

    def best(self, new: Filing, candidates: Iterable[Filing]) -> Optional[Match]:
        """The strongest match: the same post first, then the highest score, then the earliest."""
        found = []
        for candidate in candidates:
            match = self.match(new, candidate)
            if match is not None:
                found.append((SAME_POST not in match.because, -match.score, candidate.filed_at,
                              candidate.complaint_id, match))
        return min(found, key=lambda item: item[:4])[4] if found else None


def anchor(complaint_id: str, linked_to: Mapping[str, str], pending_to: Mapping[str, str]) -> str:
    """The complaint a suggestion should point at instead of ``complaint_id``: its primary when it
    is linked, else what its own pending suggestion points at (followed, never in a circle)."""
    seen = {complaint_id}
    current = complaint_id
    while True:
        following = linked_to.get(current) or pending_to.get(current)
        if following is None or following in seen:
            return current
        seen.add(following)
        current = following


def describe(because: Sequence[str], common_words: Sequence[str], score: Optional[float],
             hours_apart: Optional[float] = None) -> str:
    """The grounds of a suggestion in the desk's words (Indonesian)."""
    parts = []
    if SAME_POST in because:
        parts.append("komentar pada postingan Facebook yang sama")
    if SAME_PLACE in because:
        parts.append("kategori dan wilayah sama")
    if common_words:
        shown = ", ".join(list(common_words)[:8])
        parts.append(f"kata yang sama: {shown}")
    if score is not None:
        parts.append(f"kemiripan kata {score:.2f}".replace(".", ","))
    if hours_apart is not None:
        parts.append(f"selisih {hours_apart:.0f} jam" if hours_apart >= 1 else "selisih kurang dari 1 jam")
    return "; ".join(parts) or "digabung oleh meja layanan"


# --- one answer for the cluster -----------------------------------------------------------------

def follow_agencies(member: Disposition, primary: Disposition, now: datetime,
                    sla_policy: SlaPolicy) -> list[NewEvent]:
    """A routing that gives ``member`` the primary's agencies, or nothing when it has them (or the
    primary has none: it waits at the desk)."""
    if not member.is_open or primary.at_desk or not primary.lifecycle.lead_agencies:
        return []
    lead, coordinating = list(primary.lifecycle.lead_agencies), list(primary.coordinating_agencies)
    if (not member.at_desk and member.lifecycle.lead_agencies == lead
            and member.coordinating_agencies == coordinating):
        return []
    due = sla_policy.due_at(now, member.priority, at_desk=False)
    return [member._routed(lead, coordinating, CLUSTER_RULE,
                           f"Digabung dengan aduan {primary.tracking_code}: mengikuti instansinya.",
                           member.priority, due)]


def follow_step(member: Disposition, primary: Disposition, step: NewEvent, now: datetime,
                sla_policy: SlaPolicy) -> list[NewEvent]:
    """The events that record ``step`` (an agency's acknowledgment or answer on the primary) on
    ``member``: an alignment of agencies first if needed, then the same step. Empty when the
    member's state refuses it."""
    event_type, data = step
    if event_type not in (COMPLAINT_ACKNOWLEDGED, COMPLAINT_RESPONDED) or not member.is_open:
        return []
    probe = member
    events = follow_agencies(member, primary, now, sla_policy)
    if events:
        probe = Disposition.replay([], start=member)
        probe.apply_all(probe.stamped(events), now)
    try:
        if event_type == COMPLAINT_ACKNOWLEDGED:
            events += probe.acknowledge(data["agency_code"], data["actor"])
        else:
            events += probe.respond(data["agency_code"], data["text"], bool(data["resolved"]),
                                    data["actor"])
    except DomainError:
        return []
    return events


def catch_up_steps(primary: Disposition, answers: Sequence[Mapping[str, Any]]) -> list[NewEvent]:
    """What a complaint joining the cluster late must receive so its citizen hears what the
    primary's did: each current agency's acknowledgment, then its latest answer (with its
    resolution). ``answers``: the primary's ``ComplaintResponded`` data, oldest first."""
    steps: list[NewEvent] = []
    latest: dict[str, Mapping[str, Any]] = {}
    for answer in answers:
        latest[answer["agency_code"]] = answer
    for code in list(primary.lifecycle.lead_agencies) + list(primary.coordinating_agencies):
        progress = primary.progress_of(code)
        if code in latest and progress["answered"]:
            answer = latest[code]
            steps.append((COMPLAINT_RESPONDED, {"agency_code": code, "text": answer["text"],
                                                "resolved": bool(progress["resolved"]),
                                                "actor": answer["actor"]}))
        elif progress["acknowledged"]:
            steps.append((COMPLAINT_ACKNOWLEDGED, {"agency_code": code, "actor": CLUSTER_RULE}))
    return steps


def check_link(member: Disposition, primary: Disposition, member_has_links: bool) -> None:
    """Refuse a link that makes no cluster (``InvalidAction``/``ComplaintClosed``)."""
    if member.complaint_id == primary.complaint_id:
        raise InvalidAction("a complaint cannot be linked to itself")
    member._require_open()
    if member.linked_to is not None:
        raise InvalidAction(f"complaint {member.tracking_code} is already linked to a cluster")
    if member_has_links:
        raise InvalidAction(f"complaint {member.tracking_code} is the primary of a cluster; link "
                            "the others to the complaint you want as primary instead")
    if primary.lifecycle.closed == "dismissed":
        raise InvalidAction(f"complaint {primary.tracking_code} was dismissed; it cannot be a primary")

