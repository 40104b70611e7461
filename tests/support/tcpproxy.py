"""A plain TCP forwarder run as its own process: a test puts it between a service and RabbitMQ,
and killing it is a real network outage for that service alone (other tests on the same broker
are not disturbed). Usage: python -m tests.support.tcpproxy LISTEN_PORT TARGET_HOST TARGET_PORT"""
from __future__ import annotations

import selectors
import socket
import sys


def main() -> int:
    listen_port, target_host, target_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, None)
    peers: dict[socket.socket, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is server:
                client, _ = server.accept()
                try:
                    upstream = socket.create_connection((target_host, target_port), timeout=5)
                except OSError:
                    client.close()
                    continue
                for a, b in ((client, upstream), (upstream, client)):
                    a.setblocking(False)
                    peers[a] = b
                    selector.register(a, selectors.EVENT_READ, None)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            other = peers.get(sock)
            if not data or other is None:
                for s in (sock, other):
                    if s is not None and s in peers:
                        selector.unregister(s)
                        peers.pop(s, None)
                        s.close()
                continue
            try:
                other.setblocking(True)
                other.sendall(data)
                other.setblocking(False)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
