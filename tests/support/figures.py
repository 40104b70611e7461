"""Figures the tests gather while they run and print at the end: the inputs the fuzz suite tried."""
from __future__ import annotations

from collections import Counter

TRIED: Counter = Counter()


def print_tried(terminalreporter) -> None:
    if not TRIED:
        return
    terminalreporter.section("fuzzing: inputs tried")
    for target, count in sorted(TRIED.items()):
        terminalreporter.write_line(f"{count:>7}  {target}")
    inputs = sum(n for target, n in TRIED.items() if not target.startswith(" "))
    terminalreporter.write_line(f"{inputs:>7}  inputs in all (lines indented: answers seen)")
