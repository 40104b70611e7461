"""Configuration read from the environment (every variable is documented in the README).

Defaults are the ones the design and the issues name; nothing secret has a default.
"""
from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, overload

SERVICES = ("intake", "routing", "notification", "reporting")
EMITTING_SERVICES = ("intake", "routing", "notification")
#: Every service with a database of its own (migrated by ``shared.core.migrations``): the gateway
#: keeps its outside readers' feed log (services/gateway/adapters/feed_log.py).
DATABASE_SERVICES = SERVICES + ("gateway",)

DEFAULT_WEB_ADDRESSES = {
    "intake": "127.0.0.1:8001",
    "routing": "127.0.0.1:8002",
    "notification": "127.0.0.1:8003",
    "reporting": "127.0.0.1:8004",
    "gateway": "127.0.0.1:8006",  # only /health (8005 is the Graph API sandbox)
}


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message says which and how to fix it."""


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: None = None) -> str | None: ...


def env(name: str, default: str | None = None) -> str | None:
    """The variable's value; unset or empty gives ``default`` (so a default makes it a ``str``)."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def number(name: str, default: str, *, kind: type = float, at_least: float | None = None,
           above: float | None = None, at_most: float | None = None) -> Any:
    """A numeric setting, or a ``ConfigError`` that names it, its value and the range it needs
    (so a service refuses to start on a typo instead of running with a surprise)."""
    raw = env(name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if (at_least is not None and value < at_least) or (above is not None and value <= above) \
            or (at_most is not None and value > at_most):
        bounds = [f"at least {at_least}" if at_least is not None else "",
                  f"above {above}" if above is not None else "",
                  f"at most {at_most}" if at_most is not None else ""]
        raise ConfigError(f"{name} must be {' and '.join(b for b in bounds if b)}, not {raw!r}")
    return value


def amqp_uri() -> str:
    """The broker: one address, or several separated by ``;`` (kombu's failover list — every
    node of a cluster; a client connects to the first that answers and moves on when it dies)."""
    return env("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


def amqp_addresses(uri: str | None = None) -> list[str]:
    """The addresses of ``AMQP_URI`` (or ``uri``), in order."""
    return [address.strip() for address in (uri if uri is not None else amqp_uri()).split(";") if address.strip()]


QUEUE_TYPES = ("quorum", "classic")


def queue_type() -> str:
    """``NTBCARE_QUEUE_TYPE``: the type of every durable queue the services declare — ``quorum``
    (the default: replicated on a cluster, and what RabbitMQ 4 keeps) or ``classic`` (an explicit
    opt-out, e.g. for a broker whose queues are not migrated yet: docs/operations.md)."""
    value = env("NTBCARE_QUEUE_TYPE", "quorum").strip().lower()
    if value not in QUEUE_TYPES:
        raise ConfigError(f"NTBCARE_QUEUE_TYPE must be quorum or classic, not {value!r}")
    return value


AMQP_SSL_VARIABLES = ("AMQP_SSL_CA_FILE", "AMQP_SSL_CERT_FILE", "AMQP_SSL_KEY_FILE")


def amqp_ssl() -> dict[str, Any] | None:
    """TLS options for the broker connection (nameko's ``AMQP_SSL``, kombu's ``ssl=``), or None
    for a plain ``amqp://`` URI. With ``amqps://`` the broker's certificate is always verified —
    against ``AMQP_SSL_CA_FILE`` (else the system's CAs) — and its name checked against the
    URI's host; ``AMQP_SSL_CERT_FILE``/``AMQP_SSL_KEY_FILE`` present a client certificate."""
    ca_file, cert_file, key_file = (env(variable) for variable in AMQP_SSL_VARIABLES)
    schemes = {address.split("://", 1)[0].lower() for address in amqp_addresses()}
    if len(schemes) > 1:
        raise ConfigError("AMQP_URI mixes amqp:// and amqps:// addresses; every node takes the same TLS settings")
    if not amqp_uri().lower().startswith("amqps://"):
        if ca_file or cert_file or key_file:
            # Certificates for a plain connection would silently do nothing: say so instead.
            raise ConfigError("AMQP_SSL_* files are set but AMQP_URI is not amqps://…; use amqps:// "
                              "(the broker's TLS listener, usually port 5671)")
        return None
    if bool(cert_file) != bool(key_file):
        raise ConfigError("AMQP_SSL_CERT_FILE and AMQP_SSL_KEY_FILE go together (the client certificate and its key)")
    for variable, path in zip(AMQP_SSL_VARIABLES, (ca_file, cert_file, key_file)):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{variable} {path!r} is not a readable file")
    # server_hostname None: kombu fills in the URI's host, which turns hostname checking on.
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None}
    if ca_file:
        options["ca_certs"] = ca_file
    if cert_file:
        options["certfile"], options["keyfile"] = cert_file, key_file
    return options


def amqp_ssl_context() -> ssl.SSLContext | None:
    """The same TLS settings as an ``ssl.SSLContext`` (for pika, e.g. ``ntbcare events tail``)."""
    options = amqp_ssl()
    if options is None:
        return None
    context = ssl.create_default_context(cafile=options.get("ca_certs"))
    if "certfile" in options:
        context.load_cert_chain(options["certfile"], options["keyfile"])
    return context


# Values that must never reach production: the templates' placeholders and the secrets
# `make run` uses in development (scripts/run.sh).
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "placeholder")
DEVELOPMENT_SECRETS = frozenset({"dev-app-secret", "dev-verify-token", "sandbox-page-token", "dev-desk-token",
                                 "dev-dpupr-token", "dev-loteng-token"})
# Variables (by name) that carry a secret somewhere in their value.
_SECRET_NAME_PARTS = ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "_KEYS", "_PAGES", "AMQP_URI", "DATABASE_URL")


def _holds_placeholder(value: str) -> bool:
    lowered = value.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return True
    # Pairs (`name:token,…`) and URLs (`scheme://user:password@host`) hide the secret in a part.
    parts = {lowered, *(piece for item in lowered.split(",") for piece in item.replace("@", ":").split(":"))}
    return bool(parts & DEVELOPMENT_SECRETS)


def placeholder_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Names (never values) of secret-carrying variables that hold a placeholder or a
    development secret."""
    environ = dict(os.environ) if environ is None else environ
    return sorted(name for name, value in environ.items()
                  if value and any(part in name.upper() for part in _SECRET_NAME_PARTS)
                  and _holds_placeholder(value))


def check_startup_settings() -> None:
    """What every service checks before it starts: readable broker TLS settings, retention
    periods that are numbers of days and, outside development, no placeholder or development
    secret anywhere in its environment."""
    amqp_ssl()
    queue_type()
    for name, value in os.environ.items():
        if name.endswith("_RETENTION_DAYS") and value:
            try:
                valid = float(value) >= 0
            except ValueError:
                valid = False
            if not valid:
                raise ConfigError(f"{name} must be 0 (keep forever) or a number of days, not {value!r}")
    if not is_development():
        found = placeholder_secrets()
        if found:
            raise ConfigError(f"{', '.join(found)} still hold a placeholder or development value "
                              "(e.g. change-me); set real secrets, or NTBCARE_ENV=development for a local run")


def data_dir() -> Path:
    return Path(env("NTBCARE_DATA_DIR", "./var"))


def database_url(service: str) -> str:
    explicit = env(f"{service.upper()}_DATABASE_URL")
    if explicit:
        return explicit
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory.resolve() / (service + '.db')}"


def web_address(service: str) -> str:
    return env(f"{service.upper()}_WEB_ADDRESS", DEFAULT_WEB_ADDRESSES[service])


def environment() -> str:
    return env("NTBCARE_ENV", "production")


def is_development() -> bool:
    return environment() == "development"


def linger_seconds(variable: str, default_ms: float) -> float:
    """A ``…_LINGER_MS`` setting in seconds (0–10,000 ms): how long a consumer or a relay lets work
    wait for more to share its transaction or round (``default_ms``: the service's own choice)."""
    return float(number(variable, str(default_ms), at_least=0, at_most=10_000)) / 1000


def catchup_seconds() -> float:
    return float(env("NTBCARE_CATCHUP_SECONDS", "30"))


def outbox_poll_seconds() -> float:
    """How often the relay looks for unpublished events even without a local signal
    (another process may have appended, or the broker was down)."""
    return float(env("NTBCARE_OUTBOX_POLL_SECONDS", "1"))


def graph_url() -> str:
    return env("FACEBOOK_GRAPH_URL", "https://graph.facebook.com").rstrip("/")


def graph_version() -> str:
    return env("FACEBOOK_GRAPH_VERSION", "v23.0")


def graph_sandbox_address() -> str:
    return env("GRAPH_SANDBOX_ADDRESS", "127.0.0.1:8005")


def parse_pairs(value: str | None, variable: str, shape: str) -> list[tuple[str, str]]:
    """``name:secret,name:secret`` settings (Pages and their tokens, agencies and theirs) as
    stripped pairs, in order; a malformed item is a ConfigError naming the variable and its shape."""
    pairs: list[tuple[str, str]] = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not name.strip() or not secret.strip():
            raise ConfigError(f"{variable} must look like '{shape}'")
        pairs.append((name.strip(), secret.strip()))
    return pairs


def facebook_pages() -> dict[str, str]:
    """Page id → Page access token, from FACEBOOK_PAGES or the single-Page pair."""
    pages = dict(parse_pairs(env("FACEBOOK_PAGES"), "FACEBOOK_PAGES", "page_id:token,page_id:token"))
    single_id, single_token = env("FACEBOOK_PAGE_ID"), env("FACEBOOK_PAGE_ACCESS_TOKEN")
    if single_id and single_token:
        pages.setdefault(single_id, single_token)
    return pages


def facebook_page_ids() -> frozenset[str]:
    """The Pages whose webhooks intake accepts: ``FACEBOOK_PAGE_IDS`` (``id,id``) — so intake
    needs no Page token — else the Pages of ``FACEBOOK_PAGES``/``FACEBOOK_PAGE_ID``."""
    explicit = env("FACEBOOK_PAGE_IDS")
    if explicit:
        return frozenset(page.strip() for page in explicit.split(",") if page.strip())
    return frozenset(facebook_pages())


def facebook_app_secret() -> str | None:
    return env("FACEBOOK_APP_SECRET")


def facebook_verify_token() -> str | None:
    return env("FACEBOOK_VERIFY_TOKEN")


def nameko_config(service: str) -> dict[str, Any]:
    """The nameko container config for one service (each service runs in its own process, so
    WEB_SERVER_ADDRESS is that service's own address)."""
    settings: dict[str, Any] = {
        "AMQP_URI": amqp_uri(),
        "WEB_SERVER_ADDRESS": web_address(service),
        "serializer": "json",
        "max_workers": int(env("NTBCARE_MAX_WORKERS", "10")),
        "parent_calls_tracked": 10,
        "RPC_EXCHANGE": "nameko-rpc",
    }
    tls = amqp_ssl()
    if tls is not None:
        settings["AMQP_SSL"] = tls
    return settings
