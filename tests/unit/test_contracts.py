"""The event contracts hold the platform together: one declaration per event type, handlers that
only see current versions, and the lifecycle decided in one place."""
from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from shared.core.consumer import EventConsumer, read_envelope
from shared.core.events import isoformat_utc, utc_now
from shared.core.events import types as ev
from shared.core.events.catalogue import (CONTRACTS, LATEST_VERSION, NeedsHistory, event_types_of,
                                     schema_for, upcast)
from shared.core.handlers import EventHandlers, handles
ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("service", ["notification", "reporting", "intake", "gateway"])
def test_only_routing_computes_the_lifecycle(service):
    """Consumers read the lifecycle from routing's events; they never import the fold."""
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "services" / service).rglob("*.py")
                 if any(name.startswith("shared.core.events.lifecycle") for name in imports_of(path))]
    assert offenders == []


def test_every_event_type_is_declared_once_with_a_constant():
    constants = {value for name, value in vars(ev).items() if name.isupper()}
    assert constants == set(CONTRACTS)
    for contract in CONTRACTS.values():
        assert sorted(contract.versions) == list(range(1, contract.latest + 1))
        assert set(contract.upcasters) == set(range(1, contract.latest)), contract.name


def test_every_routing_event_carries_the_lifecycle():
    for event_type in event_types_of("routing"):
        field = schema_for(event_type, LATEST_VERSION[event_type]).fields.get("lifecycle")
        assert field is not None and field.required, event_type


def test_a_stateless_upcaster_runs_before_the_handler_sees_the_event():
    v1 = {"event_id": str(uuid.uuid4()), "event_type": ev.COMPLAINT_AMENDED, "schema_version": 1,
          "source": "intake", "position": 1, "complaint_id": str(uuid.uuid4()), "version": 2,
          "occurred_at": isoformat_utc(utc_now()),
          "data": {"text": "lagi", "why": "more_messages", "last_citizen_message_at": None}}
    lifted = read_envelope(v1, "intake")
    assert (lifted.schema_version, lifted.data["levy_reported"]) == (2, False)
    assert "levy_reported" not in v1["data"]  # the received event itself is not changed


def test_a_pushed_v1_routing_event_waits_for_the_source_to_lift_it(tmp_path):
    from shared.core.db import Database
    from shared.core.quarantine import Quarantine, quarantine_table
    from shared.core.consumer import consumer_tables
    from sqlalchemy import MetaData

    metadata = MetaData()
    checkpoints, processed, failures = consumer_tables(metadata)
    quarantine = Quarantine(quarantine_table(metadata))
    database = Database("probe", f"sqlite:///{tmp_path / 'probe.db'}", metadata, None)
    metadata.create_all(database.engine)
    seen = []
    consumer = EventConsumer(database, quarantine, {ev.COMPLAINT_RESOLVED: lambda tx, e: seen.append(e)},
                             checkpoints, processed, failures)
    v1 = {"event_id": str(uuid.uuid4()), "event_type": ev.COMPLAINT_RESOLVED, "schema_version": 1,
          "source": "routing", "position": 1, "complaint_id": str(uuid.uuid4()), "version": 1,
          "occurred_at": isoformat_utc(utc_now()), "data": {"actor": "budi"}}
    with pytest.raises(NeedsHistory):
        upcast(v1)
    assert consumer.handle(v1, "routing") == "deferred"          # pushed: pulled later, lifted
    assert seen == [] and consumer.checkpoint("routing") == 0
    assert consumer.handle(v1, "routing", pulled=True) == "quarantined"  # the source must lift it
    assert seen == []


def test_subscriptions_come_from_the_handler_table():
    class Handlers(EventHandlers):
        @handles(ev.COMPLAINT_FILED, ev.COMPLAINT_AMENDED)
        def on_intake(self, tx, envelope):
            pass

        @handles(*event_types_of("routing"))
        def on_routing(self, tx, envelope):
            pass

    assert Handlers.subscriptions() == {
        "intake": (ev.COMPLAINT_AMENDED, ev.COMPLAINT_FILED),
        "routing": tuple(sorted(event_types_of("routing")))}
    assert Handlers.sources() == ["intake", "routing"]
    assert set(Handlers(None).table()) == {ev.COMPLAINT_FILED, ev.COMPLAINT_AMENDED,
                                          *event_types_of("routing")}
    with pytest.raises(ValueError, match="no event types"):
        handles("ComplaintTeleported")


@pytest.mark.parametrize("module, handlers", [
    ("services.intake.service", "IntakeHandlers"), ("services.routing.service", "RoutingHandlers"),
    ("services.notification.service", "NotificationHandlers"),
    ("services.reporting.service", "ReportingHandlers"),
    ("services.gateway.service", "FeedHandlers")])
def test_each_service_listens_to_exactly_what_it_handles(module, handlers):
    import importlib
    loaded = importlib.import_module(module)
    table = getattr(loaded, handlers)
    service = next(value for value in vars(loaded).values()
                   if isinstance(value, type) and getattr(value, "handler_table", None) is table)
    assert service.subscriptions == table.subscriptions()
    assert service.consumer.sources == table.sources()


def _event_type_literals(path: Path, names: set[str], root: Path = ROOT) -> list[str]:
    """``path:line: value`` of every string literal equal to an event type's name, docstrings
    excluded (comments are not in the tree)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [f"{path.relative_to(root)}:{node.lineno}: {node.value}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in docstrings]


def test_event_types_are_named_by_their_constants_only():
    """Outside ``shared/core/events/`` an event type is written ``ev.COMPLAINT_ROUTED``, never
    ``"ComplaintRouted"``: a renamed or removed type then fails at import, not in production."""
    names = {value for name, value in vars(ev).items() if name.isupper() and isinstance(value, str)}
    declared_in = ROOT / "shared" / "core" / "events"
    offenders = [found for folder in ("services", "shared") for path in sorted((ROOT / folder).rglob("*.py"))
                 if declared_in not in path.parents for found in _event_type_literals(path, names)]
    assert offenders == []


def test_the_literal_check_sees_literals_and_skips_docstrings(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""About ComplaintRouted."""\nKIND = "ComplaintRouted"\n'
                     'def f(kind):\n    """ComplaintFiled"""\n    return kind in ("ComplaintFiled", "x")\n',
                     encoding="utf-8")
    assert sorted(_event_type_literals(probe, {ev.COMPLAINT_ROUTED, ev.COMPLAINT_FILED}, tmp_path)) == [
        "probe.py:2: ComplaintRouted", "probe.py:5: ComplaintFiled"]


def test_every_routing_event_type_has_each_place_the_readme_names():
    """README "Where things go", an event type: a routing event also needs its lifecycle fold
    entry (routing cannot record it otherwise), a console timeline label, and a decision for the
    gateway's feed (allow-listed fields, or deliberately not forwarded)."""
    from services.gateway.domain import feed
    from services.routing.adapters.console import present
    from shared.core.events.lifecycle import _FOLD

    routing_types = set(event_types_of("routing"))
    assert routing_types - set(_FOLD) == set()
    assert routing_types - set(present.EVENTS) == set()
    assert routing_types - set(feed.SAFE_FIELDS) - feed.NOT_FORWARDED == set()
    assert set(feed.SAFE_FIELDS) & feed.NOT_FORWARDED == set()
