"""Configuration read from the environment (every variable is documented in the README).

Defaults are the ones the design and the issues name; nothing secret has a default.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

SERVICES = ("intake", "routing", "notification", "reporting")
EMITTING_SERVICES = ("intake", "routing", "notification")

DEFAULT_WEB_ADDRESSES = {
    "intake": "127.0.0.1:8001",
    "routing": "127.0.0.1:8002",
    "notification": "127.0.0.1:8003",
    "reporting": "127.0.0.1:8004",
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


def amqp_uri() -> str:
    return env("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


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


def facebook_app_secret() -> str | None:
    return env("FACEBOOK_APP_SECRET")


def facebook_verify_token() -> str | None:
    return env("FACEBOOK_VERIFY_TOKEN")


def nameko_config(service: str) -> dict[str, Any]:
    """The nameko container config for one service (each service runs in its own process, so
    WEB_SERVER_ADDRESS is that service's own address)."""
    return {
        "AMQP_URI": amqp_uri(),
        "WEB_SERVER_ADDRESS": web_address(service),
        "serializer": "json",
        "max_workers": int(env("NTBCARE_MAX_WORKERS", "10")),
        "parent_calls_tracked": 10,
        "RPC_EXCHANGE": "nameko-rpc",
    }
