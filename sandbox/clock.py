"""The sandbox's clock, which can run faster than real time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """The sandbox's notion of now.

    At speed N, every real second moves the clock N seconds. Queries, the HTTP
    `Date` header and the live feed all read this clock, so a test can run a
    simulated day in minutes.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"The clock speed must be positive, not {speed}.")
        if start is not None and start.tzinfo is None:
            raise ValueError("The clock's start must be time-zone aware.")
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._speed = speed
        self._origin = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        """How many clock seconds pass in one real second."""
        return self._speed

    def now(self) -> datetime:
        """The current clock time, UTC, to the microsecond."""
        elapsed = (time.monotonic() - self._origin) * self._speed
        with self._lock:
            offset = self._offset
        return self._start + timedelta(seconds=elapsed) + offset

    def advance(self, delta: timedelta) -> None:
        """Jump the clock forward by `delta`."""
        if delta < timedelta(0):
            raise ValueError("The sandbox clock never moves backwards.")
        with self._lock:
            self._offset += delta
