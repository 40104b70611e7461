"""What notification tells the citizen: rendering the Indonesian templates in
``templates/messages.yaml``, splitting long texts for the Send API, and the public status of a
complaint computed from notification's own record of its events.

Pure domain code (reads its template file, nothing else); no nameko, no SQLAlchemy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Optional

import jinja2
import yaml

DEFAULT_TEMPLATES_PATH = Path(__file__).with_name("templates") / "messages.yaml"
# Lets a deployment edit the texts without a new image.
TEMPLATES_PATH_ENV = "NOTIFICATION_TEMPLATES_PATH"

# Meta: message.text must be *under* 2,000 characters.
SEND_API_TEXT_LIMIT = 2000

# NTB uses WITA (UTC+8, no daylight saving); citizens read times in their own zone.
WITA = timezone(timedelta(hours=8), "WITA")

_MONTHS = (
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
)


# --- templates ------------------------------------------------------------------------------


def _daftar(items) -> str:
    names = [str(item) for item in items if item]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " dan " + names[-1]


def _parse_time(value) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("times must carry their zone (UTC)")
    return moment


def _tanggal(value) -> str:
    local = _parse_time(value).astimezone(WITA)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year} pukul {local:%H.%M} WITA"


class Catalogue:
    """The templates of one YAML file, compiled once."""

    def __init__(self, path: os.PathLike | str):
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
        self.path = Path(path)
        self._compiled: dict = {}
        self._env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text for Messenger and comments, not HTML
            keep_trailing_newline=False,
        )
        self._env.filters["daftar"] = _daftar
        self._env.filters["tanggal"] = _tanggal
        self._sources = {}
        for section, entries in raw.items():
            for name, source in (entries or {}).items():
                # Citizen messages are addressed by bare name, other sections as "section.name".
                key = name if section == "messages" else f"{section}.{name}"
                self._sources[key] = source

    def names(self) -> list[str]:
        return sorted(self._sources)

    def render(self, template_name: str, **context) -> str:
        try:
            source = self._sources[template_name]
        except KeyError:
            raise KeyError(f"no template {template_name!r} in {self.path}") from None
        compiled = self._compiled.get(template_name)
        if compiled is None:  # compiling costs more than rendering: once per template
            compiled = self._compiled[template_name] = self._env.from_string(source)
        text = compiled.render(**context)
        # Folding in YAML and optional blocks can leave doubled spaces; tidy them per line.
        lines = [re.sub(r"[ \t]{2,}", " ", line).strip() for line in text.split("\n")]
        return "\n".join(lines).strip()


@lru_cache(maxsize=4)
def _catalogue(path: str) -> Catalogue:
    return Catalogue(path)


def catalogue() -> Catalogue:
    return _catalogue(os.environ.get(TEMPLATES_PATH_ENV) or str(DEFAULT_TEMPLATES_PATH))


def render(template_name: str, **context) -> str:
    """Render one template (see messages.yaml for each one's context) as plain text."""
    return catalogue().render(template_name, **context)


def desk_reason(reason: str, **context) -> str:
    """The desk's explanation of why a message was not delivered."""
    cat = catalogue()
    key = f"undeliverable.{reason}"
    if key not in cat.names():
        key = "undeliverable.unknown"
    return cat.render(key, **context)


def agency_names(codes: Iterable[str], directory: Mapping[str, object]) -> list[str]:
    """Display names for agency codes, from the routing directory.

    ``directory`` maps code to a name, or to a record with a ``name``; an unknown code is shown
    as itself rather than dropped, so the citizen still learns something was routed.
    """
    names = []
    for code in codes:
        entry = directory.get(code)
        if isinstance(entry, Mapping):
            entry = entry.get("name")
        names.append(str(entry) if entry else str(code))
    return names


# --- splitting for the Send API -------------------------------------------------------------

# A sentence ends at . ! ? (or …), possibly followed by closing quotes/brackets, then whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_WORD = re.compile(r"\S+\s*")


def _sentences(text: str) -> list[str]:
    """Pieces of ``text`` that each end after a sentence boundary, keeping their whitespace."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def split_text(text: str, limit: int = SEND_API_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into ordered parts, each shorter than ``limit`` characters.

    Sentences are kept whole when they fit; a longer sentence is split between words, and only a
    single word longer than the limit is cut. Line breaks inside a part are preserved; the
    whitespace at a cut is dropped. Empty text gives no parts.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    max_len = limit - 1
    parts: list[str] = []
    current = ""

    def add(piece: str) -> None:
        nonlocal current
        if len((current + piece).rstrip()) <= max_len:
            current += piece
            return
        if current.strip():
            parts.append(current.strip())
        current = piece.lstrip()

    for sentence in _sentences(text):
        if len(sentence.strip()) <= max_len:
            add(sentence)
            continue
        for word in _WORD.findall(sentence):
            while len(word.rstrip()) > max_len:
                add(word[:max_len])
                word = word[max_len:]
            add(word)
    if current.strip():
        parts.append(current.strip())
    return parts


# --- public status --------------------------------------------------------------------------

DITERIMA = "diterima"  # filed, awaiting triage
DISETUJUI = "disetujui"  # routed to an agency
DIPROSES = "diproses"  # acknowledged/answered by an agency, or back at the desk after "bukan wewenang"
DITOLAK = "ditolak"  # dismissed
SELESAI = "selesai"  # resolved
PUBLIC_STATUSES = (DITERIMA, DISETUJUI, DIPROSES, DITOLAK, SELESAI)

# Event type -> public status word. ComplaintRouted is refined by public_status(): routed to the
# desk means "diterima" at first, "diproses" once an agency has had it.
public_status_words = {
    "ComplaintFiled": DITERIMA,
    "ComplaintRouted": DISETUJUI,
    "ComplaintAcknowledged": DIPROSES,
    "ComplaintRejectedByAgency": DIPROSES,
    "ComplaintResponded": DIPROSES,
    "ComplaintResolved": SELESAI,
    "ComplaintDismissed": DITOLAK,
}


@dataclass(frozen=True)
class PublicStatus:
    status: str
    agency_codes: tuple  # lead agencies now handling it; empty while at the desk
    last_update: Optional[datetime]


def _routed_to_desk(data: Mapping) -> bool:
    # The contract marks a desk routing by its due_at holding only the triage deadline.
    due = data.get("due_at") or {}
    return "triage" in due


def public_status(events: Iterable[Mapping]) -> Optional[PublicStatus]:
    """Fold a complaint's events (envelopes, in log order) into its public status.

    Events that do not change the public status (amendments, escalations, citizen messages) are
    ignored, so an escalation is not reported as an update. None when nothing is known.
    """
    status, agencies, last_update = None, (), None
    agency_had_it = False
    for event in events:
        event_type = event.get("event_type")
        word = public_status_words.get(event_type)
        if word is None:
            continue
        data = event.get("data") or {}
        if event_type == "ComplaintRouted":
            if _routed_to_desk(data):
                word = DIPROSES if agency_had_it else DITERIMA
                agencies = ()
            else:
                agencies = tuple(data.get("lead_agencies") or ())
                agency_had_it = True
        elif event_type == "ComplaintRejectedByAgency":
            agency_had_it = True
        elif event_type == "ComplaintResponded" and data.get("resolved"):
            word = SELESAI
        status = word
        occurred = event.get("occurred_at")
        if occurred:
            last_update = _parse_time(occurred)
    if status is None:
        return None
    return PublicStatus(status=status, agency_codes=agencies, last_update=last_update)
