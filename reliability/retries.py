"""Short retry waits, so that runs with many injected faults stay quick.

The connector's policy waits half a second and more before a retry, which is
right against a real service but makes a sync with a fault on every third
request slow. :func:`short_retry_waits` shortens the backoff of every policy
built while it is active, and nothing else: attempts, the time budget and the
waits a ``Retry-After`` asks for are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from unittest import mock

from connector.retry import RetryPolicy, WaitRetryAfter

__all__ = ["short_retry_waits"]


@contextlib.contextmanager
def short_retry_waits(
    initial: float = 0.01, longest: float = 0.05, jitter: float = 0.01
) -> Iterator[None]:
    """Back off from `initial` to at most `longest` seconds while active."""
    original = RetryPolicy.wait

    def wait(policy: RetryPolicy) -> WaitRetryAfter:
        short = dataclasses.replace(
            policy, initial_wait=initial, max_wait=longest, jitter=jitter
        )
        return original(short)

    with mock.patch.object(RetryPolicy, "wait", wait):
        yield
