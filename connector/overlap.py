"""Running an iterator in a thread of its own, a few items ahead of its consumer.

Within one window, each page's request waits for the last key of the page
before it, so a reader that shapes a page before asking for the next one adds
the shaping to every request's wait. With the pages read ahead in a thread of
their own, the next request goes out while the last page is being shaped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Final, Generic, Literal, TypeVar

__all__ = ["run_ahead"]

T = TypeVar("T")

_POLL_SECONDS: Final = 0.1
"""How often a producer waiting for room checks whether it was stopped."""


_Entry = (
    tuple[Literal["item"], T]
    | tuple[Literal["error"], BaseException]
    | tuple[Literal["end"], None]
)
"""What the thread queues: an item, the error that ended them, or their end."""


def run_ahead(items: Iterator[T], *, depth: int, name: str) -> Iterator[T]:
    """Yield `items`, which a thread named `name` takes up to `depth` ahead.

    An error raised by `items` is raised here after the items before it.
    Closing the generator stops the thread once its current item is taken,
    and closes `items` in it.
    """
    producer = _Producer(items, depth, name)
    producer.start()
    try:
        while True:
            entry = producer.get()
            if entry[0] == "end":
                return
            if entry[0] == "error":
                raise entry[1]
            yield entry[1]
    finally:
        producer.stop()


class _Producer(Generic[T]):
    """The thread that takes the items and queues them."""

    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._items = items
        self._queue: queue.Queue[_Entry[T]] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start taking items."""
        self._thread.start()

    def get(self) -> _Entry[T]:
        """The next entry, waiting for one."""
        return self._queue.get()

    def stop(self) -> None:
        """Stop taking items and wait for the thread to close them."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as error:
            self._put(("error", error))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: _Entry[T]) -> bool:
        """Queue `entry` once there is room; False once stopped."""
        while not self._stopped.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False
