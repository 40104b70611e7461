"""Generates docs/events.md and docs/rpc.md from the code itself — the marshmallow event schemas
and the services' ``@rpc`` entrypoints — so the catalogues cannot drift (a test compares them).
Run ``python -m shared.catalogue_docs`` after changing a schema or an RPC."""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from marshmallow import fields

from shared.core.events.catalogue import CONTRACTS

ROOT = Path(__file__).resolve().parents[1]

SERVICE_CLASSES = {
    "intake": "services.intake.service:IntakeService",
    "routing": "services.routing.service:RoutingService",
    "notification": "services.notification.service:NotificationService",
    "reporting": "services.reporting.service:ReportingService",
}


def _field_type(field: fields.Field) -> str:
    if isinstance(field, fields.List):
        return f"list of {_field_type(field.inner)}"
    if isinstance(field, fields.Nested):
        nested = field.nested if isinstance(field.nested, type) else type(field.schema)
        names = ", ".join(nested._declared_fields)
        return f"object {{{names}}}"
    if isinstance(field, fields.Dict):
        return "object"
    if isinstance(field, fields.Boolean):
        return "bool"
    if isinstance(field, fields.Integer):
        return "int"
    if isinstance(field, fields.String):
        for validator in field.validators:
            choices = getattr(validator, "choices", None)
            if choices:
                return "one of " + ", ".join(f"`{c}`" for c in choices)
        if any(getattr(v, "__name__", "") == "_iso_utc" for v in field.validators):
            return "ISO 8601 time (UTC)"
        return "string"
    return type(field).__name__


def render_events() -> str:
    lines = [
        "# Event catalogue",
        "",
        "Generated from `shared/core/events/catalogue.py` by `python -m shared.catalogue_docs`; a test keeps",
        "it in sync. Every event travels in the envelope below, on the topic exchange `<source>.events`",
        "with the event type as routing key. Producers may add fields to `data`; the listed ones are",
        "always there.",
        "",
        "## Envelope",
        "",
        "| field | type |",
        "|---|---|",
        "| `event_id` | UUID |",
        "| `event_type` | string, e.g. `ComplaintFiled` |",
        "| `schema_version` | int |",
        "| `source` | service name |",
        "| `position` | int, gap-free order in the source's log, from 1 |",
        "| `complaint_id` | UUID |",
        "| `version` | int, per complaint within the source |",
        "| `occurred_at` | ISO 8601, UTC |",
        "| `data` | object (below) |",
        "",
    ]
    lines += ["Every routing event carries `lifecycle`: the complaint's state after it, as routing "
              "decided it (see [lifecycle.md](lifecycle.md)).", ""]
    for contract in CONTRACTS.values():
        event_type, version, owner = contract.name, contract.latest, contract.owner
        schema_class = contract.versions[version]
        lines += [f"## {event_type} (v{version}) — from `{owner}`", "",
                  f"Exchange `{owner}.events`, routing key `{event_type}`.", ""]
        for old, upcaster in sorted(contract.upcasters.items()):
            where = ("by the source, with the complaint's earlier events" if upcaster.needs_history
                     else "in every consumer, before its handler")
            lines += [f"v{old} events are lifted to v{old + 1} {where} (`{upcaster.lift.__name__}`).", ""]
        lines += ["| field | type | required | null allowed |", "|---|---|---|---|"]
        for name, field in schema_class._declared_fields.items():
            lines.append(f"| `{name}` | {_field_type(field)} | {'yes' if field.required else 'no'} | "
                         f"{'yes' if field.allow_none else 'no'} |")
        lines.append("")
    lines += [
        "## Listening from another system (pika)",
        "",
        "```python",
        "import json, pika",
        "connection = pika.BlockingConnection(pika.URLParameters('amqp://user:password@broker:5672/'))",
        "channel = connection.channel()",
        "channel.queue_declare('dinas-x.complaints', durable=True)",
        "channel.queue_bind('dinas-x.complaints', 'intake.events', routing_key='ComplaintFiled')",
        "channel.queue_bind('dinas-x.complaints', 'routing.events', routing_key='ComplaintRouted')",
        "",
        "def on_event(ch, method, properties, body):",
        "    event = json.loads(body)          # the envelope above",
        "    print(event['event_type'], event['position'], event['complaint_id'])",
        "    ch.basic_ack(method.delivery_tag)  # ack after your own commit",
        "",
        "channel.basic_consume('dinas-x.complaints', on_event)",
        "channel.start_consuming()",
        "```",
        "",
        "Missed something (your queue did not exist yet)? Pull the log: `<source>.events_since(position,",
        "limit)` over RPC (see [rpc.md](rpc.md)) and deduplicate by `(source, position)`.",
        "",
    ]
    return "\n".join(lines)


def rpc_methods(service_class) -> list[tuple[str, str, str]]:
    from nameko.rpc import Rpc
    found = []
    for name, member in inspect.getmembers(service_class, inspect.isfunction):
        entrypoints = getattr(member, "nameko_entrypoints", set())
        if any(isinstance(e, Rpc) for e in entrypoints):
            signature = str(inspect.signature(member)).replace("(self, ", "(").replace("(self)", "()")
            doc = inspect.getdoc(member) or ""
            found.append((name, signature, doc.split("\n\n")[0].replace("\n", " ")))
    return found


def render_rpc() -> str:
    lines = [
        "# RPC catalogue",
        "",
        "Generated from the services' `@rpc` entrypoints by `python -m shared.catalogue_docs`; a test",
        "keeps it in sync. Call with nameko (`ClusterRpcProxy`) or any AMQP client speaking nameko's",
        "RPC protocol on the `nameko-rpc` exchange. Arguments and results are JSON. Errors arrive as",
        "`ValidationFailed`, `NotFound`, `Forbidden`, `IllegalAction` or `Conflict` (import",
        "`shared.glue.remote_errors` to get them as real exception types).",
        "",
        "```python",
        "from nameko.standalone.rpc import ClusterRpcProxy",
        "import shared.glue.remote_errors  # registers the remote error types",
        "with ClusterRpcProxy({'AMQP_URI': 'amqp://guest:guest@127.0.0.1:5672/'}, timeout=30) as rpc:",
        "    filed = rpc.intake.file_complaint({'text': 'Jalan rusak di Praya', 'channel': 'api'})",
        "    page = rpc.intake.events_since(0, 1000)",
        "```",
        "",
    ]
    for service, target in SERVICE_CLASSES.items():
        module_name, _, class_name = target.partition(":")
        service_class = getattr(importlib.import_module(module_name), class_name)
        lines += [f"## {service}", "", "| call | what it does |", "|---|---|"]
        for name, signature, doc in rpc_methods(service_class):
            lines.append(f"| `{service}.{name}{signature}` | {doc or '—'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "events.md").write_text(render_events())
    (ROOT / "docs" / "rpc.md").write_text(render_rpc())
    print("wrote docs/events.md and docs/rpc.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
