"""Names the reports print beyond the shared reference data (``shared.core.reference``: categories,
regions, status words, months): the region key of complaints without one, and agency names.
Agency names travel in routing's events (``lifecycle.agency_names``, from routing's directory)
and the projection keeps them; an agency no event has named is shown by its code, so a new agency
never breaks a report."""
from __future__ import annotations

from typing import Mapping

from shared.core import reference
#: Reports group complaints without a region under this key.
UNKNOWN_REGION = "unknown"


def region_name(code: str | None) -> str:
    return reference.region_name(None if code == UNKNOWN_REGION else code)


def agency_name(code: str, known: Mapping[str, str] | None = None) -> str:
    """``known``: the names routing's events carried (its directory's); an agency no event has
    named is shown by its code. No second list of names here: it would drift from the directory."""
    return (known or {}).get(code) or code
