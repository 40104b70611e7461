"""Classify a citizen complaint: category, region (BPS code), priority and reasons.

Pure domain code for the intake service (no nameko, no SQLAlchemy). All rules and
place names live in ``data/classifier_keywords.yaml``, ``data/gazetteer.yaml`` (curated) and
``data/wilayah_ntb.tsv`` (every desa/kelurahan, generated); this module normalises Indonesian
as citizens write it and matches the rules, ``gazetteer.py`` finds the region. A place the text
does not name (or a name it cannot settle) gives ``region_code=None``, never a guess.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from services.intake.domain.gazetteer import Gazetteer, read_wilayah
from shared.core import reference

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
KEYWORDS_FILE = DATA_DIR / "classifier_keywords.yaml"
GAZETTEER_FILE = DATA_DIR / "gazetteer.yaml"
WILAYAH_FILE = DATA_DIR / "wilayah_ntb.tsv"

CATEGORIES: tuple[str, ...] = reference.CATEGORIES
PRIORITIES: tuple[str, ...] = reference.PRIORITIES

# Runs of a repeated letter ("rusaaak"); only letters, digits are kept as written.
_RUN_RE = re.compile(r"([a-z])\1+")
# "anak2", "mana2", "kecil2an": Indonesian reduplication written with a 2.
_REDUP_RE = re.compile(r"([a-z]{2,})2(an|nya)?\b")
_RAW_TOKEN_RE = re.compile(r"[A-Za-z0-9\u00C0-\u024F'’]+|[.!?\n]")
_SPLIT_ALNUM_RE = re.compile(r"\d+|[a-z]+")


@dataclass(frozen=True)
class Classification:
    category: str
    region_code: str | None
    priority: str
    reasons: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Token:
    norm: str  # normalised word (abbreviation expanded, letters collapsed)
    stem: str
    capitalised: bool  # written with a capital inside a sentence (a name signal)


@dataclass(frozen=True)
class _Pattern:
    """A keyword or phrase: per word, (written form, stem or None for exact)."""

    text: str
    words: tuple[tuple[str, str | None], ...]
    weight: int


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def _regions_from_gazetteer() -> dict[str, str]:
    data = _load_yaml(GAZETTEER_FILE)
    return {str(code): spec["name"] for code, spec in data["regions"].items()}


REGIONS: dict[str, str] = _regions_from_gazetteer()


class _FirstWordIndex:
    """``(key, pattern)`` entries found by the first word of their pattern: ``candidates`` gives,
    in their original order, the entries whose first word (written form or stem) is among a
    text's — the only ones that can match it."""

    def __init__(self, entries: list[tuple[str, "_Pattern"]]):
        self.entries = entries
        self.by_written: dict[str, list[int]] = {}
        self.by_stem: dict[str, list[int]] = {}
        for number, (_key, pattern) in enumerate(entries):
            written, stem = pattern.words[0]
            self.by_written.setdefault(written, []).append(number)
            if stem is not None:
                self.by_stem.setdefault(stem, []).append(number)

    def candidates(self, written: set[str], stems: set[str]) -> list[tuple[str, "_Pattern"]]:
        numbers: set[int] = set()
        for word in written:
            numbers.update(self.by_written.get(word, ()))
        for stem in stems:
            numbers.update(self.by_stem.get(stem, ()))
        return [self.entries[number] for number in sorted(numbers)]


class Classifier:
    """Loads the rule and gazetteer files once; ``classify`` is then cheap."""

    def __init__(self, keywords_path: Path = KEYWORDS_FILE,
                 gazetteer_path: Path = GAZETTEER_FILE,
                 wilayah_path: Path = WILAYAH_FILE) -> None:
        from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

        # (tokens, their written forms, their stems)
        self._present: tuple[list[_Token], set[str], set[str]] | None = None

        rules = _load_yaml(keywords_path)
        gaz = _load_yaml(gazetteer_path)
        wilayah, _ = read_wilayah(wilayah_path)
        factory = StemmerFactory()
        self._stemmer = factory.create_stemmer()

        self._abbrev: dict[str, tuple[str, ...]] = {
            str(k).lower(): tuple(str(v or "").split())
            for k, v in (rules.get("abbreviations") or {}).items()
        }
        self._stopwords = frozenset(rules.get("stopwords") or ())
        self._stem_overrides = {str(k): str(v) for k, v in
                                (rules.get("stem_overrides") or {}).items()}
        self._slang = {str(k): str(v) for k, v in (rules.get("slang_suffixes") or {}).items()}
        self._max_gap = int(rules.get("phrase_max_gap", 3))
        self._tie_order = list(rules["tie_order"])
        self._default = rules.get("default_category", "lainnya")
        self._min_priority = dict(rules.get("category_min_priority") or {})
        self._decisive = {str(k): int(v) for k, v in (rules.get("decisive_score") or {}).items()}
        unknown = set(self._tie_order) ^ set(CATEGORIES)
        if unknown:
            raise ValueError(f"tie_order must list exactly the categories: {unknown}")

        # Vocabulary for collapsing repeated letters: a word is only shortened
        # when the shorter form is a real word ("maaf" stays, "rusaaak" -> "rusak").
        dictionary = frozenset(w.strip().lower() for w in factory.get_words() if w.strip())
        raw_vocab: set[str] = set(dictionary)
        raw_vocab.update(self._abbrev)
        for values in self._abbrev.values():
            raw_vocab.update(values)
        for words in (rules.get("categories") or {}).values():
            for kw in words:
                raw_vocab.update(re.findall(r"[a-z]+", str(kw).lower()))
        place_words: set[str] = set()
        for name in itertools.chain(self._gazetteer_names(gaz), (r["name"] for r in wilayah)):
            place_words.update(re.findall(r"[a-z]+", name.lower().replace("'", "")))
        raw_vocab.update(place_words)
        self._vocab = frozenset(raw_vocab)
        # A place name that is no Indonesian word has no affix to strip: Sastrawi would only
        # try every prefix rule on it (the costliest words of an unseen text), so skip it.
        self._unstemmed = frozenset(place_words - dictionary)

        # Per-instance caches: the stemmer is slow, every distinct token is
        # squeezed/stemmed once for the life of the classifier.
        self._squeeze = functools.lru_cache(maxsize=100_000)(self._squeeze_uncached)
        self._stem = functools.lru_cache(maxsize=100_000)(self._stem_uncached)

        self._categories: dict[str, list[_Pattern]] = {
            cat: self._dedupe([self._pattern(k, w) for k, w in (words or {}).items()])
            for cat, words in rules["categories"].items()
        }
        self._priority: dict[str, list[_Pattern]] = {
            level: [self._pattern(k, 1) for k in words]
            for level, words in (rules.get("priority") or {}).items()
        }

        # Patterns by their first word (written form, and stem): a text is compared only with the
        # patterns whose first word it contains — a few of the ~600 — instead of every one.
        self._category_index = _FirstWordIndex(
            [(cat, pattern) for cat, patterns in self._categories.items() for pattern in patterns])
        self._priority_index = {level: _FirstWordIndex([(level, pattern) for pattern in patterns])
                                for level, patterns in self._priority.items()}

        self._gazetteer = Gazetteer(gaz, wilayah, self._norm_words, dictionary)

    # ---------------------------------------------------------------- loading
    @staticmethod
    def _gazetteer_names(gaz: dict[str, Any]) -> Iterator[str]:
        for spec in gaz["regions"].values():
            yield spec["name"]
            yield from spec.get("aliases", ())
        yield from gaz.get("ambiguous", ())
        for section in ("kecamatan", "places"):
            for entries in (gaz.get(section) or {}).values():
                for entry in entries:
                    yield entry["name"] if isinstance(entry, dict) else entry

    def _pattern(self, keyword: str, weight: int) -> _Pattern:
        keyword = str(keyword)
        exact = keyword.startswith("=")
        words = self._norm_words(keyword.lstrip("="))
        return _Pattern(
            text=" ".join(words),
            words=tuple((w, None if exact else self._stem(w)) for w in words),
            weight=int(weight),
        )

    @staticmethod
    def _dedupe(patterns: list[_Pattern]) -> list[_Pattern]:
        # "penebangan" and "ditebang" share the stem "tebang": one word in the
        # text must not score twice, so keep the heaviest of such duplicates.
        best: dict[tuple[str, ...], _Pattern] = {}
        for p in patterns:
            key = tuple(stem or written for written, stem in p.words)
            if key not in best or p.weight > best[key].weight:
                best[key] = p
        return list(best.values())

    # ---------------------------------------------------------- normalising
    def _squeeze_uncached(self, word: str) -> str:
        if word in self._vocab or not _RUN_RE.search(word):
            return word
        runs = list(_RUN_RE.finditer(word))
        if len(runs) > 4:
            return _RUN_RE.sub(r"\1", word)
        # try each run at length 1 or 2, shortest first, keep the first real word
        for lengths in itertools.product((1, 2), repeat=len(runs)):
            out, pos = [], 0
            for run, n in zip(runs, lengths):
                out.append(word[pos:run.start()])
                out.append(run.group(1) * n)
                pos = run.end()
            out.append(word[pos:])
            candidate = "".join(out)
            if candidate in self._vocab:
                return candidate
        # unknown word: a long run is shouting ("parahhh"); a double may be a name
        if any(len(r.group(0)) >= 3 for r in runs):
            return _RUN_RE.sub(r"\1", word)
        return word

    def _stem_uncached(self, word: str) -> str:
        if word in self._stem_overrides:
            return self._stem_overrides[word]
        if not word.isalpha() or len(word) <= 3 or word in self._unstemmed:
            return word
        if word not in self._vocab:
            for suffix, standard in self._slang.items():
                if word.endswith(suffix) and len(word) > len(suffix) + 3:
                    word = word[: -len(suffix)] + standard
                    break
        return self._stemmer.stem(word) or word

    def _expand(self, raw: str) -> list[str]:
        """One raw word -> normalised words (abbreviations expanded, may be empty)."""
        word = raw.lower().replace("'", "").replace("’", "")
        word = _REDUP_RE.sub(r"\1\2", word)
        out: list[str] = []
        for piece in _SPLIT_ALNUM_RE.findall(word):
            if piece.isalpha():
                piece = self._squeeze(piece)
            if piece in self._abbrev:
                out.extend(self._abbrev[piece])
            else:
                out.append(piece)
        return out

    def _norm_words(self, text: str) -> list[str]:
        words: list[str] = []
        for raw in re.findall(r"[A-Za-z0-9'’]+", text):
            words.extend(self._expand(raw))
        return words

    def _tokenise(self, text: str) -> list[_Token]:
        raws = _RAW_TOKEN_RE.findall(text)
        words = [r for r in raws if r not in ".!?\n"]
        alpha = [w for w in words if w[:1].isalpha()]
        # when most words are capitalised (Title Case, ALL CAPS) capitals say nothing
        caps_informative = bool(alpha) and (
            sum(w[0].isupper() for w in alpha) / len(alpha) < 0.5)
        tokens: list[_Token] = []
        sentence_start = True
        for raw in raws:
            if raw in ".!?\n":
                sentence_start = True
                continue
            capitalised = (caps_informative and not sentence_start and raw[0].isupper()
                           and not raw.isupper())
            sentence_start = False
            for norm in self._expand(raw):
                tokens.append(_Token(norm, self._stem(norm), capitalised))
        return tokens

    # --------------------------------------------------------------- matching
    def _words_in(self, tokens: list[_Token]) -> tuple[set[str], set[str]]:
        """The written forms and stems in ``tokens``, kept for the list being classified."""
        present = self._present
        if present is None or present[0] is not tokens:
            present = self._present = (tokens, {t.norm for t in tokens}, {t.stem for t in tokens})
        return present[1], present[2]

    def _match(self, pattern: _Pattern, tokens: list[_Token]) -> str | None:
        """Surface words of the first match of ``pattern`` in ``tokens``, or None."""

        def word_ok(tok: _Token, want: tuple[str, str | None]) -> bool:
            written, stem = want
            return tok.norm == written or (stem is not None and tok.stem == stem)

        first = pattern.words[0]
        # Most patterns' first word is nowhere in the text: say so without walking every token.
        # (Walking them made a long text cost patterns × words; a burst of 1,000 Messenger
        # bubbles, re-classified on every bubble, kept intake busy for minutes.)
        norms, stems = self._words_in(tokens)
        if first[0] not in norms and (first[1] is None or first[1] not in stems):
            return None
        for start, tok in enumerate(tokens):
            if not word_ok(tok, first):
                continue
            matched, pos = [tok.norm], start
            for want in pattern.words[1:]:
                gap, nxt = 0, pos + 1
                while nxt < len(tokens) and not word_ok(tokens[nxt], want):
                    if tokens[nxt].norm not in self._stopwords:
                        gap += 1
                    if gap > self._max_gap:
                        break
                    nxt += 1
                if nxt >= len(tokens) or gap > self._max_gap:
                    break
                matched.append(tokens[nxt].norm)
                pos = nxt
            else:
                return " ".join(matched)
        return None

    def _category(self, tokens: list[_Token]) -> tuple[str, list[str]]:
        scores: dict[str, int] = {}
        hits: dict[str, list[str]] = {}
        for cat, pattern in self._category_index.candidates(*self._words_in(tokens)):
            surface = self._match(pattern, tokens)
            if surface is not None:
                scores[cat] = scores.get(cat, 0) + pattern.weight
                if surface not in hits.setdefault(cat, []):
                    hits[cat].append(surface)
        if not scores:
            return self._default, []
        decisive = [c for c in self._tie_order
                    if c in self._decisive and scores.get(c, 0) >= self._decisive[c]]
        if decisive:
            winner = decisive[0]
        else:
            best = max(scores.values())
            winner = next(c for c in self._tie_order if scores.get(c) == best)
        return winner, hits[winner]

    def _priority_of(self, tokens: list[_Token], category: str) -> tuple[str, list[str]]:
        for level in ("urgent", "important"):
            index = self._priority_index.get(level)
            found = [] if index is None else [
                s for _, p in index.candidates(*self._words_in(tokens)) if (s := self._match(p, tokens)) is not None]
            if found:
                return level, list(dict.fromkeys(found))
        floor = self._min_priority.get(category)
        if floor in ("urgent", "important"):
            return floor, [f"kategori {category}"]
        return "normal", []

    def _region(self, tokens: list[_Token]) -> tuple[str | None, list[str]]:
        return self._gazetteer.locate(tokens)

    # ----------------------------------------------------------------- public
    def classify(self, text: str) -> Classification:
        tokens = self._tokenise(text or "")
        category, cat_reasons = self._category(tokens)
        region, region_reasons = self._region(tokens)
        priority, prio_reasons = self._priority_of(tokens, category)
        return Classification(
            category=category,
            region_code=region,
            priority=priority,
            reasons={"category": cat_reasons, "region": region_reasons,
                     "priority": prio_reasons},
        )


@functools.lru_cache(maxsize=1)
def default_classifier() -> Classifier:
    return Classifier()


def classify(text: str) -> Classification:
    """Classify one complaint text with the shared, lazily built classifier."""
    return default_classifier().classify(text)
