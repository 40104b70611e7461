"""Run the Graph API sandbox: ``python -m sandbox`` binds ``GRAPH_SANDBOX_ADDRESS``
(default ``127.0.0.1:8005``) and logs one line per Graph call to stdout. It answers only people
who wrote to a Page (tell it with ``/_sandbox/webhooks`` or ``/_sandbox/conversations``; see
docs/notification.md, "The Graph API sandbox")."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from sandbox.graph_sandbox import SandboxServer, create_app


def main() -> int:
    address = os.environ.get("GRAPH_SANDBOX_ADDRESS") or "127.0.0.1:8005"
    host, _, port = address.rpartition(":")
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s graph-sandbox %(message)s")
    server = SandboxServer(create_app(), host or "127.0.0.1", int(port))

    # serve_forever blocks; shutdown() must come from another thread, hence the helper.
    def _stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pages = [p["page_id"] for p in server.state.list_pages()]
    logging.getLogger("ntbcare.sandbox.graph").info(
        "listening on %s (pages: %s; Human Agent %s)", server.url,
        ", ".join(pages) if pages else "none registered, any token accepted",
        "approved" if server.state.settings["human_agent_approved"] else "not approved")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
