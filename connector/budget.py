"""A budget of requests per minute, shared by everything that calls one service.

Logfire limits queries per organisation, for every read token in it, so a sync
that reads several windows at once, or runs chunk after chunk, must count its
requests in one place. :class:`RequestBudget` is a sliding window: no span of
`period` seconds holds more than `limit` requests. A request that would pass
the budget waits for its turn before it is sent, retries included.

The service counts requests when they arrive, a little after they were sent
and not always equally late, so the budget spaces them by a small margin more
than the period: a request waits until `period + margin` after the one `limit`
requests before it.

:func:`shared_budget` hands every client of the same service and token, in one
process, the same budget, so that it outlives one client and one chunk.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from connector.errors import ConfigurationError

__all__ = ["PERIOD_SECONDS", "RequestBudget", "shared_budget"]

logger = logging.getLogger(__name__)

_NOTICED_WAIT = 5.0
"""Seconds of waiting for the budget that are logged at INFO."""

PERIOD_SECONDS = 60.0
"""What the per-minute option counts over; only tests make it shorter."""

_SMALLEST_MARGIN = 0.25
_MARGIN_SHARE = 0.01

_SHARED: dict[tuple[str, str, int, float], RequestBudget] = {}
_SHARED_LOCK = threading.Lock()


class RequestBudget:
    """At most `limit` requests in any `period` seconds, safe to share by threads.

    Args:
        limit: Requests allowed in one period.
        period: The length of the sliding window, in seconds.
        margin: Seconds added to the period between a request and the one
            `limit` requests later [a hundredth of the period, at least 0.25].
        clock: Monotonic seconds; tests pass a fake one.
        sleep: Waits a number of seconds; tests pass one that moves the clock.
    """

    def __init__(
        self,
        limit: int,
        period: float = PERIOD_SECONDS,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(
                f"A request budget needs a limit of 1 or more, not {limit!r}."
            )
        if not period > 0:
            raise ConfigurationError(
                f"A request budget needs a positive period, not {period!r}."
            )
        if margin is None:
            margin = max(_SMALLEST_MARGIN, period * _MARGIN_SHARE)
        if margin < 0:
            raise ConfigurationError(
                f"A request budget's margin must not be negative, not {margin!r}."
            )
        self.limit = limit
        self.period = period
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # The send times of the last `limit` requests, some maybe still ahead.
        self._slots: deque[float] = deque()

    def __repr__(self) -> str:
        return f"RequestBudget(limit={self.limit}, period={self.period:g})"

    def acquire(self) -> float:
        """Wait until one more request fits the budget; returns the seconds waited.

        Each caller reserves its own instant under the lock, so threads are
        served in the order they asked, and then waits without holding it.
        """
        with self._lock:
            now = self._clock()
            slot = now
            if len(self._slots) >= self.limit:
                slot = max(now, self._slots.popleft() + self.period + self.margin)
            self._slots.append(slot)

        waited = slot - now
        if waited > 0:
            # A wait one notices is said at INFO: without it a throttled sync
            # looks stuck.
            level = logging.INFO if waited >= _NOTICED_WAIT else logging.DEBUG
            logger.log(
                level,
                "The budget of %s requests per %g s (max_requests_per_minute) is "
                "spent; waiting %.1f s.",
                self.limit,
                self.period,
                waited,
            )
        while (left := slot - self._clock()) > 0:
            self._sleep(left)
        return max(waited, 0.0)


def shared_budget(base_url: str, read_token: str, per_minute: int) -> RequestBudget:
    """The budget of one service and token in this process, made on first use.

    The token is kept only as a digest. Asking again with another limit gives a
    new budget, which later callers then share.
    """
    digest = hashlib.sha256(read_token.encode()).hexdigest()
    key = (base_url, digest, per_minute, PERIOD_SECONDS)
    with _SHARED_LOCK:
        budget = _SHARED.get(key)
        if budget is None:
            budget = RequestBudget(per_minute, PERIOD_SECONDS)
            _SHARED[key] = budget
        return budget
