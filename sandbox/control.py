"""A small client of the sandbox's control API for tests and scripts: telling the sandbox what
Meta would know because a person wrote to a Page (see docs/notification.md, "The Graph API
sandbox")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests


def citizen_wrote(sandbox_url: str, page_id: str | None, psid: str,
                  at: datetime | str | int | None = None, platform: str | None = None) -> None:
    """``psid`` wrote to ``page_id`` (any Page when None) at ``at`` (default now): the
    windows of that conversation open from then. ``platform``: ``messenger`` (default) or
    ``instagram`` (``psid`` is then an Instagram-scoped id)."""
    payload: dict[str, Any] = {"page_id": page_id, "psid": psid}
    if at is not None:
        payload["last_message_at"] = at.isoformat() if isinstance(at, datetime) else at
    if platform:
        payload["platform"] = platform
    requests.post(f"{sandbox_url}/_sandbox/conversations", json=payload,
                  timeout=10).raise_for_status()


def meta_saw(sandbox_url: str, webhook_body: dict, page_id: str | None = None) -> dict:
    """The sandbox learns from a webhook body what Meta knows because it delivered it (who
    wrote, which comments exist or were removed); returns what it learned."""
    params = {"page_id": page_id} if page_id else None
    answer = requests.post(f"{sandbox_url}/_sandbox/webhooks", json=webhook_body, params=params,
                           timeout=10)
    answer.raise_for_status()
    return answer.json()["learned"]
