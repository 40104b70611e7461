"""What Meta sends to a Page webhook, for tests: signed POSTs and realistic bodies (Messenger
messages, attachments, echoes, deliveries, reads, and feed comment changes)."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid

import requests

APP_SECRET = "test-app-secret"          # what tests.support.platform.Platform configures
VERIFY_TOKEN = "test-verify-token"
_counter = itertools.count(1)


def signature(raw: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def signed_post(url: str, body_dict, app_secret: str = APP_SECRET, timeout: float = 15,
                raw: bytes | None = None, header: str | None = None) -> requests.Response:
    """POST ``body_dict`` as Meta does: compact JSON with ``X-Hub-Signature-256`` over the exact
    bytes sent. ``raw`` sends other bytes (signed the same way); ``header`` overrides the signature."""
    data = raw if raw is not None else json.dumps(body_dict, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json",
               "X-Hub-Signature-256": header if header is not None else signature(data, app_secret)}
    return requests.post(url, data=data, headers=headers, timeout=timeout)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_mid() -> str:
    return f"m_{uuid.uuid4().hex}"


def new_psid() -> str:
    return str(7_000_000_000_000_000 + next(_counter) * 7919 + uuid.uuid4().int % 1_000_000_000)


def page_body(*entries) -> dict:
    return {"object": "page", "entry": list(entries)}


def messaging_entry(page_id: str, *items) -> dict:
    return {"id": page_id, "time": now_ms(), "messaging": list(items)}


def changes_entry(page_id: str, *changes) -> dict:
    return {"id": page_id, "time": int(time.time()), "changes": list(changes)}


def text_message(page_id: str, psid: str, text: str, timestamp_ms: int | None = None,
                 mid: str | None = None) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": timestamp_ms or now_ms(),
            "message": {"mid": mid or new_mid(), "text": text}}


def attachment_message(page_id: str, psid: str, urls: list[str], kind: str = "image",
                       text: str | None = None, timestamp_ms: int | None = None, mid: str | None = None) -> dict:
    message = {"mid": mid or new_mid(),
               "attachments": [{"type": kind, "payload": {"url": url}} for url in urls]}
    if text:
        message["text"] = text
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": timestamp_ms or now_ms(),
            "message": message}


def echo_message(page_id: str, psid: str, text: str) -> dict:
    return {"sender": {"id": page_id}, "recipient": {"id": psid}, "timestamp": now_ms(),
            "message": {"mid": new_mid(), "is_echo": True, "app_id": 1517, "text": text}}


def delivery(page_id: str, psid: str) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": now_ms(),
            "delivery": {"mids": [new_mid()], "watermark": now_ms()}}


def read_receipt(page_id: str, psid: str) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": now_ms(),
            "read": {"watermark": now_ms()}}


def comment_change(page_id: str, text: str, verb: str = "add", comment_id: str | None = None,
                   post_id: str | None = None, parent_id: str | None = None, author_id: str = "5550001",
                   author_name: str = "Warga NTB", created_time=None) -> dict:
    post_id = post_id or f"{page_id}_{uuid.uuid4().int % 10**15}"
    comment_id = comment_id or f"{post_id.split('_')[-1]}_{uuid.uuid4().int % 10**15}"
    value = {"from": {"id": author_id, "name": author_name}, "post": {"id": post_id, "status_type": "added_photos"},
             "item": "comment", "verb": verb, "comment_id": comment_id, "post_id": post_id,
             "parent_id": parent_id or post_id,
             "created_time": created_time if created_time is not None else int(time.time())}
    if verb != "remove":
        value["message"] = text
    return {"field": "feed", "value": value}
