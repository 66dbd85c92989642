"""The request budget: a sliding window of requests, shared by threads and clients."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import httpx
import pyarrow as pa
import pytest

from connector import budget as budget_module
from connector.budget import RequestBudget, shared_budget
from connector.client import ARROW_STREAM, LogfireClient
from connector.errors import ConfigurationError

TOKEN = "pylf_v1_us_Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
INSTANT = datetime(2026, 5, 27, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def most_in_any_window(times: list[float], period: float) -> int:
    """The most of `times` that fall within one half-open span of `period`."""
    ordered = sorted(times)
    most = 0
    first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.fixture
def short_minute(monkeypatch: pytest.MonkeyPatch) -> float:
    """A 'minute' of half a second, so that waits stay short."""
    monkeypatch.setattr(budget_module, "PERIOD_SECONDS", 0.5)
    return 0.5


def test_requests_beyond_the_limit_wait_for_the_oldest_to_leave_the_window() -> None:
    fake = FakeTime()
    budget = RequestBudget(3, 10.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)

    sent = []
    for _ in range(7):
        budget.acquire()
        sent.append(fake.now)

    assert sent == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]


def test_a_request_after_a_quiet_spell_does_not_wait() -> None:
    fake = FakeTime()
    budget = RequestBudget(2, 10.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    budget.acquire()
    budget.acquire()
    fake.now = 25.0

    assert budget.acquire() == 0.0
    assert fake.now == 25.0


def test_a_long_wait_for_the_budget_is_said_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    budget = RequestBudget(2, 60.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    caplog.set_level(logging.DEBUG, logger="connector.budget")
    for _ in range(3):
        budget.acquire()
    fake.now = 119.0
    budget.acquire()
    budget.acquire()

    waits = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert waits == [
        (logging.INFO, _spent(60.0)),
        (logging.DEBUG, _spent(1.0)),
    ]


def _spent(seconds: float) -> str:
    return (
        "The budget of 2 requests per 60 s (max_requests_per_minute) is spent; "
        f"waiting {seconds:.1f} s."
    )


def test_the_margin_spaces_requests_a_little_more_than_the_period() -> None:
    fake = FakeTime()
    budget = RequestBudget(2, 60.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        budget.acquire()

    assert budget.margin == 0.6
    assert fake.now == 60.6
    assert RequestBudget(2, 3.0).margin == 0.25


def test_threads_sharing_a_budget_never_exceed_it_in_any_window() -> None:
    budget = RequestBudget(5, 0.3, margin=0.0)
    sent: list[float] = []
    lock = threading.Lock()

    def send() -> None:
        for _ in range(4):
            budget.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(sent) == 24
    # The reserved instants are exact; the threads wake a little after them.
    assert most_in_any_window(sent, 0.3 - 0.02) <= 5
    assert max(sent) - min(sent) >= 0.3 * 4


def test_a_bad_limit_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="limit of 1 or more"):
        RequestBudget(0)
    with pytest.raises(ConfigurationError, match="positive period"):
        RequestBudget(5, 0.0)
    with pytest.raises(ConfigurationError, match="margin"):
        RequestBudget(5, 1.0, margin=-1.0)


def test_clients_of_one_service_and_token_share_one_budget() -> None:
    first = shared_budget("https://a.example", TOKEN, 100)

    assert shared_budget("https://a.example", TOKEN, 100) is first
    assert shared_budget("https://a.example", TOKEN + "x", 100) is not first
    assert shared_budget("https://b.example", TOKEN, 100) is not first
    assert TOKEN not in repr(first)


def test_the_client_spends_the_budget_before_every_request(
    short_minute: float,
) -> None:
    body = pa.BufferOutputStream()
    with pa.ipc.new_stream(body, pa.schema([("n", pa.int64())])) as writer:
        writer.write_table(pa.table({"n": [1]}))
    content = bytes(body.getvalue().to_pybytes())
    arrived: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrived.append(time.monotonic())
        return httpx.Response(
            200, headers={"content-type": ARROW_STREAM}, content=content
        )

    client = LogfireClient(
        TOKEN,
        base_url="http://budget.test",
        transport=httpx.MockTransport(handler),
        max_requests_per_minute=2,
    )
    with client:
        for _ in range(5):
            client.query_table("SELECT 1 AS n", min_timestamp=INSTANT)

    assert client.requests_made == 5
    assert most_in_any_window(arrived, short_minute) <= 2
    assert arrived[-1] - arrived[0] >= 2 * short_minute


def test_requests_made_is_exact_under_many_threads() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token_id": "t"})

    client = LogfireClient(
        TOKEN, base_url="http://count.test", transport=httpx.MockTransport(handler)
    )

    def ask() -> None:
        for _ in range(50):
            client.token_info()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert client.requests_made == 400
