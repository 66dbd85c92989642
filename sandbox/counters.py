"""Counts of what the sandbox served, for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TypedDict


class RequestCounts(TypedDict):
    """HTTP requests received, in total and split two ways."""

    total: int
    by_path: dict[str, int]
    by_status: dict[str, int]


class CountersSnapshot(TypedDict):
    """A copy of every counter at one instant."""

    requests: RequestCounts
    queries: int
    rows_served: int
    bytes_served: int
    faults: dict[str, int]


DROPPED = "dropped"
"""The status bucket of a request whose connection was closed without a status."""

REQUEST = "request"
"""The `what` of a timeline event for a request's arrival."""

_TIMELINE_EVENTS = 200_000


@dataclass(frozen=True)
class Event:
    """One moment of the timeline: a request arrived, or its status went out.

    Attributes:
        at: When, in `time.monotonic()` seconds of the sandbox's process.
        path: The request's path, such as `/v2/query`.
        what: `REQUEST` for an arrival, else the status sent (or `DROPPED`).
    """

    at: float
    path: str
    what: str


class Counters:
    """Thread-safe counters of requests, queries, rows, bytes and faults.

    `queries` counts query requests that reached the engine; `rows_served` and
    `bytes_served` count what was written to clients, faults included. The
    timeline keeps when the last 200,000 requests arrived and were answered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._queries = 0
        self._rows = 0
        self._bytes = 0
        self._timeline: deque[Event] = deque(maxlen=_TIMELINE_EVENTS)

    def record_request(self, path: str) -> None:
        """Count a request for `path`."""
        with self._lock:
            self._by_path[path] += 1
            self._timeline.append(Event(time.monotonic(), path, REQUEST))

    def record_status(self, status: int | str, path: str | None = None) -> None:
        """Count a response status (or `DROPPED`), timed when `path` is given."""
        with self._lock:
            self._by_status[str(status)] += 1
            if path is not None:
                self._timeline.append(Event(time.monotonic(), path, str(status)))

    def record_query(self) -> None:
        """Count a query handed to the engine."""
        with self._lock:
            self._queries += 1

    def record_fault(self, kind: str) -> None:
        """Count an injected fault of `kind`."""
        with self._lock:
            self._faults[kind] += 1

    def add_rows(self, rows: int) -> None:
        """Count rows written to a client."""
        with self._lock:
            self._rows += rows

    def add_bytes(self, size: int) -> None:
        """Count body bytes written to a client."""
        with self._lock:
            self._bytes += size

    def snapshot(self) -> CountersSnapshot:
        """A consistent copy of every counter."""
        with self._lock:
            return {
                "requests": {
                    "total": sum(self._by_path.values()),
                    "by_path": dict(self._by_path),
                    "by_status": dict(self._by_status),
                },
                "queries": self._queries,
                "rows_served": self._rows,
                "bytes_served": self._bytes,
                "faults": dict(self._faults),
            }

    def timeline(self) -> list[Event]:
        """The arrivals and statuses of recent requests, oldest first."""
        with self._lock:
            return list(self._timeline)

    def reset(self) -> None:
        """Set every counter back to zero, and empty the timeline."""
        with self._lock:
            self._timeline.clear()
            self._by_path.clear()
            self._by_status.clear()
            self._faults.clear()
            self._queries = 0
            self._rows = 0
            self._bytes = 0
