"""``PrefetchingFetch``: the next page is asked for while the caller works, and the caller gets
exactly what the plain ``fetch`` gives for its arguments (green threads, as in the service)."""
from __future__ import annotations

import eventlet
import pytest

from services.reporting.service import PrefetchingFetch


class Log:
    """A source's log of ``size`` events, read in pages; records every call as it starts."""

    def __init__(self, size: int, fail_after: int | None = None):
        self.size, self.fail_after, self.calls = size, fail_after, []

    def __call__(self, source, position, limit):
        self.calls.append((source, position, limit))
        eventlet.sleep(0.01)  # the reply takes a while: the caller works meanwhile
        if self.fail_after is not None and position >= self.fail_after:
            raise ConnectionError("source down")
        return [{"position": p, "source": source} for p in range(position + 1, min(position + limit, self.size) + 1)]


def read_all(fetch, source="routing", limit=10):
    position, pages = 0, []
    while True:
        page = fetch(source, position, limit)
        if page:
            pages.append(page)
            position = page[-1]["position"]
        if len(page) < limit:
            return pages


def test_the_pages_are_the_plain_fetchs_and_the_next_is_asked_for_before_the_caller_asks():
    log = Log(35)
    prefetching = PrefetchingFetch(log)
    first = prefetching("routing", 0, 10)
    assert log.calls == [("routing", 0, 10), ("routing", 10, 10)]  # the second already on its way
    assert first == Log(35)("routing", 0, 10)
    rest = read_all(prefetching)                                      # asks from 0 again: a new read
    assert rest == read_all(Log(35))
    assert [call[1] for call in log.calls[2:]] == [0, 10, 20, 30]     # each page asked for once
    prefetching.close()


def test_a_page_asked_for_with_other_arguments_is_read_as_asked():
    log = Log(100)
    prefetching = PrefetchingFetch(log)
    prefetching("routing", 0, 10)                        # prefetches (routing, 10, 10)
    page = prefetching("intake", 0, 10)                  # not what was guessed
    assert page == Log(100)("intake", 0, 10)
    assert ("intake", 0, 10) in log.calls
    prefetching.close()


def test_a_short_page_asks_for_nothing_more():
    log = Log(5)
    prefetching = PrefetchingFetch(log)
    assert len(prefetching("routing", 0, 10)) == 5
    eventlet.sleep(0.05)
    assert log.calls == [("routing", 0, 10)]


def test_a_prefetch_that_fails_fails_the_call_that_wanted_it():
    prefetching = PrefetchingFetch(Log(100, fail_after=10))
    prefetching("routing", 0, 10)
    with pytest.raises(ConnectionError):
        prefetching("routing", 10, 10)


def test_close_drops_the_page_in_flight():
    log = Log(100)
    prefetching = PrefetchingFetch(log)
    prefetching("routing", 0, 10)
    prefetching.close()
    eventlet.sleep(0.05)
    assert prefetching._ahead is None and len(log.calls) == 2
