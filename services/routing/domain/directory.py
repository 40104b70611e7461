"""The agency directory: who can be given a complaint, what they cover, and whom a missed deadline
escalates to. The directory is data (``data/agencies.yaml``, loaded into routing's database and
editable without code); this module only reads and checks it.

Pure domain code: no nameko, no SQLAlchemy. ``Directory.from_records`` accepts the same
dictionaries whether they come from the YAML file or from database rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from shared.core.reference import CATEGORIES, REGION_CODES

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "agencies.yaml"

LEVELS = ("provincial", "district", "vertical")


class DirectoryError(ValueError):
    """The directory data is inconsistent; the message names the agency and the problem."""


class UnknownAgencyCode(LookupError):
    """A code that is not in the directory was looked up."""


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    level: str
    categories: tuple[str, ...]
    regions: tuple[str, ...]  # empty: the whole province
    supervisor: Optional[str]  # None only for the top of the escalation chain (the desk)
    is_desk: bool = False


class Directory:
    def __init__(self, agencies: Iterable[Agency]):
        self._agencies: dict[str, Agency] = {}
        for agency in agencies:
            if agency.code in self._agencies:
                raise DirectoryError(f"duplicate agency code {agency.code!r}")
            self._agencies[agency.code] = agency
        self._check()
        self._district_by_region = {
            region: agency.code
            for agency in self._agencies.values() if agency.level == "district"
            for region in agency.regions
        }

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> "Directory":
        return cls(_agency_from_record(record) for record in records)

    def _check(self) -> None:
        desks = [agency.code for agency in self._agencies.values() if agency.is_desk]
        if len(desks) != 1:
            raise DirectoryError(f"exactly one agency must be the desk (is_desk: true), found {desks}")
        district_of: dict[str, str] = {}
        for agency in self._agencies.values():
            if agency.supervisor is not None and agency.supervisor not in self._agencies:
                raise DirectoryError(
                    f"agency {agency.code!r}: unknown supervisor {agency.supervisor!r}")
            if agency.supervisor == agency.code:
                raise DirectoryError(f"agency {agency.code!r} cannot supervise itself")
            if agency.level == "district":
                if not agency.regions:
                    raise DirectoryError(f"district agency {agency.code!r} needs its regions")
                for region in agency.regions:
                    if region in district_of:
                        raise DirectoryError(
                            f"region {region} has two district governments: "
                            f"{district_of[region]!r} and {agency.code!r}")
                    district_of[region] = agency.code
        # A cycle would make "escalate to the supervisor's supervisor" loop for ever.
        for agency in self._agencies.values():
            seen = {agency.code}
            current = agency.supervisor
            while current is not None:
                if current in seen:
                    raise DirectoryError(f"supervisor chain of {agency.code!r} loops through {current!r}")
                seen.add(current)
                current = self._agencies[current].supervisor

    def get(self, code: str) -> Agency:
        try:
            return self._agencies[code]
        except KeyError:
            raise UnknownAgencyCode(f"no agency with code {code!r} in the directory") from None

    def __contains__(self, code: object) -> bool:
        return code in self._agencies

    def all(self) -> list[Agency]:
        return list(self._agencies.values())

    @property
    def desk(self) -> Agency:
        return next(agency for agency in self._agencies.values() if agency.is_desk)

    def district_for(self, region_code: Optional[str]) -> Optional[Agency]:
        """The district/city government of a BPS region, or None for an unknown region."""
        code = self._district_by_region.get(region_code) if region_code else None
        return self._agencies[code] if code else None

    def supervisor_of(self, code: str) -> Optional[str]:
        """The code of the agency a missed deadline of ``code`` escalates to (None for the desk)."""
        return self.get(code).supervisor


def _agency_from_record(record: Mapping[str, Any]) -> Agency:
    code = record.get("code")
    if not isinstance(code, str) or not code.strip():
        raise DirectoryError(f"an agency without a code: {dict(record)!r}")
    known = {"code", "name", "level", "categories", "regions", "supervisor", "is_desk"}
    unknown = set(record) - known
    if unknown:
        raise DirectoryError(f"agency {code!r}: unknown fields {sorted(unknown)}")
    name = record.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DirectoryError(f"agency {code!r}: a name is required")
    level = record.get("level")
    if level not in LEVELS:
        raise DirectoryError(f"agency {code!r}: level must be one of {LEVELS}, not {level!r}")
    categories = tuple(record.get("categories") or ())
    bad = [category for category in categories if category not in CATEGORIES]
    if bad:
        raise DirectoryError(f"agency {code!r}: unknown categories {bad}")
    # YAML reads an unquoted 5201 as an int; BPS codes are strings everywhere else.
    regions = tuple(str(region) for region in (record.get("regions") or ()))
    bad = [region for region in regions if region not in REGION_CODES]
    if bad:
        raise DirectoryError(f"agency {code!r}: unknown region codes {bad}")
    supervisor = record.get("supervisor")
    return Agency(code=code, name=name, level=level, categories=categories, regions=regions,
                  supervisor=supervisor or None, is_desk=bool(record.get("is_desk", False)))


def load_directory(path: Optional[Path | str] = None) -> Directory:
    with open(path or DEFAULT_PATH, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    records = document.get("agencies") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise DirectoryError(f"{path or DEFAULT_PATH}: expected a top-level 'agencies' list")
    return Directory.from_records(records)
