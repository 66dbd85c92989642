from __future__ import annotations

import logging

import pytest
import tenacity

from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    IncompleteResponseError,
    LogfireSyncError,
    QueryError,
    RateLimitedError,
    TransientError,
)
from connector.retry import RetryPolicy


class Flaky:
    """A call that raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: LogfireSyncError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def policy(
    sleeps: list[float],
    *,
    max_attempts: int = 8,
    max_elapsed: float = 300.0,
    initial_wait: float = 0.5,
) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        max_elapsed=max_elapsed,
        initial_wait=initial_wait,
        jitter=0.0,
        sleep=sleeps.append,
    )


def state_after(
    retrying: tenacity.Retrying, error: BaseException, attempt: int
) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_defaults_match_the_documented_policy() -> None:
    default = RetryPolicy()

    assert default.max_attempts == 8
    assert default.max_elapsed == 300.0
    assert default.initial_wait == 0.5
    assert default.max_wait == 30.0


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "settings",
    [
        {"max_attempts": 0},
        {"max_elapsed": 0.0},
        {"initial_wait": -1.0},
        {"jitter": -0.1},
        {"initial_wait": 5.0, "max_wait": 1.0},
    ],
)
def test_invalid_settings_are_configuration_errors(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**settings)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_maximum() -> None:
    chosen = RetryPolicy(initial_wait=0.5, max_wait=3.0, jitter=0.0)
    wait = chosen.wait()
    error = TransientError("down")

    waits = [wait(state_after(chosen.retrying(), error, n)) for n in range(1, 6)]

    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_adds_at_most_its_value() -> None:
    chosen = RetryPolicy(initial_wait=1.0, max_wait=30.0, jitter=0.5)
    wait = chosen.wait()
    state = state_after(chosen.retrying(), TransientError("down"), 1)

    assert all(1.0 <= wait(state) <= 1.5 for _ in range(200))


def test_wait_is_never_shorter_than_retry_after() -> None:
    chosen = RetryPolicy(initial_wait=0.5, max_wait=2.0, jitter=0.0)
    error = RateLimitedError("slow down", retry_after=12.5)

    assert chosen.wait()(state_after(chosen.retrying(), error, 1)) == 12.5


def test_backoff_wins_over_a_shorter_retry_after() -> None:
    chosen = RetryPolicy(initial_wait=4.0, max_wait=8.0, jitter=0.0)
    error = RateLimitedError("slow down", retry_after=1.0)

    assert chosen.wait()(state_after(chosen.retrying(), error, 1)) == 4.0


def test_rate_limit_without_retry_after_uses_backoff() -> None:
    chosen = RetryPolicy(initial_wait=0.5, jitter=0.0)
    error = RateLimitedError("slow down", retry_after=None)

    assert chosen.wait()(state_after(chosen.retrying(), error, 1)) == 0.5


def test_transient_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    call = Flaky(TransientError("503"), IncompleteResponseError("cut"))

    assert policy(sleeps).retrying()(call) == "done"
    assert call.calls == 3
    assert sleeps == [0.5, 1.0]


def test_giving_up_reraises_the_last_error_with_a_note() -> None:
    sleeps: list[float] = []
    call = Flaky(*(TransientError(f"failure {n}") for n in range(5)))

    with pytest.raises(TransientError, match="failure 2") as caught:
        policy(sleeps, max_attempts=3).retrying()(call)

    assert call.calls == 3
    assert len(sleeps) == 2
    assert any("Gave up after 3 attempts" in note for note in caught.value.__notes__)


def test_a_retry_after_beyond_the_budget_stops_at_once() -> None:
    sleeps: list[float] = []
    call = Flaky(RateLimitedError("busy", retry_after=600.0))

    with pytest.raises(RateLimitedError) as caught:
        policy(sleeps, max_elapsed=300.0).retrying()(call)

    assert call.calls == 1
    assert sleeps == []
    notes = " ".join(caught.value.__notes__)
    assert "Gave up after 1 attempt in" in notes
    assert "retry budget of 300 s" in notes


def test_a_retry_after_within_the_budget_is_slept() -> None:
    sleeps: list[float] = []
    call = Flaky(RateLimitedError("busy", retry_after=20.0))

    assert policy(sleeps).retrying()(call) == "done"
    assert sleeps == [20.0]


@pytest.mark.parametrize(
    "error",
    [
        QueryError("bad sql", status_code=400),
        AuthenticationError("bad token", status_code=401),
        AuthenticationError("forbidden", status_code=403),
        QueryError("bad options", status_code=422),
        ConfigurationError("no such URL", status_code=404),
    ],
)
def test_errors_the_caller_must_fix_are_never_retried(error: LogfireSyncError) -> None:
    sleeps: list[float] = []
    call = Flaky(error)

    with pytest.raises(type(error)) as caught:
        policy(sleeps).retrying()(call)

    assert caught.value is error
    assert call.calls == 1
    assert sleeps == []


def test_other_exceptions_are_not_retried() -> None:
    sleeps: list[float] = []

    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        policy(sleeps).retrying()(broken)
    assert sleeps == []


def test_retrying_works_as_a_loop() -> None:
    sleeps: list[float] = []
    call = Flaky(TransientError("503"))
    results = []

    for attempt in policy(sleeps).retrying():
        with attempt:
            results.append(call())

    assert results == ["done"]
    assert call.calls == 2


def test_each_retry_is_logged_with_the_error_and_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps: list[float] = []
    call = Flaky(TransientError("The service failed (HTTP 503)."))

    with caplog.at_level(logging.WARNING, logger="connector.retry"):
        policy(sleeps, initial_wait=1.5).retrying()(call)

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.name == "connector.retry"
    assert "The service failed (HTTP 503)." in record.getMessage()
    assert "1.50 s" in record.getMessage()
    assert record.args


def test_policy_repr_leaves_out_the_sleep_function() -> None:
    assert "sleep" not in repr(RetryPolicy())
