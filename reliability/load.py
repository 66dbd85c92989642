"""Four windows in flight against a sandbox that caps queries and answers 429.

The sandbox lets only a few queries run at once, holds some of them a while,
and refuses a query that waited too long for its turn with a 429, as Logfire's
per-organisation cap does. The sync reads four windows at once under a budget
of requests per minute. From the sandbox's timeline of arrivals, the load test
finds the most requests that arrived in any one period of the budget, which
must not pass the budget, and the sync must still load every row exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final
from unittest import mock

import dlt

from connector import budget as budget_module
from connector.sync import run_sync
from connector.tables import TableName
from reliability.compare import Comparison, compare, expected_rows, read_table
from reliability.faultmatrix import NOW, SETTLE
from sandbox.clock import Clock
from sandbox.counters import REQUEST, Event
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer
from sandbox.store import Store

__all__ = ["LoadOptions", "LoadResult", "most_in_any_window", "run_load"]

TABLE_NAMES: Final[tuple[TableName, ...]] = ("records", "metrics")
SERVICE_PATHS: Final = frozenset({"/v2/query", "/v1/read-token-info"})


@dataclass(frozen=True)
class LoadOptions:
    """The sandbox's cap, the sync's budget, and the data.

    Attributes:
        budget: Requests allowed per period (``max_requests_per_minute``).
        period: The budget's period in seconds: a minute, except in tests.
        concurrency: Windows in flight.
        max_concurrent_queries: Queries the sandbox runs at once.
        queue_timeout: Seconds a query waits for the cap before its 429.
        held_share: The share of queries the sandbox holds before running.
        held_seconds: How long it holds them.
        records: Records rows.
        metrics: Metric points.
        page_size: Rows per request.
        seed: Makes the data and the holds repeatable.
    """

    budget: int = 40
    period: float = 60.0
    concurrency: int = 4
    max_concurrent_queries: int = 2
    queue_timeout: float = 0.25
    held_share: float = 0.5
    held_seconds: float = 0.5
    records: int = 20_000
    metrics: int = 4_000
    page_size: int = 500
    seed: int = 0


@dataclass(frozen=True)
class LoadResult:
    """What the load test saw.

    Attributes:
        requests: Requests the sync sent to the service.
        refused: Queries the sandbox refused with a 429 for its cap.
        most_in_window: The most requests that arrived within one period.
        options: The options it ran with.
        comparisons: The destination against the sandbox, per table.
        seconds: How long the sync took.
    """

    requests: int
    refused: int
    most_in_window: int
    options: LoadOptions
    comparisons: tuple[Comparison, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        """Within the budget, and exact."""
        exact = all(comparison.exact for comparison in self.comparisons)
        return exact and self.most_in_window <= self.options.budget

    def __str__(self) -> str:
        rate = self.requests / self.seconds * 60 if self.seconds else 0.0
        return (
            f"{self.requests} requests in {self.seconds:.1f} s ({rate:.0f} a "
            f"minute), {self.refused} refused by the cap; at most "
            f"{self.most_in_window} in any {self.options.period:g} s, budget "
            f"{self.options.budget}"
        )


def most_in_any_window(times: Sequence[float], period: float) -> int:
    """The most of `times` that lie within one half-open span of `period`."""
    ordered = sorted(times)
    most = 0
    first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_load(
    options: LoadOptions, workdir: Path, *, say: Callable[[str], None] = print
) -> LoadResult:
    """Sync a capped sandbox under a budget; count what arrived when."""
    store = Store.generated(
        seed=options.seed,
        records=options.records,
        metrics=options.metrics,
        hours=6,
        end=NOW,
    )
    holds = FaultPlan(
        options.held_share,
        ["slow"],
        seed=options.seed,
        slow_seconds=options.held_seconds,
    )
    database = workdir / "load.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="load",
        destination=dlt.destinations.duckdb(str(database)),
        pipelines_dir=str(workdir / "pipelines"),
        dataset_name="logfire",
    )
    with (
        SandboxServer(
            store,
            clock=Clock(start=NOW, speed=1e-9),
            faults=holds,
            max_concurrent_queries=options.max_concurrent_queries,
            queue_timeout=options.queue_timeout,
        ) as server,
        mock.patch.object(budget_module, "PERIOD_SECONDS", options.period),
    ):
        started = time.monotonic()
        report = run_sync(
            pipeline,
            read_token=server.token,
            base_url=server.url,
            start=(NOW - timedelta(hours=7)).isoformat(),
            page_size=options.page_size,
            target_pages=2,
            initial_window="15m",
            concurrency=options.concurrency,
            max_requests_per_minute=options.budget,
            max_attempts=20,
        )
        seconds = time.monotonic() - started
        counters = server.counters.snapshot()
        arrivals = _arrivals(server.counters.timeline())
        comparisons = tuple(
            compare(
                table,
                read_table(database, table),
                expected_rows(
                    server.store.visible(table, NOW), created_before=NOW - SETTLE
                ),
            )
            for table in TABLE_NAMES
        )

    if not report.caught_up:
        raise AssertionError(f"The sync under load did not catch up: {report}")
    result = LoadResult(
        requests=len(arrivals),
        refused=counters["requests"]["by_status"].get("429", 0),
        most_in_window=most_in_any_window(arrivals, options.period),
        options=options,
        comparisons=comparisons,
        seconds=seconds,
    )
    say(str(result))
    for comparison in comparisons:
        say(str(comparison))
    return result


def _arrivals(timeline: Sequence[Event]) -> list[float]:
    """When each request to the service's own endpoints arrived."""
    return [
        event.at
        for event in timeline
        if event.what == REQUEST and event.path in SERVICE_PATHS
    ]
