"""``python -m bench [part ...]`` — every part when none is named. Parts: baseline, append, ingest, e2e, cpu,
rebuild, scaleout, report (rewrites the table in docs/performance.md from bench/results).
``--quick`` shortens every load (for trying the harness, not for figures)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

# The bench builds fresh databases of its own: migrate them as development does.
os.environ.setdefault("NTBCARE_AUTO_MIGRATE", "1")

PARTS = ("baseline", "append", "ingest", "e2e", "cpu", "rebuild", "scaleout", "report")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="part",
                        help=f"one or more of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="short loads, to try the harness")
    parser.add_argument("--rebuild-events", type=int, default=None,
                        help="events seeded for the rebuild part (default 1,000,000; --quick 50,000)")
    args = parser.parse_args(argv)
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    parts = args.parts or PARTS
    started = time.time()
    failed: list[str] = []
    for part in parts:
        module = importlib.import_module(f"bench.{part}")
        try:
            module.run(args)
        except Exception:  # one part failing (e.g. the broker restarted under it) spoils only itself
            failed.append(part)
            traceback.print_exc()
    print(f"bench: done in {time.time() - started:.0f}s" + (f"; failed: {', '.join(failed)}" if failed else ""),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
