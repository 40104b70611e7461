"""The HTTP routes a service declares, read from its ``@http`` entrypoints (not from a list kept
by hand), so a new endpoint is covered by the scoping, size-limit and fuzz tests — or fails them."""
from __future__ import annotations

import inspect
import re

from nameko.web.handlers import HttpRequestHandler


def http_routes(service_class) -> list[tuple[str, str, str]]:
    """[(method, url pattern, entrypoint name)], sorted."""
    found = []
    for name, function in inspect.getmembers(service_class):
        for entrypoint in getattr(function, "nameko_entrypoints", ()):
            if isinstance(entrypoint, HttpRequestHandler):
                for method in entrypoint.method.split(","):
                    found.append((method.strip(), entrypoint.url, name))
    return sorted(found)


def fill(url: str, **values) -> str:
    """``/api/complaints/<complaint_id>`` → ``/api/complaints/<the value>`` (``<int:x>`` too)."""
    def value(match):
        key = match.group(1).split(":")[-1]
        if key not in values:
            raise KeyError(f"no value for <{key}> in {url}")
        return str(values[key])
    return re.sub(r"<([^>]+)>", value, url)


def params(url: str) -> list[str]:
    return [p.split(":")[-1] for p in re.findall(r"<([^>]+)>", url)]
