"""Counts of what the sandbox served, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
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


class Counters:
    """Thread-safe counters of requests, queries, rows, bytes and faults.

    `queries` counts query requests that reached the engine; `rows_served` and
    `bytes_served` count what was written to clients, faults included.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._queries = 0
        self._rows = 0
        self._bytes = 0

    def record_request(self, path: str) -> None:
        """Count a request for `path`."""
        with self._lock:
            self._by_path[path] += 1

    def record_status(self, status: int | str) -> None:
        """Count a response status (or `DROPPED`)."""
        with self._lock:
            self._by_status[str(status)] += 1

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

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._by_path.clear()
            self._by_status.clear()
            self._faults.clear()
            self._queries = 0
            self._rows = 0
            self._bytes = 0
