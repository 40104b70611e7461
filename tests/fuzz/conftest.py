"""Counts every input the fuzz suite tries and prints the figures at the end of the run
("fuzzing: N inputs tried"), so a report can quote them."""
from __future__ import annotations

from collections import Counter

import pytest

TRIED: Counter = Counter()


@pytest.fixture(scope="session")
def tried() -> Counter:
    return TRIED


def pytest_terminal_summary(terminalreporter):
    if not TRIED:
        return
    terminalreporter.section("fuzzing: inputs tried")
    for target, count in sorted(TRIED.items()):
        terminalreporter.write_line(f"{count:>7}  {target}")
    inputs = sum(n for target, n in TRIED.items() if not target.startswith(" "))
    terminalreporter.write_line(f"{inputs:>7}  inputs in all (lines indented: answers seen)")
