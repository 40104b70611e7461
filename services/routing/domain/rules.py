"""Routing rules: which agency leads on a complaint and which agencies coordinate, decided from its
category, its region and jurisdiction clues in its text ("jalan nasional", "sertifikat tanah").

The rules are data (``data/rules.yaml``), tried in order; the first that matches decides. When
none matches, the complaint goes to the desk (``rule:desk-fallback``) for manual triage. A rule
may also send a complaint to the desk on purpose (``lead: "{desk}"``), e.g. an ID-card complaint
whose district is unknown: the decision then names that rule, so the operator sees why.

Tokens in ``lead``/``coordinating``: ``{district}`` is the district/city government of the
complaint's region; a rule that needs it does not match when the region is unknown (later rules
or the fallback decide). ``{desk}`` is the desk. Pure domain code: no nameko, no SQLAlchemy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import yaml

from services.routing.domain.directory import Directory
from shared.core.reference import CATEGORIES, PRIORITIES, REGION_CODES

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "rules.yaml"

DISTRICT = "{district}"
DESK = "{desk}"
FALLBACK_ID = "desk-fallback"
FALLBACK_REASON = ("Tidak ada aturan yang cocok dengan kategori, wilayah dan isi aduan; "
                   "meja aduan memilah dan meneruskan aduan secara manual.")
REGION_CONDITIONS = ("any", "required", "unknown")

# Word-level spellings citizens use for the words the rules look for. Applied to both the text
# and the rule keywords, so "Jln. Prov." matches the keyword "jalan provinsi".
ABBREVIATIONS = {
    "jl": "jalan", "jln": "jalan", "jaln": "jalan",
    "prov": "provinsi", "propinsi": "provinsi", "provensi": "provinsi",
    "kab": "kabupaten", "kec": "kecamatan", "kel": "kelurahan", "ds": "desa",
    "rs": "rumah sakit", "pkm": "puskesmas",
    "sertipikat": "sertifikat", "sertifkat": "sertifikat",
    "ektp": "ktp", "kk": "kartu keluarga", "akte": "akta",
    "bantuan sosial": "bansos",
}
_SINGLE_WORD = {key: value for key, value in ABBREVIATIONS.items() if " " not in key}
_PHRASES = {key: value for key, value in ABBREVIATIONS.items() if " " in key}
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(text: Optional[str]) -> str:
    """Lower case, punctuation to spaces, one space between words, abbreviations spelled out."""
    words = _NON_WORD.sub(" ", (text or "").lower()).split()
    joined = " ".join(_SINGLE_WORD.get(word, word) for word in words)
    for phrase, replacement in _PHRASES.items():
        joined = f" {joined} ".replace(f" {phrase} ", f" {replacement} ").strip()
    return joined


class RuleError(ValueError):
    """The rules data is inconsistent; the message names the rule and the problem."""


@dataclass(frozen=True)
class Decision:
    lead_agencies: list[str]
    coordinating_agencies: list[str]
    decided_by: str  # "rule:<id>" (or "rule:desk-fallback")
    reason: str
    at_desk: bool = False  # the complaint stays at the desk for triage


@dataclass(frozen=True)
class Rule:
    id: str
    lead: tuple[str, ...]
    coordinating: tuple[str, ...]
    reason: str
    categories: Optional[tuple[str, ...]] = None  # None: any category
    region: str = "any"
    regions: Optional[tuple[str, ...]] = None  # only these BPS codes
    keywords_any: tuple[str, ...] = ()  # normalised
    priorities: Optional[tuple[str, ...]] = None

    @property
    def needs_district(self) -> bool:
        return DISTRICT in self.lead or DISTRICT in self.coordinating

    def matches(self, category: str, region_code: Optional[str], text: str,
                priority: Optional[str]) -> bool:
        if self.categories is not None and category not in self.categories:
            return False
        if self.region == "required" and region_code is None:
            return False
        if self.region == "unknown" and region_code is not None:
            return False
        if self.regions is not None and region_code not in self.regions:
            return False
        if self.priorities is not None and priority not in self.priorities:
            return False
        if self.keywords_any:
            padded = f" {text} "
            if not any(f" {keyword} " in padded for keyword in self.keywords_any):
                return False
        return True


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> "RuleSet":
        rules = tuple(_rule_from_record(record) for record in records)
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise RuleError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        return cls(rules)

    def check(self, directory: Directory) -> None:
        """Every agency a rule names must be in the directory."""
        for rule in self.rules:
            for code in rule.lead + rule.coordinating:
                if code not in (DISTRICT, DESK) and code not in directory:
                    raise RuleError(f"rule {rule.id!r}: unknown agency {code!r}")


def _tuple_of_strings(rule_id: str, name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, (str, int)) for item in value):
        raise RuleError(f"rule {rule_id!r}: {name} must be a string or a list of strings")
    return tuple(str(item) for item in value)


def _rule_from_record(record: Mapping[str, Any]) -> Rule:
    rule_id = record.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RuleError(f"a rule without an id: {dict(record)!r}")
    if rule_id == FALLBACK_ID:
        raise RuleError(f"rule id {FALLBACK_ID!r} is reserved for the fallback")
    unknown = set(record) - {"id", "when", "lead", "coordinating", "reason"}
    if unknown:
        raise RuleError(f"rule {rule_id!r}: unknown fields {sorted(unknown)}")
    when = record.get("when") or {}
    unknown = set(when) - {"categories", "region", "regions", "keywords_any", "priorities"}
    if unknown:
        raise RuleError(f"rule {rule_id!r}: unknown conditions {sorted(unknown)}")

    categories = None
    if "categories" in when:
        categories = _tuple_of_strings(rule_id, "categories", when["categories"])
        bad = [category for category in categories if category not in CATEGORIES]
        if bad:
            raise RuleError(f"rule {rule_id!r}: unknown categories {bad}")
    region = when.get("region", "any")
    if region not in REGION_CONDITIONS:
        raise RuleError(f"rule {rule_id!r}: region must be one of {REGION_CONDITIONS}, not {region!r}")
    regions = None
    if "regions" in when:
        regions = _tuple_of_strings(rule_id, "regions", when["regions"])
        bad = [code for code in regions if code not in REGION_CODES]
        if bad:
            raise RuleError(f"rule {rule_id!r}: unknown region codes {bad}")
    priorities = None
    if "priorities" in when:
        priorities = _tuple_of_strings(rule_id, "priorities", when["priorities"])
        bad = [priority for priority in priorities if priority not in PRIORITIES]
        if bad:
            raise RuleError(f"rule {rule_id!r}: unknown priorities {bad}")
    keywords = tuple(normalise(keyword)
                     for keyword in _tuple_of_strings(rule_id, "keywords_any", when.get("keywords_any")))
    if any(not keyword for keyword in keywords):
        raise RuleError(f"rule {rule_id!r}: an empty keyword would match every text")

    lead = _tuple_of_strings(rule_id, "lead", record.get("lead"))
    if not lead:
        raise RuleError(f"rule {rule_id!r}: a lead agency is required")
    if DESK in lead and len(lead) > 1:
        raise RuleError(f"rule {rule_id!r}: the desk cannot share the lead with agencies")
    coordinating = _tuple_of_strings(rule_id, "coordinating", record.get("coordinating"))
    reason = record.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise RuleError(f"rule {rule_id!r}: a reason (Indonesian sentence) is required")
    rule = Rule(id=rule_id, lead=lead, coordinating=coordinating, reason=reason.strip(),
                categories=categories, region=region, regions=regions,
                keywords_any=keywords, priorities=priorities)
    if rule.needs_district and region == "unknown":
        raise RuleError(f"rule {rule_id!r}: uses {DISTRICT} but only matches unknown regions")
    return rule


def load_rules(path: Optional[Path | str] = None, directory: Optional[Directory] = None) -> RuleSet:
    """Read the ordered rules; with a directory, also check that every agency they name exists."""
    with open(path or DEFAULT_PATH, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    records = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise RuleError(f"{path or DEFAULT_PATH}: expected a top-level 'rules' list")
    rules = RuleSet.from_records(records)
    if directory is not None:
        rules.check(directory)
    return rules


def _unique(codes: Iterable[str], exclude: Sequence[str] = ()) -> list[str]:
    out: list[str] = []
    for code in codes:
        if code not in out and code not in exclude:
            out.append(code)
    return out


def decide(directory: Directory, rules: Iterable[Rule], category: str, region_code: Optional[str],
           text: Optional[str], priority: Optional[str] = None) -> Decision:
    """The first matching rule's decision, or the desk fallback."""
    desk = directory.desk.code
    district = directory.district_for(region_code)
    # A region code the directory has no government for cannot fill {district}: treat as unknown.
    known_region = region_code if district is not None else None
    normalised = normalise(text)
    for rule in rules:
        if rule.needs_district and district is None:
            continue
        if not rule.matches(category, known_region, normalised, priority):
            continue
        substitutions = {DESK: desk}
        if district is not None:  # (a rule naming {district} was skipped above when it is unknown)
            substitutions[DISTRICT] = district.code
        lead = _unique(substitutions.get(code, code) for code in rule.lead)
        coordinating = _unique((substitutions.get(code, code) for code in rule.coordinating),
                               exclude=lead)
        for code in lead + coordinating:
            directory.get(code)  # raises UnknownAgencyCode on a rule the directory outgrew
        return Decision(lead_agencies=lead, coordinating_agencies=coordinating,
                        decided_by=f"rule:{rule.id}", reason=rule.reason,
                        at_desk=lead == [desk])
    return Decision(lead_agencies=[desk], coordinating_agencies=[],
                    decided_by=f"rule:{FALLBACK_ID}", reason=FALLBACK_REASON, at_desk=True)
