"""Files one test complaint over RPC as a Messenger conversation on the development Page, then
prints its tracking code and, a moment later, what the Graph API sandbox received.
Usage: .venv/bin/python -m scripts.file_test_complaint "complaint text" """
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")  # said once, at import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from sandbox.control import citizen_wrote  # noqa: E402
from shared.core import config  # noqa: E402


def main() -> int:
    text = " ".join(sys.argv[1:]) or "Jalan di Praya Lombok Tengah rusak parah, mohon segera diperbaiki."
    psid = str(7_000_000_000_000_000 + uuid.uuid4().int % 10**15)  # PSIDs are digits (intake checks)
    sandbox_url = f"http://{config.graph_sandbox_address()}"
    try:
        # As on Meta, the Page may answer only a person who wrote to it: tell the sandbox they did.
        citizen_wrote(sandbox_url, "100000000000001", psid)
    except requests.RequestException:
        pass  # a real Page token is configured and no sandbox runs
    with ClusterRpcProxy({"AMQP_URI": config.amqp_uri(), "serializer": "json"}, timeout=30) as rpc:
        result = rpc.intake.file_complaint({"text": text, "channel": "api",
                                            "reply_to": {"page_id": "100000000000001", "psid": psid}})
    print(json.dumps(result, indent=2))
    sandbox = f"{sandbox_url}/_sandbox/calls"
    for _ in range(20):
        time.sleep(0.5)
        try:
            calls = [c for c in requests.get(sandbox, timeout=5).json()["calls"]
                     if (c.get("recipient") or {}).get("id") == psid]
        except requests.RequestException:
            break
        if calls:
            print("Graph API sandbox received:", calls[-1]["text"])
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
