"""Quarantining never fails on the payload: a body nested deeper than ``json.dumps`` can follow
(found by the inbox fuzzing: 1,986 nested arrays, which ``json.loads`` had accepted) is kept as a
note instead of raising inside the quarantine's transaction."""
from __future__ import annotations

import json

from sqlalchemy import MetaData, create_engine, select

from shared.core.quarantine import Quarantine, quarantine_table


def test_a_payload_too_deep_to_serialise_is_quarantined_with_a_note():
    metadata = MetaData()
    table = quarantine_table(metadata)
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    quarantine = Quarantine(table)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with engine.begin() as connection:
        item_id = quarantine.put(connection, "webhook", "body is not a Meta delivery", deep, source="facebook")
        normal_id = quarantine.put(connection, "webhook", "not understood", {"object": "page"})
        rows = {row.item_id: row for row in connection.execute(select(table))}
    assert json.loads(rows[item_id].payload) == {"unstorable_payload": "list: RecursionError"}
    assert json.loads(rows[normal_id].payload) == {"object": "page"}
