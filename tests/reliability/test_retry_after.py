"""Retry-After is honoured: the wait between a 429 and its retry, measured.

The sandbox keeps a timeline of when each request arrived and when its status
went out, so the test measures the real wait from the 429 leaving the sandbox
to the retry arriving. The connector's own backoff is cut to hundredths of a
second here, so only Retry-After can explain the wait.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dlt
import httpx
import pytest

from connector.sync import run_sync
from reliability.faultmatrix import NOW, fault_sandbox
from reliability.retries import short_retry_waits
from sandbox.counters import REQUEST
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

QUERY = "/v2/query"
SLACK = 0.5
"""How much longer than asked a wait may be: a request's own time."""


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with fault_sandbox(records=600, metrics=100) as running:
        yield running


def asked_seconds(server: SandboxServer, kind: str) -> float:
    """What the sandbox's 429 of `kind` asks for, read from its headers."""
    server.faults.force(kind)
    response = httpx.post(
        f"{server.url}{QUERY}",
        json={"sql": "SELECT 1", "min_timestamp": NOW.isoformat()},
        headers={"Authorization": server.token},
    )
    assert response.status_code == 429
    header = response.headers["retry-after"]
    if header.isdigit():
        return float(header)
    retry_at = email.utils.parsedate_to_datetime(header)
    sent_at = email.utils.parsedate_to_datetime(response.headers["date"])
    return (retry_at - sent_at).total_seconds()


def measured_waits(server: SandboxServer) -> list[float]:
    """Seconds from each 429 the sandbox sent to the next query's arrival."""
    events = [event for event in server.counters.timeline() if event.path == QUERY]
    waits = []
    for number, event in enumerate(events):
        if event.what != "429":
            continue
        retry = next(later for later in events[number:] if later.what == REQUEST)
        waits.append(retry.at - event.at)
    return waits


@pytest.mark.parametrize(
    ("kind", "retry_after"), [("429", 1.0), ("429", 2.0), ("429date", 1.0)]
)
def test_the_retry_waits_as_long_as_the_429_asked(
    server: SandboxServer, tmp_path: Path, kind: str, retry_after: float
) -> None:
    server.faults = FaultPlan(retry_after=retry_after)
    asked = asked_seconds(server, kind)
    server.counters.reset()
    server.faults.force(kind, 2)

    pipeline = dlt.pipeline(
        pipeline_name="retry_after",
        destination=dlt.destinations.duckdb(str(tmp_path / "retry_after.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="logfire",
    )
    with short_retry_waits():
        report = run_sync(
            pipeline,
            read_token=server.token,
            base_url=server.url,
            tables=["records"],
            start=(NOW - timedelta(hours=7)).isoformat(),
        )

    waits = measured_waits(server)
    assert report.caught_up
    assert asked >= 1.0
    assert len(waits) == 2
    assert all(asked <= wait < asked + SLACK for wait in waits), (asked, waits)
    print(f"{kind} asked {asked:g} s; waited {', '.join(f'{w:.3f}' for w in waits)}")
