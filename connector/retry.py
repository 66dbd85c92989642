"""When and how long to wait before sending a failed request again.

The policy is composed from tenacity: only :class:`RetryableError` is retried,
waits grow exponentially with jitter but are never shorter than the service's
``Retry-After``, and retrying stops after a number of attempts or once the time
budget would be exceeded. When it gives up, the last error itself is raised,
with a note saying how many attempts were made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from connector.errors import ConfigurationError, RetryableError

__all__ = ["RetryPolicy", "WaitRetryAfter"]

logger = logging.getLogger(__name__)


def _error_of(retry_state: tenacity.RetryCallState) -> BaseException | None:
    """The exception the last attempt raised, if any."""
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


class WaitRetryAfter(wait_base):
    """A backoff that never waits less than the failed response asked for."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        wait = float(self.backoff(retry_state))

        error = _error_of(retry_state)
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return max(wait, error.retry_after)
        return wait


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently failed requests are retried.

    Attributes:
        max_attempts: Attempts in all, the first one included.
        max_elapsed: Seconds after the first attempt past which no attempt
            starts; a wait that would end later stops the retrying at once.
        initial_wait: Seconds before the first retry; doubled for each next one.
        max_wait: The longest backoff in seconds; a longer ``Retry-After`` from
            the service is still honoured.
        jitter: Up to this many random seconds added to each backoff.
        sleep: The function that waits; tests pass one that only records.
    """

    max_attempts: int = 8
    max_elapsed: float = 300.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(
        default=time.sleep, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be at least 1, not {self.max_attempts}."
            )
        if self.max_elapsed <= 0:
            raise ConfigurationError(
                f"max_elapsed must be a positive number of seconds, "
                f"not {self.max_elapsed}."
            )
        if self.initial_wait < 0 or self.jitter < 0:
            raise ConfigurationError(
                f"initial_wait ({self.initial_wait}) and jitter ({self.jitter}) "
                "must not be negative."
            )
        if self.max_wait < self.initial_wait:
            raise ConfigurationError(
                f"max_wait ({self.max_wait}) must not be shorter than "
                f"initial_wait ({self.initial_wait})."
            )

    def wait(self) -> WaitRetryAfter:
        """The wait strategy: exponential backoff with jitter, or Retry-After."""
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.jitter
        )
        return WaitRetryAfter(backoff)

    def stop(self) -> stop_base:
        """The stop strategy: out of attempts, or out of time."""
        # Unlike stop_after_delay, this also refuses to start a wait (such as a
        # long Retry-After) that would end after the budget.
        out_of_attempts = tenacity.stop_after_attempt(self.max_attempts)
        out_of_time = tenacity.stop_before_delay(self.max_elapsed)
        return out_of_attempts | out_of_time

    def retrying(self) -> tenacity.Retrying:
        """A tenacity controller applying this policy.

        Use it as ``for attempt in policy.retrying(): with attempt: ...``.
        """
        return tenacity.Retrying(
            sleep=self.sleep,
            stop=self.stop(),
            wait=self.wait(),
            retry=tenacity.retry_if_exception_type(RetryableError),
            before_sleep=_log_retry,
            retry_error_callback=self._give_up,
            reraise=True,
        )

    def _give_up(self, retry_state: tenacity.RetryCallState) -> None:
        """Raise the last error, noting how long the retrying went on."""
        error = _error_of(retry_state)
        if error is None:
            raise RuntimeError("Retrying stopped without a failed attempt.")

        attempts = retry_state.attempt_number
        elapsed = retry_state.seconds_since_start or 0.0
        note = (
            f"Gave up after {attempts} attempt{'s' if attempts != 1 else ''} "
            f"in {elapsed:.1f} s."
        )
        if attempts < self.max_attempts:
            note += (
                f" The next wait of {retry_state.upcoming_sleep:.1f} s would "
                f"have passed the retry budget of {self.max_elapsed:g} s."
            )
        error.add_note(note)
        raise error


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    """Log a failed attempt and the wait before the next one."""
    error = _error_of(retry_state)
    logger.warning(
        "Attempt %s failed with %s: %s Retrying in %.2f s.",
        retry_state.attempt_number,
        type(error).__name__,
        error,
        retry_state.upcoming_sleep,
    )
