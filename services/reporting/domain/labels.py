"""Names the reports print beyond the shared reference data (``shared.core.reference``: categories,
regions, status words, months): the region key of complaints without one, and agency names.
Agency names travel in routing's events (``lifecycle.agency_names``) and the projection keeps
them; ``AGENCY_NAMES`` is only the fallback for an agency no event has named, and an agency
missing from both is shown by its code, so a new agency never breaks a report."""
from __future__ import annotations

from typing import Mapping

from shared.core import reference
#: Reports group complaints without a region under this key.
UNKNOWN_REGION = "unknown"

AGENCY_NAMES = {
    "diskop-ukm": "Dinas Koperasi dan UKM",
    "dlhk": "Dinas Lingkungan Hidup dan Kehutanan",
    "dpupr": "Dinas PUPR",
    "perkim": "Dinas Perumahan dan Permukiman",
    "dinsos": "Dinas Sosial",
    "dikes": "Dinas Kesehatan",
    "inspektorat": "Inspektorat",
    "biro-organisasi": "Biro Organisasi",
    "pemkab-lobar": "Pemkab Lombok Barat", "pemkab-loteng": "Pemkab Lombok Tengah",
    "pemkab-lotim": "Pemkab Lombok Timur", "pemkab-sumbawa": "Pemkab Sumbawa",
    "pemkab-dompu": "Pemkab Dompu", "pemkab-bima": "Pemkab Bima",
    "pemkab-ksb": "Pemkab Sumbawa Barat", "pemkab-klu": "Pemkab Lombok Utara",
    "pemkot-mataram": "Pemkot Mataram", "pemkot-bima": "Pemkot Bima",
    "polda-ntb": "Polda NTB (Saber Pungli)", "bpn-ntb": "Kanwil BPN NTB",
    "kejati-ntb": "Kejati NTB", "bpjn-ntb": "BPJN NTB", "bws-nt1": "BWS Nusa Tenggara I",
}


def region_name(code: str | None) -> str:
    return reference.region_name(None if code == UNKNOWN_REGION else code)


def agency_name(code: str, known: Mapping[str, str] | None = None) -> str:
    """``known``: names the events carried (routing's directory), preferred to the fallback."""
    return (known or {}).get(code) or AGENCY_NAMES.get(code, code)
