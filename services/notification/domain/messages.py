"""What notification tells the citizen: rendering the Indonesian templates in
``templates/messages.yaml`` and splitting long texts for the Send API. The public status is not
computed here: routing's events carry it (``data.lifecycle``).

Pure domain code (reads its template file, nothing else); no nameko, no SQLAlchemy.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import jinja2
import yaml

from shared.core import reference
from services.notification.domain.policy import PLATFORM_INSTAGRAM

DEFAULT_TEMPLATES_PATH = Path(__file__).resolve().parents[1] / "templates" / "messages.yaml"
# Lets a deployment edit the texts without a new image.
TEMPLATES_PATH_ENV = "NOTIFICATION_TEMPLATES_PATH"

# Meta: message.text must be *under* 2,000 characters.
SEND_API_TEXT_LIMIT = 2000
# Instagram Direct is shorter. Meta's Instagram Messaging "Send a Message" page
# (https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message/) says
# both "Text message must be less than 1000 characters" (Limitations) and "Message text must be
# UTF-8 and be a 1000 bytes or less" (Send a basic message): a part is kept under 1,000 UTF-8
# *bytes*, which meets both (a character is at least one byte; "—", "…" and emoji are several).
INSTAGRAM_TEXT_LIMIT_BYTES = 1000


# --- templates ------------------------------------------------------------------------------


def daftar(items: Iterable[object]) -> str:
    """Names joined the Indonesian way: "A, B dan C"."""
    names = [str(item) for item in items if item]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " dan " + names[-1]


def _parse_time(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("times must carry their zone (UTC)")
    return moment


def _tanggal(value: datetime | str) -> str:
    return reference.tanggal(_parse_time(value))


class Catalogue:
    """The templates of one YAML file, compiled once."""

    def __init__(self, path: os.PathLike[str] | str):
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
        self.path = Path(path)
        self._compiled: dict[str, jinja2.Template] = {}
        self._env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text for Messenger and comments, not HTML
            keep_trailing_newline=False,
        )
        self._env.filters["daftar"] = daftar
        self._env.filters["tanggal"] = _tanggal
        self._sources: dict[str, str] = {}
        for section, entries in raw.items():
            for name, source in (entries or {}).items():
                # Citizen messages are addressed by bare name, other sections as "section.name".
                key = name if section == "messages" else f"{section}.{name}"
                self._sources[key] = source

    def names(self) -> list[str]:
        return sorted(self._sources)

    def render(self, template_name: str, **context: Any) -> str:
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


def render(template_name: str, **context: Any) -> str:
    """Render one template (see messages.yaml for each one's context) as plain text."""
    return catalogue().render(template_name, **context)


def desk_reason(reason: str, **context: Any) -> str:
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


def utf8_length(text: str) -> int:
    """How many bytes ``text`` takes in UTF-8 (what Instagram counts)."""
    return len(text.encode("utf-8"))


def _cut(word: str, max_len: int, measure: Callable[[str], int]) -> int:
    """How many characters of ``word`` fit in ``max_len`` (at least one)."""
    if measure is len:
        return max(1, max_len)
    size, count = 0, 0
    for char in word:
        size += measure(char)
        if size > max_len:
            break
        count += 1
    return max(1, count)


def split_text(text: str, limit: int = SEND_API_TEXT_LIMIT,
               measure: Callable[[str], int] = len) -> list[str]:
    """Split ``text`` into ordered parts, each shorter than ``limit`` (as ``measure`` counts:
    characters by default, ``utf8_length`` for bytes).

    Sentences are kept whole when they fit; a longer sentence is split between words, and only a
    single word longer than the limit is cut (never inside a character). Line breaks inside a part
    are preserved; the whitespace at a cut is dropped. Empty text gives no parts.
    """
    if limit < 2 or (measure is not len and limit < 5):
        raise ValueError("limit must be at least 2 (5 when counting bytes)")
    max_len = limit - 1
    parts: list[str] = []
    current = ""

    def add(piece: str) -> None:
        nonlocal current
        if measure((current + piece).rstrip()) <= max_len:
            current += piece
            return
        if current.strip():
            parts.append(current.strip())
        current = piece.lstrip()

    for sentence in _sentences(text):
        if measure(sentence.strip()) <= max_len:
            add(sentence)
            continue
        for word in _WORD.findall(sentence):
            while measure(word.rstrip()) > max_len:
                size = _cut(word, max_len, measure)
                add(word[:size])
                word = word[size:]
            add(word)
    if current.strip():
        parts.append(current.strip())
    return parts


def split_for(text: str, platform: Optional[str]) -> list[str]:
    """``text`` in the parts the conversation's app takes: under 2,000 characters for Messenger
    (and comment replies), under 1,000 UTF-8 bytes for Instagram Direct."""
    if platform == PLATFORM_INSTAGRAM:
        return split_text(text, INSTAGRAM_TEXT_LIMIT_BYTES, utf8_length)
    return split_text(text)
