"""The ``tried`` fixture: fuzz tests count every input they try in it; ``tests/conftest.py``
prints the figures at the end of the run ("fuzzing: N inputs tried"), so a report can quote them."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.support.figures import TRIED


@pytest.fixture(scope="session")
def tried() -> Counter:
    return TRIED
