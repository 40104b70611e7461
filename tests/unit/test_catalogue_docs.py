"""docs/events.md and docs/rpc.md are generated from the schemas and the RPC entrypoints; this
keeps the committed files equal to what the code says (regenerate: python -m shared.catalogue_docs)."""
from pathlib import Path

from shared.catalogue_docs import render_events, render_rpc

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_event_catalogue_is_in_sync():
    assert (DOCS / "events.md").read_text() == render_events(), "run: python -m shared.catalogue_docs"


def test_rpc_catalogue_is_in_sync():
    assert (DOCS / "rpc.md").read_text() == render_rpc(), "run: python -m shared.catalogue_docs"


def test_every_event_type_is_documented_with_its_fields():
    text = (DOCS / "events.md").read_text()
    for event_type, version in (("ComplaintFiled", 1), ("ComplaintRouted", 2), ("CitizenNotified", 1),
                                ("ComplaintEscalated", 2), ("ComplaintConfidentialityChanged", 1)):
        assert f"## {event_type} (v{version})" in text
    assert "| `lead_agencies` |" in text and "| `recipient_psid` |" in text
    assert "| `lifecycle` |" in text and "v1 events are lifted to v2" in text
