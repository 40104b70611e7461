"""The Graph client's transport (``graph_client.KeptAlive``) against a real HTTP server on loopback:
connections are kept alive between calls, one the server closed while it sat idle is replaced
before a POST goes out on it (each POST reaches the server exactly once), ``Connection: close`` is
honoured, and a server that does not answer in time is a temporary failure."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from services.notification.adapters.graph_client import TEMPORARY, GraphApiError, GraphClient, KeptAlive

PAGE, PSID = "100000000000001", "7123456789012345"
ANSWER = b'{"recipient_id":"7123456789012345","message_id":"m_1"}'


class Server:
    """A tiny HTTP/1.1 server: counts connections and POSTs; after each answer it may close the
    connection (``close_after_answer``: silently, as a server's idle timeout does; with
    ``say_close`` it says ``Connection: close``), or not answer at all (``silent``)."""

    def __init__(self, close_after_answer=False, say_close=False, silent=False):
        self.close_after_answer, self.say_close, self.silent = close_after_answer, say_close, silent
        self.connections = 0
        self.posts = 0
        self.stopping = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            conn, _ = self.listener.accept()
            if self.stopping:
                conn.close()
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.posts += 1
                if self.silent:
                    time.sleep(5)
                    return
                extra = b"Connection: close\r\n" if self.say_close else b""
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(ANSWER)).encode() + b"\r\n" + extra + b"\r\n" + ANSWER)
                if self.close_after_answer or self.say_close:
                    return

    def stop(self):
        # The accepting thread is woken by a last connection and ends before the socket is closed:
        # under eventlet, closing a socket another green thread waits on leaves the hub a listener
        # on a descriptor number the next socket (a database connection) reuses.
        self.stopping = True
        socket.create_connection(self.listener.getsockname(), timeout=2).close()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def server(request):
    made = []

    def make(**settings):
        made.append(Server(**settings))
        return made[-1]
    yield make
    for each in made:
        each.stop()


def send(client):
    return client.send_message(PAGE, "page-token", {"id": PSID}, "Aduan Anda telah kami terima.")


def test_calls_share_one_kept_alive_connection(server):
    srv = server()
    client = GraphClient(srv.url, timeout=5)
    for _ in range(5):
        assert send(client).message_id == "m_1"
    assert (srv.connections, srv.posts) == (1, 5)


@pytest.mark.parametrize("closing", [
    {"close_after_answer": True},   # silently, as a server's idle timeout does
    {"say_close": True},            # with Connection: close in the answer
], ids=["closed-while-idle", "connection-close"])
def test_a_connection_the_server_closed_is_replaced_and_no_post_is_sent_twice(server, closing):
    srv = server(**closing)
    client = GraphClient(srv.url, timeout=5)
    for _ in range(3):
        assert send(client).message_id == "m_1"
        time.sleep(0.05)     # the server's close reaches the client while the connection is idle
    assert (srv.connections, srv.posts) == (3, 3)


def test_no_answer_in_time_is_a_temporary_failure_and_the_connection_is_dropped(server):
    srv = server(silent=True)
    client = GraphClient(srv.url, timeout=0.3)
    with pytest.raises(GraphApiError) as raised:
        send(client)
    assert raised.value.kind == TEMPORARY and "no answer within" in str(raised.value)
    assert client._pool is not None and client._pool._idle == []
    assert srv.posts == 1


def test_only_its_own_host_and_only_http_s():
    transport = KeptAlive("http://127.0.0.1:9")
    with pytest.raises(ValueError):
        transport.request("POST", "http://example.org/v23.0/x/messages", body=b"{}")
    with pytest.raises(ValueError):
        KeptAlive("ftp://graph.example")
