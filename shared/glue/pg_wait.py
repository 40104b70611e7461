"""psycopg2 under eventlet, cheaper a statement: wait for a quick answer in place, yield for a slow one.

eventlet greens psycopg2 with a wait callback that hands every statement to the hub: send, switch
to the hub, come back when the socket is readable. Against a server on the same network that
answers in a fraction of a millisecond, that switch is most of what a statement costs this
process (on this project's platform, the services' CPU a complaint was about twice SQLite's on
PostgreSQL). This callback first waits for the answer in place — one ``select`` on the socket
with the hub held, at most ``SPIN_SECONDS`` — and only then yields to the hub as eventlet's
does. A statement that waits longer (a lock held by another green thread of this process, a slow
query) therefore blocks the process for at most that spin once, and then lets the others run:
no green thread can deadlock on a lock another holds.
"""
from __future__ import annotations

from eventlet import hubs, patcher

_select = patcher.original("select").select   # the real one: the patched select would yield

#: How long a statement's answer is waited for with the hub held before yielding to it.
SPIN_SECONDS = 0.002


def wait(connection, timeout=-1) -> None:
    """psycopg2's wait callback (``extensions.set_wait_callback``)."""
    from psycopg2 import OperationalError, extensions

    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        descriptor = connection.fileno()
        if state == extensions.POLL_READ:
            if not _select([descriptor], [], [], SPIN_SECONDS)[0]:
                hubs.trampoline(descriptor, read=True)
        elif state == extensions.POLL_WRITE:
            if not _select([], [descriptor], [], 0)[1]:
                hubs.trampoline(descriptor, write=True)
        else:
            raise OperationalError(f"bad result from poll: {state!r}")


def install() -> bool:
    """Use ``wait`` for every psycopg2 connection of this process (after ``eventlet.monkey_patch``).
    False when psycopg2 is not installed."""
    try:
        from psycopg2 import extensions
    except ImportError:
        return False
    extensions.set_wait_callback(wait)
    return True
