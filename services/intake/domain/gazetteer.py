"""The classifier's gazetteer of NTB: which kabupaten/kota a complaint's text is about, and why.

Pure domain code. Two files are merged at load: ``data/wilayah_ntb.tsv`` (every kecamatan, desa
and kelurahan with its Kemendagri code and postal codes, generated from maintained datasets by
``python -m scripts.regenerate_gazetteer``) and ``data/gazetteer.yaml`` (hand-curated: kabupaten
aliases, spelling variants, landmarks, deliberately ambiguous names, words that need context).

Names are indexed once on their normalised words (first word -> the lengths to try), so finding
the places in a text costs a few dict look-ups per word whatever the size of the gazetteer. A name
that several regions share is settled by the rules in ``_settle`` (the reason is given), the place
of the problem wins over where the citizen lives, and no rule ever guesses between equals.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

# Specificity of a name: a desa, kelurahan or landmark says where the problem is; a kecamatan
# (or a postal code) less precisely; a kabupaten name is often only the agency addressed.
RANK = {"landmark": 3, "desa": 3, "kelurahan": 3, "kecamatan": 2, "postal": 2, "region": 1,
        "ambiguous": 0}
# When nothing else settles a shared name: the better-known reading first.
KIND_PREFERENCE = ("landmark", "kecamatan", "kelurahan", "desa")
# Context levels: 0 none needed; 1 after a context word or capitalised mid-sentence; 2 (an
# ordinary word as a village name) only after an administrative word or capitalised; 3 (a
# better-known place outside NTB: Surabaya, Senayan, Bali) only after an administrative word.
FREE, CONTEXT, STRICT, ADMIN = 0, 1, 2, 3

BUILDS = 0  # how many indexes this process built (a test keeps it at one per classifier)


class Token(Protocol):
    @property
    def norm(self) -> str: ...

    @property
    def capitalised(self) -> bool: ...

    @property
    def stem(self) -> str: ...


@dataclass(frozen=True)
class Place:
    name: str
    region: str | None  # BPS kabupaten/kota code; None for a deliberately ambiguous name
    kind: str           # region, kecamatan, desa, kelurahan, landmark, postal, ambiguous
    context: int = FREE
    district: str | None = None  # Kemendagri kecamatan code (kecamatan, desa, kelurahan)


@dataclass
class _Mention:
    pos: int
    surface: str
    places: list[Place]
    residence: bool = False
    region: str | None = None
    rule: str = ""
    kinds: tuple[str, ...] = ()  # the readings kept for the chosen region, most specific first

    def choose(self, region: str | None, rule: str = "", among: list[Place] | None = None) -> None:
        self.region, self.rule = region, rule
        kept = {p.kind for p in (among or self.places) if p.region == region}
        self.kinds = tuple(sorted(kept, key=lambda k: -RANK[k]))

    @property
    def rank(self) -> int:
        return RANK[self.kinds[0]] if self.kinds else 0


def _deletes(word: str) -> set[str]:
    return {word[:k] + word[k + 1:] for k in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """One letter added, left out, changed or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:k] + long_[k + 1:] == short for k in range(len(long_)))


def region_code(kemendagri: str) -> str:
    """"52.71.02.1008" -> "5271": the first two parts are the BPS kabupaten/kota code."""
    parts = kemendagri.split(".")
    return parts[0] + parts[1]


def read_wilayah(path: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The generated TSV's rows and its header (source, version, licence) lines."""
    rows, header = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                header.append(line[1:].strip())
                continue
            code, kind, name, postal = line.rstrip("\n").split("\t")
            rows.append({"code": code, "kind": kind, "name": name, "postal": postal})
    return rows, {"header": "\n".join(header)}


class Gazetteer:
    """Index of every name; ``locate(tokens)`` -> (region code or None, reasons)."""

    def __init__(self, curated: dict[str, Any], wilayah: list[dict[str, str]],
                 norm_words: Callable[[str], list[str]], dictionary: frozenset[str]) -> None:
        global BUILDS
        BUILDS += 1
        self._norm_words = norm_words
        self._dictionary = dictionary

        def words(key: str) -> frozenset[str]:
            return frozenset(norm_words(" ".join(curated.get(key) or ())))

        self._context = words("context_words")
        self._admin = words("admin_words")
        self._residence = words("residence_words")
        self._urban = words("urban_words")
        generic = words("generic_words")
        place_first = {tuple(norm_words(n)) for n in curated.get("place_first") or ()}
        self._names: dict[tuple[str, ...], list[Place]] = {}
        self._postal: dict[str, set[str]] = {}
        self.districts: dict[str, str] = {}
        self._suffixes = words("dropped_suffixes")
        no_short = words("no_short_form")
        short: list[tuple[str, Place]] = []

        # hand-curated first: its kabupaten aliases, kecamatan spellings and flags
        for code, spec in curated["regions"].items():
            for alias in [spec["name"], *spec.get("aliases", ())]:
                self._add(alias, Place(alias, str(code), "region"))
        curated_kec: set[tuple[tuple[str, ...], str]] = set()
        # names the curated file marks as ordinary words: the dataset's places of that name too
        worded: set[tuple[str, ...]] = {tuple(norm_words(n)) for n in curated.get("common_words") or ()}
        for section, kind in (("kecamatan", "kecamatan"), ("places", "landmark")):
            for code, entries in (curated.get(section) or {}).items():
                for entry in entries:
                    name = entry["name"] if isinstance(entry, dict) else entry
                    ctx = CONTEXT if isinstance(entry, dict) and entry.get("needs_context") else FREE
                    self._add(name, Place(name, str(code), kind, ctx))
                    if kind == "kecamatan":
                        curated_kec.add((tuple(norm_words(name)), str(code)))
                    if ctx != FREE:
                        worded.add(tuple(norm_words(name)))

        elsewhere = {tuple(norm_words(n)) for n in curated.get("elsewhere") or ()}

        def auto_context(key: tuple[str, ...], strict: int) -> int:
            if key in elsewhere:
                return ADMIN
            if key in worded:
                return strict
            if key in place_first:
                return FREE
            if len(key) == 1:
                w = key[0]
                return strict if (w in dictionary or w in generic or len(w) <= 3) else FREE
            return strict if all(w in generic or len(w) <= 2 for w in key) else FREE

        for row in wilayah:
            kind, name, code = row["kind"], row["name"], row["code"]
            if kind in ("kabupaten", "kota"):
                continue  # their names are curated (bare "Bima" is either of two)
            region = region_code(code)
            key = tuple(norm_words(name))
            if kind == "kecamatan":
                self.districts[code] = name
                if (key, region) in curated_kec:
                    # the curated spelling and flags stay; it learns its Kemendagri code
                    for form in (key, ("".join(key),)):
                        self._names[form] = [
                            replace(p, district=code) if (p.kind, p.region) == (kind, region) else p
                            for p in self._names.get(form, ())]
                    continue
                self._add(name, Place(name, region, kind, auto_context(key, CONTEXT), code))
            else:
                district = ".".join(code.split(".")[:3])
                self._add(name, Place(name, region, kind, auto_context(key, STRICT), district))
                # "Kekalik Jaya" is written "Kekalik": the distinctive part alone, with context
                if (len(key) == 2 and key[1] in self._suffixes and len(key[0]) >= 5
                        and key[0] not in no_short and auto_context(key[:1], STRICT) == FREE):
                    short.append((key[0], Place(name, region, kind, CONTEXT, district)))
            for postal in filter(None, row["postal"].split(",")):
                self._postal.setdefault(postal, set()).add(region)
        for word, place in short:
            self._add(word, place)
        for name in curated.get("ambiguous") or ():
            self._add(name, Place(name, None, "ambiguous"))

        # one-letter slips: every one-word name of 6+ letters under each of its deletions
        self._spellings: dict[str, set[str]] = {}
        for key in self._names:
            if len(key) == 1 and len(key[0]) >= 6 and key[0].isalpha():
                for variant in {key[0], *_deletes(key[0])}:
                    self._spellings.setdefault(variant, set()).add(key[0])

        # first word -> the name lengths starting with it, longest first
        lengths: dict[str, set[int]] = {}
        for key in self._names:
            lengths.setdefault(key[0], set()).add(len(key))
        self._lengths = {w: sorted(ns, reverse=True) for w, ns in lengths.items()}

    # ---------------------------------------------------------------- loading
    def _add(self, name: str, place: Place) -> None:
        words = tuple(self._norm_words(name))
        if not words:
            return
        forms = [words]
        if len(words) > 1:
            forms.append(("".join(words),))  # "batu layar" is also written "batulayar"
        if len(words) > 1 and words[-1] in ("i", "ii", "iii", "satu", "dua", "tiga"):
            forms.append(words[:-1])  # "Kandai I", "Kandai Dua": citizens write "Kandai"
        for form in forms:
            places = self._names.setdefault(form, [])
            if place.kind == "ambiguous":
                places[:] = [place]  # a curated ambiguity is never re-guessed
            elif places and places[0].kind == "ambiguous":
                continue
            elif place.kind != "landmark" and any(
                    p.kind == "region" and p.region == place.region for p in places):
                continue  # "Mataram", "Dompu": the kabupaten/kota itself, not its kecamatan
            elif all((p.region, p.kind, p.district) != (place.region, place.kind, place.district)
                     for p in places):
                places.append(place)

    def names(self) -> Iterable[tuple[str, ...]]:
        return self._names.keys()

    def places(self, key: tuple[str, ...]) -> list[Place]:
        return list(self._names.get(key, ()))

    # --------------------------------------------------------------- matching
    def _fits(self, place: Place, tokens: Sequence[Token], i: int) -> bool:
        if place.context == FREE:
            return True
        prev = tokens[i - 1].norm if i else ""
        if place.context == ADMIN:
            return prev in self._admin
        if tokens[i].capitalised:
            return True
        if place.context == CONTEXT:
            return prev in self._context or prev in self._admin
        return prev in self._admin

    def _mentions(self, tokens: Sequence[Token]) -> list[_Mention]:
        found: list[_Mention] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i].norm
            if len(tok) == 5 and tok.isdigit() and tok in self._postal:
                places = [Place(tok, r, "postal") for r in sorted(self._postal[tok])]
                found.append(_Mention(i, tok, places))
                i += 1
                continue
            for n in self._lengths.get(tok, ()):
                if i + n > len(tokens):
                    continue
                key = tuple(t.norm for t in tokens[i:i + n])
                places = [p for p in self._names.get(key, ()) if self._fits(p, tokens, i)]
                if not places:
                    continue
                found.append(_Mention(i, " ".join(key), places))
                i += n
                break
            else:
                near = self._near_miss(tokens, i)
                if near is not None:
                    found.append(near)
                    i += len(near.surface.split())
                else:
                    i += 1
        for m in found:
            before = {t.norm for t in tokens[max(0, m.pos - 4):m.pos]}
            m.residence = bool(before & self._residence)
        return found

    def _near_miss(self, tokens: Sequence[Token], i: int) -> _Mention | None:
        """Right after "desa"/"kec."/"kel." a name is expected: "labu api" for Labuapi, and a
        one-letter slip in a long name ("pringgrata", "masbagek") are read as the name."""
        if not i or tokens[i - 1].norm not in self._admin:
            return None
        pair = tokens[i].norm + tokens[i + 1].norm if i + 1 < len(tokens) else ""
        if pair and (pair,) in self._names:
            places = [p for p in self._names[(pair,)] if p.region is not None]
            if places:
                surface = f"{tokens[i].norm} {tokens[i + 1].norm}"
                return _Mention(i, surface, places, rule=f"written apart: {pair}")
        word = tokens[i].norm
        if (len(word) < 6 or not word.isalpha() or (word,) in self._names
                or word in self._dictionary or tokens[i].stem in self._dictionary):
            return None  # "desa tetangga", "desa terpencil": an ordinary word, not a slip
        found = {name for variant in _deletes(word) for name in self._spellings.get(variant, ())}
        found |= self._spellings.get(word, set())  # a letter left out of the name
        found = {name for name in found if _one_edit(word, name)}
        if len(found) != 1:
            return None  # no name, or several: no guess
        name = found.pop()
        places = [p for p in self._names[(name,)] if p.region is not None]
        return _Mention(i, word, places, rule=f"spelling close to {name}") if places else None

    def _settle(self, m: _Mention, others: list[_Mention], prev: str, urban: bool) -> None:
        """Choose the region of a name several regions share, and say which rule chose."""
        places = [p for p in m.places if p.region is not None]
        # "kec. Tanjung" is the kecamatan; "desa"/"kelurahan" before a name is a weaker clue
        # (citizens call a kelurahan a desa), used after what the text names
        if prev in ("kecamatan", "camat") and any(p.kind == "kecamatan" for p in places):
            places = [p for p in places if p.kind == "kecamatan"]
            if len({p.region for p in places}) == 1:
                m.choose(places[0].region, f"'{prev} {m.surface}'", places)
                return
        if prev in ("kelurahan", "lurah", "lingkungan"):
            wanted: tuple[str, ...] = ("kelurahan",)
        elif prev in ("desa", "dusun", "kades"):
            wanted = ("desa", "kelurahan")
        else:
            wanted = ()
        regions = {p.region for p in places}
        named_districts = {p.district for o in others for p in o.places
                           if p.kind == "kecamatan" and o.region in (None, p.region)}
        by_district = {p.region for p in places if p.district in named_districts}
        if len(by_district) == 1:
            kec = next(self.districts.get(p.district or "", "") for p in places
                       if p.district in named_districts)
            m.choose(by_district.pop(), f"its kecamatan {kec} is named",
                     [p for p in places if p.district in named_districts])
            return
        sure = [o for o in others if o.region is not None and o.surface != m.surface]
        near = {o.region for o in sure} & regions
        if len(near) == 1:
            region = near.pop()
            m.choose(region, "also named: " + ", ".join(o.surface for o in sure if o.region == region),
                     places)
            return
        for kind in wanted:
            named_kind = [p for p in places if p.kind == kind]
            if len({p.region for p in named_kind}) == 1:
                m.choose(named_kind[0].region, f"'{prev} {m.surface}'", named_kind)
                return
            if named_kind:
                places = named_kind
                break
        if urban:
            kelurahan = {p.region for p in places if p.kind == "kelurahan"}
            if len(kelurahan) == 1:
                m.choose(kelurahan.pop(), "urban text: the kelurahan",
                         [p for p in places if p.kind == "kelurahan"])
                return
        for kind in KIND_PREFERENCE:
            of_kind = {p.region for p in places if p.kind == kind}
            if len(of_kind) == 1:
                m.choose(of_kind.pop(), f"no other clue: the {kind}",
                         [p for p in places if p.kind == kind])
                return
            if of_kind:
                return  # equals: no guess

    def locate(self, tokens: Sequence[Token]) -> tuple[str | None, list[str]]:
        mentions = [m for m in self._mentions(tokens) if m.places[0].kind != "ambiguous"]
        for m in mentions:
            regions = {p.region for p in m.places}
            if len(regions) == 1:
                m.choose(regions.pop(), m.rule)
        # settle shared names with what the text says unambiguously, twice so that one
        # settled name can settle another ("Pagutan ... Karang Baru, Mataram"). A name written
        # again with the same word before it is settled once: a long text (a burst of Messenger
        # bubbles) costs the distinct names squared, not the mentions squared.
        groups: dict[tuple[str, str], list[_Mention]] = {}
        for m in mentions:
            prev = tokens[m.pos - 1].norm if m.pos else ""
            groups.setdefault((m.surface, prev), []).append(m)
        urban = any(t.norm in self._urban for t in tokens)
        for _ in range(2):
            firsts = [group[0] for group in groups.values()]
            for (surface, prev), group in groups.items():
                m = group[0]
                if m.region is None:
                    self._settle(m, [o for o in firsts if o is not m], prev, urban)
                    for other in group[1:]:
                        other.region, other.rule, other.kinds = m.region, m.rule, m.kinds
        settled = [m for m in mentions if m.region is not None]
        if not settled:
            return None, []
        problem = [m for m in settled if not m.residence]
        pool = problem or settled
        by_region: dict[str, list[_Mention]] = {}
        for m in pool:
            by_region.setdefault(m.region or "", []).append(m)

        def strength(code: str) -> tuple[int, int, int]:
            hits = by_region[code]
            # most specific name, then most mentions, then first mentioned
            return (max(h.rank for h in hits), len(hits), -hits[0].pos)

        code = max(sorted(by_region), key=strength)
        hits = by_region[code]
        reasons = list(dict.fromkeys(h.surface for h in hits))
        best = max(hits, key=lambda h: h.rank)
        why = f"{best.surface}: {'/'.join(best.kinds)}"
        if best.rule:
            why += f" ({best.rule})"
        if len(by_region) > 1:
            why += "; most specific place named"
        if problem and len(problem) < len(settled) and any(
                m.region != code for m in settled if m.residence):
            why += "; where the citizen lives is not the place of the problem"
        reasons.append("why: " + why)
        return code, reasons
