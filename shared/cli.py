"""``ntbcare``: the operators' command line.

  ntbcare status                       services, queues and lags
  ntbcare events tail [--data]         every service's events as they are published (plain pika)
  ntbcare rebuild                      rebuild reporting's projections from the logs
  ntbcare import FILE.csv              historical complaints (idempotent by external_ref)
  ntbcare quarantine list [SERVICE]    what could not be processed, with reasons
  ntbcare quarantine replay SERVICE ITEM_ID --actor NAME
  ntbcare report YYYY-MM               the monthly summary and its narrative
  ntbcare queues migrate [--to quorum|classic] [--dry-run]
                                       service queues to the other type, nothing lost (services stopped)
  ntbcare classifier evaluate FILE     score the intake classifier on labelled complaints (JSON lines)
  ntbcare classifier report [--month YYYY-MM] [--json]
                                       how often the desk kept the automatic category and region

It talks to the services the way any other system does: RPC over the broker, HTTP and the
RabbitMQ management API. ``events tail`` is also the worked example for integrators: a plain
pika consumer, no nameko.
"""
from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import quote, urlparse  # noqa: E402

import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

import shared.glue.remote_errors  # noqa: E402,F401 - registers remote exception types
from shared.core import config  # noqa: E402

EMITTING = config.EMITTING_SERVICES


def rpc_proxy(timeout: float = 60):
    return ClusterRpcProxy({"AMQP_URI": config.amqp_uri(), "AMQP_SSL": config.amqp_ssl(), "serializer": "json"},
                           timeout=timeout)


def management_url() -> tuple[str, tuple[str, str], str]:
    uri = urlparse(config.amqp_addresses()[0])  # AMQP_URI may list every node of a cluster
    vhost = uri.path[1:] or "/"
    base = config.env("RABBITMQ_MANAGEMENT_URL", f"http://{uri.hostname or '127.0.0.1'}:15672")
    return base, (uri.username or "guest", uri.password or "guest"), vhost


# -- status ------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    healthy = True
    print(f"{'service':<14}{'health':<12}{'outbox':>8}  detail")
    for service in config.SERVICES:
        url = f"http://{config.web_address(service)}"
        try:
            health = requests.get(f"{url}/health", timeout=3)
            body = health.json()
            state = body.get("status", "?")
            detail = body.get("reason", "")
        except requests.RequestException as error:
            state, detail, health = "down", type(error).__name__, None
        outbox = "-"
        lags = []
        try:
            for line in requests.get(f"{url}/metrics", timeout=3).text.splitlines():
                if line.startswith("ntbcare_outbox_pending_events{"):
                    outbox = str(int(float(line.rsplit(" ", 1)[1])))
                if line.startswith("ntbcare_consumer_lag_events{"):
                    source = line.split('source="', 1)[1].split('"', 1)[0]
                    lags.append(f"lag {source}={int(float(line.rsplit(' ', 1)[1]))}")
        except requests.RequestException:
            pass
        healthy &= state in ("ok", "degraded")
        print(f"{service:<14}{state:<12}{outbox:>8}  {detail} {' '.join(lags)}".rstrip())
    base, auth, vhost = management_url()
    try:
        queues = requests.get(f"{base}/api/queues/{quote(vhost, safe='')}", auth=auth, timeout=5).json()
        print(f"\n{'queue':<70}{'ready':>8}{'unacked':>9}{'consumers':>11}")
        for queue in sorted(queues, key=lambda q: q["name"]):
            print(f"{queue['name'][:69]:<70}{queue.get('messages_ready', 0):>8}"
                  f"{queue.get('messages_unacknowledged', 0):>9}{queue.get('consumers', 0):>11}")
    except (requests.RequestException, ValueError) as error:
        print(f"\n(queues unavailable: RabbitMQ management API at {base}: {type(error).__name__})")
    return 0 if healthy else 1


# -- events tail -------------------------------------------------------------------------------
def redact(data: dict) -> dict:
    """Operators see what happened, not who: texts and reply targets are left out."""
    hidden = {"text", "reply_to", "recipient_psid"}
    return {key: ("…" if key in hidden else value) for key, value in data.items()}


def cmd_events_tail(args) -> int:
    import pika

    # AMQP_URI may list several nodes (``;``): pika tries each of the list in turn.
    every = [pika.URLParameters(address) for address in config.amqp_addresses()]
    tls = config.amqp_ssl_context()
    for parameters in every:
        if tls is not None:  # amqps://: the same CA and client certificate as the services
            parameters.ssl_options = pika.SSLOptions(tls, parameters.host)
    connection = pika.BlockingConnection(every)
    channel = connection.channel()
    queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
    for service in EMITTING:
        channel.exchange_declare(exchange=f"{service}.events", exchange_type="topic", durable=True)
        channel.queue_bind(queue=queue, exchange=f"{service}.events", routing_key=args.routing_key)
    print(f"listening on {', '.join(s + '.events' for s in EMITTING)} (routing key {args.routing_key}); Ctrl-C to stop",
          file=sys.stderr)
    seen = 0

    def on_message(ch, method, _properties, body):
        nonlocal seen
        event = json.loads(body)
        line = f"{event.get('occurred_at')} {event.get('source')}#{event.get('position')} {event.get('event_type')} " \
               f"complaint={event.get('complaint_id')} v{event.get('version')}"
        if args.data:
            line += " " + json.dumps(redact(event.get("data") or {}), ensure_ascii=False)
        print(line, flush=True)
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if args.count and seen >= args.count:
            ch.stop_consuming()

    channel.basic_consume(queue=queue, on_message_callback=on_message)
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        pass
    connection.close()
    return 0


# -- rebuild -----------------------------------------------------------------------------------
def cmd_rebuild(args) -> int:
    from tqdm import tqdm

    with rpc_proxy(timeout=args.timeout) as rpc:
        total = sum(_last_position(rpc[service]) for service in EMITTING)
        reply = rpc.reporting.rebuild.call_async()
        with tqdm(total=total or None, unit="ev", desc="rebuild") as bar:
            while True:
                try:
                    progress = rpc.reporting.rebuild_progress()
                except Exception:
                    progress = None
                if progress and progress.get("events") is not None:
                    bar.n = progress["events"]
                    bar.refresh()
                if _ready(reply):
                    break
                time.sleep(0.5)
            result = reply.result()
            bar.n = result.get("events", bar.n)
            bar.refresh()
    print(json.dumps(result))
    return 0


def _ready(reply) -> bool:
    # nameko's async reply: poll without blocking by waiting a moment in a green thread.
    waiter = eventlet.spawn(reply.result)
    try:
        with eventlet.Timeout(0.2):
            waiter.wait()
        return True
    except eventlet.Timeout:
        waiter.kill()
        return False
    except Exception:
        return True


def _last_position(proxy) -> int:
    """The end of a log, found by galloping over events_since pages (no extra RPC needed)."""
    low, high = 0, 1000
    while proxy.events_since(high, 1):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if proxy.events_since(middle, 1):
            low = middle
        else:
            high = middle
    return low if not proxy.events_since(low, 1) else high


# -- import ------------------------------------------------------------------------------------
IMPORT_FIELDS = ("external_ref", "received_at", "text")


def cmd_import(args) -> int:
    accepted = failed = 0
    with open(args.file, newline="", encoding="utf-8-sig") as handle, rpc_proxy() as rpc:
        reader = csv.DictReader(handle)
        missing = [f for f in IMPORT_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            print(f"ntbcare import: the CSV needs the columns {', '.join(IMPORT_FIELDS)} "
                  f"(missing: {', '.join(missing)})", file=sys.stderr)
            return 2
        for number, row in enumerate(reader, start=2):
            complaint = {"text": row["text"], "channel": "import", "received_at": row["received_at"],
                         "external_ref": row["external_ref"]}
            if row.get("category"):
                complaint["category"] = row["category"]
            if row.get("region_code"):
                complaint["location"] = {"region_code": row["region_code"]}
            reporter = {k: row[f"reporter_{k}"] for k in ("name", "phone", "email") if row.get(f"reporter_{k}")}
            if reporter:
                complaint["reporter"] = reporter
            try:
                result = rpc.intake.file_complaint(complaint)
            except shared.core.errors.ValidationFailed as error:
                failed += 1
                print(f"line {number}: refused: {error}", file=sys.stderr)
                continue
            accepted += 1
            if args.verbose:
                print(f"line {number}: {row['external_ref']} → {result['tracking_code']}")
    # Re-importing the same file files nothing new: intake returns the first complaint per external_ref.
    print(json.dumps({"rows_accepted": accepted, "rows_refused": failed}))
    return 0 if not failed else 1


# -- quarantine --------------------------------------------------------------------------------
def cmd_quarantine_list(args) -> int:
    services = [args.service] if args.service else list(config.SERVICES)
    with rpc_proxy() as rpc:
        for service in services:
            for item in rpc[service].quarantined(args.limit):
                print(f"{service} #{item['item_id']} {item['kind']} {item['quarantined_at']} "
                      f"attempts={item['attempts']}: {item['reason']}")
    return 0


def cmd_quarantine_replay(args) -> int:
    with rpc_proxy() as rpc:
        print(json.dumps(rpc[args.service].replay_quarantined(args.item_id, args.actor)))
    return 0


# -- report ------------------------------------------------------------------------------------
def cmd_report(args) -> int:
    try:
        year, month = (int(part) for part in args.month.split("-"))
    except ValueError:
        print("ntbcare report: give the month as YYYY-MM, e.g. 2020-11", file=sys.stderr)
        return 2
    with rpc_proxy() as rpc:
        summary = rpc.reporting.monthly_summary(year, month)
        narrative = rpc.reporting.monthly_narrative(year, month)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print()
    print(narrative if isinstance(narrative, str) else narrative.get("text", narrative))
    return 0


# -- classifier --------------------------------------------------------------------------------
def cmd_classifier_evaluate(args) -> int:
    """Offline: the classifier runs in this process on the province's own labelled file."""
    from services.intake.domain.classifier import classify
    from services.intake.domain.evaluation import LabelledFileError, evaluate, parse_cases, report

    try:
        with open(args.file, encoding="utf-8-sig") as handle:
            cases = parse_cases(handle.read(), args.file)
    except (OSError, LabelledFileError) as error:
        print(f"ntbcare classifier evaluate: {error}", file=sys.stderr)
        return 2
    classify("pemanasan")  # build the classifier outside the timings
    for line in report(evaluate(cases, classify), misses=args.misses, width=args.width):
        print(line)
    return 0


def _kept_words(figures: dict) -> str:
    share = figures.get("kept_share")
    text = f"kept {figures['kept']} of {figures['reviewed']}"
    text += f" ({share * 100:.1f}%)" if share is not None else ""
    if figures.get("corrected_to"):
        text += "; corrected to " + ", ".join(f"{code} x{count}" for code, count in figures["corrected_to"].items())
    return text


def classifier_report_lines(result: dict) -> list[str]:
    """``reporting.classifier_accuracy`` as text: overall, then per automatic category and region."""
    lines = [f"Automatic classification as the desk kept it — {result.get('month') or 'every month'}",
             f"complaints {result['complaints']}, reviewed by the desk {result['reviewed']} "
             f"(corrected {result['corrected']}, re-routed without a correction "
             f"{result['rerouted_without_correction']})",
             f"category {_kept_words(result['category'])}",
             f"region {_kept_words(result['region'])}",
             "per category (automatic):"]
    lines += [f"  {code:<16} {_kept_words(figures)}" for code, figures in result["by_category"].items()]
    lines.append("per region (automatic):")
    lines += [f"  {code:<16} {_kept_words(figures)}" for code, figures in result["by_region"].items()]
    return lines


def cmd_classifier_report(args) -> int:
    """From the events: reporting's projection of the desk's corrections and re-routes."""
    if args.month is not None and not (len(args.month) == 7 and args.month[4] == "-"
                                       and args.month.replace("-", "").isdigit()):
        print("ntbcare classifier report: give the month as YYYY-MM, e.g. 2020-11", file=sys.stderr)
        return 2
    with rpc_proxy() as rpc:
        result = rpc.reporting.classifier_accuracy(args.month)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        for line in classifier_report_lines(result):
            print(line)
    return 0


# -- queues ------------------------------------------------------------------------------------
def cmd_queues_migrate(args) -> int:
    from shared.queue_migration import Management, MigrationRefused, migrate

    base, auth, vhost = management_url()
    try:
        migrate(config.amqp_uri(), Management(base, auth, args.vhost or vhost), target=args.to, dry_run=args.dry_run)
    except MigrationRefused as error:
        print(f"ntbcare queues migrate: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntbcare", description="Operate an NTBCare deployment.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="services, queues and lags").set_defaults(func=cmd_status)
    events = commands.add_parser("events", help="watch events").add_subparsers(dest="events_command", required=True)
    tail = events.add_parser("tail", help="print every service's events as they are published")
    tail.add_argument("--data", action="store_true", help="also print event data (texts and reply targets hidden)")
    tail.add_argument("--routing-key", default="#", help="e.g. ComplaintFiled (default: every event)")
    tail.add_argument("--count", type=int, default=0, help="stop after this many events")
    tail.set_defaults(func=cmd_events_tail)
    rebuild = commands.add_parser("rebuild", help="rebuild reporting's projections from the event logs")
    rebuild.add_argument("--timeout", type=float, default=3600)
    rebuild.set_defaults(func=cmd_rebuild)
    importing = commands.add_parser("import", help="import historical complaints from a CSV")
    importing.add_argument("file", help="CSV with external_ref, received_at (ISO 8601 with zone), text; "
                           "optional category, region_code, reporter_name, reporter_phone, reporter_email")
    importing.add_argument("--verbose", action="store_true")
    importing.set_defaults(func=cmd_import)
    quarantine = commands.add_parser("quarantine", help="items that could not be processed").add_subparsers(
        dest="quarantine_command", required=True)
    listing = quarantine.add_parser("list")
    listing.add_argument("service", nargs="?", choices=config.SERVICES)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_quarantine_list)
    replay = quarantine.add_parser("replay")
    replay.add_argument("service", choices=config.SERVICES)
    replay.add_argument("item_id", type=int)
    replay.add_argument("--actor", required=True, help="who replays (recorded)")
    replay.set_defaults(func=cmd_quarantine_replay)
    report = commands.add_parser("report", help="the monthly summary and narrative, e.g. ntbcare report 2020-11")
    report.add_argument("month")
    report.set_defaults(func=cmd_report)
    queues = commands.add_parser("queues", help="the services' broker queues").add_subparsers(
        dest="queues_command", required=True)
    migrating = queues.add_parser("migrate", help="turn every service queue into a quorum (or classic) queue, "
                                  "moving its messages; stop the services first (docs/operations.md)")
    migrating.add_argument("--to", choices=("quorum", "classic"), default="quorum")
    migrating.add_argument("--dry-run", action="store_true", help="only list what would be migrated")
    migrating.add_argument("--vhost", help="default: the vhost of AMQP_URI")
    migrating.set_defaults(func=cmd_queues_migrate)
    classifier = commands.add_parser("classifier", help="the intake classifier").add_subparsers(
        dest="classifier_command", required=True)
    evaluating = classifier.add_parser(
        "evaluate", help="score a labelled JSON-lines file: {\"text\", \"category\", \"region\"} per line")
    evaluating.add_argument("file", help="JSON lines; region is a BPS code (e.g. 5271) or null")
    evaluating.add_argument("--misses", type=int, default=None,
                            help="print at most this many misses (default: all; 0: none)")
    evaluating.add_argument("--width", type=int, default=100, help="texts of misses are cut to this width")
    evaluating.set_defaults(func=cmd_classifier_evaluate)
    reporting = classifier.add_parser(
        "report", help="how often the desk kept the automatic category and region (reporting, from the events)")
    reporting.add_argument("--month", default=None, help="YYYY-MM (filing month, WITA); default: every month")
    reporting.add_argument("--json", action="store_true", help="print reporting's answer as JSON")
    reporting.set_defaults(func=cmd_classifier_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
