"""An iterator run in a thread of its own, a few items ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from connector.overlap import run_ahead


class _Items:
    """Numbered items, noting the thread each was made in and when they closed."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.made = 0
        self.threads: set[str] = set()
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[int]:
        try:
            for number in range(self.count):
                if number == self.fail_at:
                    raise ValueError(f"item {number} is broken")
                self.threads.add(threading.current_thread().name)
                self.made += 1
                yield number
        finally:
            self.closed.set()


def test_items_come_in_order_from_a_thread_of_their_own() -> None:
    items = _Items(50)

    got = list(run_ahead(iter(items), depth=2, name="pages"))

    assert got == list(range(50))
    assert items.threads == {"pages"}
    assert items.closed.is_set()


def test_the_thread_goes_no_further_than_its_depth_ahead() -> None:
    items = _Items(100)
    ahead = run_ahead(iter(items), depth=3, name="pages")

    assert next(ahead) == 0
    time.sleep(0.3)
    # One item taken, three queued, and one made that waits for room.
    assert items.made == 5
    ahead.close()


def test_an_error_is_raised_after_the_items_before_it() -> None:
    items = _Items(10, fail_at=4)
    ahead = run_ahead(iter(items), depth=2, name="pages")

    assert [next(ahead) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="item 4 is broken"):
        next(ahead)


def test_closing_early_stops_the_thread_and_closes_the_items() -> None:
    items = _Items(1_000)
    ahead = run_ahead(iter(items), depth=2, name="pages")
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]

    ahead.close()

    assert items.closed.is_set()
    assert items.made < 1_000
    assert not [t for t in threading.enumerate() if t.name == "pages"]
