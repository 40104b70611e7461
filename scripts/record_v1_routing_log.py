"""Record a real v1-era log (routing's events before they carried the lifecycle) for
``tests/data/v1_routing_log.json``: run the *old* intake and routing code on throwaway SQLite
databases, file the histories of ``tests/support/lifecycle_histories.py`` through the old intake,
let the old routing route them and play the same commands, and write both logs as they were
stored. The tree before v2 is exported, never checked out here:

    git archive 5982273^ | tar -x -C /tmp/v1tree
    PYTHONPATH=/tmp/v1tree .venv/bin/python scripts/record_v1_routing_log.py /tmp/v1tree

The texts are made up and filed through the API channel without reporter details, so the log
holds no personal data (officers are first names of the scripted histories)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
OUT = HERE / "tests" / "data" / "v1_routing_log.json"


def main(v1_tree: str) -> None:
    import yaml

    tree = Path(v1_tree).resolve()
    assert str(tree) in sys.path[:2] or os.environ.get("PYTHONPATH", "").startswith(str(tree)), \
        "run with PYTHONPATH=<the v1 tree>, so its services and shared are imported"
    spec = importlib.util.spec_from_file_location("histories", HERE / "tests/support/lifecycle_histories.py")
    histories = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(histories)

    work = Path(tempfile.mkdtemp(prefix="v1log-"))
    shipped = yaml.safe_load((tree / "services/routing/data/rules.yaml").read_text(encoding="utf-8"))
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [histories.TWO_LEADS_RULE] + shipped["rules"]},
                                    allow_unicode=True), encoding="utf-8")
    os.environ["ROUTING_RULES_FILE"] = str(rules)
    for name in ("ROUTING_SLA_SECONDS", "ROUTING_AGENCIES_FILE", "ROUTING_TOKENS"):
        os.environ.pop(name, None)

    from shared.consumer import EventConsumer
    from shared.events import utc_now
    from services.intake.filing import file_new
    from services.intake.store import build_store as intake_store, record_new_complaint
    from services.routing.service import build_store as routing_store, handlers, workflow_for
    assert Path(sys.modules["services.routing.service"].__file__).is_relative_to(tree)

    intake = intake_store(f"sqlite:///{work / 'intake.db'}")
    intake.database.create_all()
    routing = routing_store(f"sqlite:///{work / 'routing.db'}")
    routing.database.create_all()
    workflow = workflow_for(routing)
    consumer = EventConsumer(routing.database, routing.quarantine, handlers(routing),
                             routing.checkpoints, routing.processed, routing.failures)

    ids, codes = {}, {}
    for history, text in histories.FILINGS:
        new = file_new({"text": text, "channel": "api"}, utc_now())
        with intake.database.transaction() as tx:
            record_new_complaint(tx, new)
        ids[history], codes[history] = new.complaint_id, new.tracking_code
    intake_log = intake.events_since(0, 1000)
    for event in intake_log:
        assert consumer.handle(event, "intake") == "handled", event
    histories.play(workflow, ids, codes, utc_now)
    routing_log = routing.events_since(0, 1000)
    assert {e["schema_version"] for e in routing_log} == {1}

    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "5982273^"], capture_output=True,
                            text=True, check=True).stdout.strip()
    OUT.write_text(json.dumps({
        "recorded_with": f"{commit} (the tree before routing's events carried the lifecycle)",
        "recorded_by": "scripts/record_v1_routing_log.py",
        "histories": ids,
        "intake": intake_log, "routing": routing_log}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(intake_log)} intake and {len(routing_log)} routing events")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/v1tree")
