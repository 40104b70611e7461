"""The citizen's answer to "Sudah selesai?", recognised: a quick-reply or postback payload that
notification put on its question, or free text ("belum pak", "sdh, terima kasih", "3",
"blm jalannya msh rusak"). Pure code (no nameko, no database): the inbox asks ``recognise`` only
when the citizen's conversation points at a *closed* complaint (or the message carries one of our
payloads), and records what it says as ``CitizenAnsweredFollowUp``.

Payloads (what notification sends, ``NTBCARE_`` + what + complaint id [+ value]):

* ``NTBCARE_DONE:<complaint_id>:YES`` / ``…:NO`` — the "Sudah" / "Belum" buttons;
* ``NTBCARE_RATE:<complaint_id>:<1-5>`` — the rating buttons.

Free text, where the brief is silent (chosen to keep a new complaint a new complaint):

* a clear yes/no word first — ``sudah, sdh, udah, udh, dah, sudh`` / ``belum, blm, blum, belom,
  blom`` — is an answer whatever follows (up to 40 words: "blm jalannya msh rusak" keeps its words);
* a weaker word — ``ya, iya, selesai, beres, mantap, tidak, tdk, gak, ga, nggak, masih`` — only
  in a short message (at most 4 words), since "tidak ada air bersih di desa kami …" is a complaint;
* a number alone ("3", "4/5", "nilai 5", "5 bintang") or only stars ("⭐⭐⭐⭐") is a rating; a
  number outside 1–5 is ``unclear_rating`` (the citizen is asked again, nothing is recorded as a
  score);
* anything else is not an answer (``None``): the message goes the usual way — after a closed
  complaint it files a new one.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

SOLVED = "solved"
NOT_SOLVED = "not_solved"
RATING = "rating"
UNCLEAR_RATING = "unclear_rating"
STALE = "stale"

PAYLOAD_PREFIX = "NTBCARE_"
DONE_PAYLOAD = "NTBCARE_DONE"
RATE_PAYLOAD = "NTBCARE_RATE"

_STRONG_YES = {"sudah", "sdh", "udah", "udh", "dah", "sudh", "sudahh", "sudaah", "alhamdulillah"}
_STRONG_NO = {"belum", "blm", "blum", "belom", "blom", "blon", "belumm"}
_WEAK_YES = {"ya", "iya", "yaa", "iyaa", "y", "selesai", "beres", "mantap", "ok", "oke", "okey"}
_WEAK_NO = {"tidak", "tdk", "gak", "ga", "nggak", "ngga", "enggak", "masih", "no"}
_MAX_ANSWER_WORDS = 40
_MAX_WEAK_WORDS = 4
_WORD = re.compile(r"[a-z]+|[0-9]+")
_RATING = re.compile(r"^\s*(?:nilai|nilainya|rating|skor|score)?\s*[:=]?\s*([0-9]{1,3})\s*"
                     r"(?:/\s*5|dari\s+5)?\s*(?:bintang|star|stars)?\s*[.!]*\s*$", re.IGNORECASE)
_STARS = re.compile(r"^\s*((?:⭐|★|\*)\s*){1,9}$")


@dataclass(frozen=True)
class Answer:
    answer: str                      # solved | not_solved | rating | unclear_rating
    words: str                       # the citizen's text as written (stripped)
    score: int | None = None


@dataclass(frozen=True)
class Payload:
    """One of our quick-reply/postback payloads: which complaint it asked about, and the answer."""
    complaint_id: str
    answer: Answer


def done_payload(complaint_id: str, solved: bool) -> str:
    return f"{DONE_PAYLOAD}:{complaint_id}:{'YES' if solved else 'NO'}"


def rate_payload(complaint_id: str, score: int) -> str:
    return f"{RATE_PAYLOAD}:{complaint_id}:{score}"


def parse_payload(payload: str | None, title: str = "") -> Payload | None:
    """Our payload, understood; None for anything else (another app's button, a tampered or
    garbled payload — the message is then read as free text)."""
    if not isinstance(payload, str) or not payload.startswith(PAYLOAD_PREFIX) or len(payload) > 1000:
        return None
    parts = payload.split(":")
    if len(parts) != 3:
        return None
    kind, complaint_id, value = parts
    try:
        complaint_id = str(uuid.UUID(complaint_id))
    except ValueError:
        return None
    words = (title or "").strip()
    if kind == DONE_PAYLOAD and value in ("YES", "NO"):
        return Payload(complaint_id, Answer(SOLVED if value == "YES" else NOT_SOLVED, words))
    if kind == RATE_PAYLOAD and value.isdigit():
        score = int(value)
        if 1 <= score <= 5:
            return Payload(complaint_id, Answer(RATING, words, score))
        return Payload(complaint_id, Answer(UNCLEAR_RATING, words))
    return None


def recognise(text: str | None) -> Answer | None:
    """A free-text answer to "Sudah selesai?" / "Beri nilai 1–5", or None when the text does not
    look like one (see the module docstring)."""
    words = (text or "").strip()
    if not words or len(words) > 2000:
        return None
    rating = _RATING.match(words)
    if rating:
        score = int(rating.group(1))
        return Answer(RATING, words, score) if 1 <= score <= 5 else Answer(UNCLEAR_RATING, words)
    if _STARS.match(words):
        score = sum(words.count(star) for star in ("⭐", "★", "*"))
        return Answer(RATING, words, score) if 1 <= score <= 5 else Answer(UNCLEAR_RATING, words)
    tokens = _WORD.findall(words.lower())
    if not tokens or len(tokens) > _MAX_ANSWER_WORDS:
        return None
    first = tokens[0]
    if first in ("pak", "bu", "min", "admin", "kak", "mas", "mbak"):   # "pak, sudah" / "min blm"
        tokens = tokens[1:] or tokens
        first = tokens[0]
    if first in _STRONG_NO:
        return Answer(NOT_SOLVED, words)
    if first in _STRONG_YES:
        if len(tokens) > 1 and tokens[1] in ("tidak", "tdk", "belum", "blm", "gak"):
            return None                 # "sudah tidak …", "udah blm dicek?": not a clear answer
        return Answer(SOLVED, words, _trailing_score(tokens))
    if len(tokens) <= _MAX_WEAK_WORDS:
        if first in _WEAK_NO:
            return Answer(NOT_SOLVED, words)
        if first in _WEAK_YES:
            return Answer(SOLVED, words, _trailing_score(tokens))
    return None


def _trailing_score(tokens: list[str]) -> int | None:
    """"sdh, terima kasih 5": a solved answer that also rates (the last word a digit 1–5)."""
    last = tokens[-1]
    if len(tokens) > 1 and last.isdigit() and 1 <= int(last) <= 5:
        return int(last)
    return None
