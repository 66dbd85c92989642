"""Syncs against a sandbox that injects faults: each kind alone, then all mixed.

One sandbox serves a few hours of generated telemetry with its clock stopped,
so every case reads the same rows. Each case replaces the fault plan (which
starts its draws again), syncs into a new DuckDB file with small pages, so a
sync sends many requests, and compares the destination with the rows the
sandbox holds up to the horizon. The sandbox streams batches of 50 rows, so a
page spans several batches and the stream faults cut pages in the middle.

Cases without the end-of-stream marker run against a second sandbox whose
Arrow streams never carry it, with ``require_end_marker=False``: a clean cut is
then caught only by the row counts the connector verifies.

Retry waits are cut short while the matrix runs (see :mod:`reliability.retries`);
a ``Retry-After`` is still honoured, and the sandbox asks for none (``429date``
still waits a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt

from connector.sync import SyncReport, run_sync
from connector.tables import TableName
from reliability.compare import Comparison, compare, expected_rows, read_table
from reliability.retries import short_retry_waits
from sandbox.clock import Clock
from sandbox.faults import ALL_KINDS, FaultKind, FaultPlan
from sandbox.server import SandboxServer
from sandbox.store import Store

__all__ = [
    "NOW",
    "CaseResult",
    "FaultCase",
    "fault_sandbox",
    "matrix",
    "run_case",
]

NOW: Final = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
"""Where the matrix's sandbox clock stands still."""

SETTLE: Final = timedelta(minutes=5)
TABLE_NAMES: Final[tuple[TableName, ...]] = ("records", "metrics")
SYNC_OPTIONS: Final[dict[str, Any]] = {
    "start": (NOW - timedelta(hours=7)).isoformat(),
    "page_size": 200,
    "target_pages": 3,
    "initial_window": "20m",
    "concurrency": 2,
    "max_attempts": 12,
}
"""Small pages and windows, so that one sync sends many requests.

With faults on 30% of queries, eight attempts in a row all fail for about one
request in 35,000, which over the matrix's thousands of requests would fail a
run now and then; twelve make that one in 7 million."""


@dataclass(frozen=True)
class FaultCase:
    """One sync under one fault plan.

    Attributes:
        label: The fault kind, or ``mixed``.
        kinds: The kinds the plan draws from.
        rate: The share of query requests that get a fault.
        seed: The plan's seed.
        marker: Whether the sandbox ends Arrow streams with their marker.
    """

    label: str
    kinds: tuple[FaultKind, ...]
    rate: float
    seed: int
    marker: bool = True

    def plan(self) -> FaultPlan:
        """The sandbox's fault plan for this case."""
        return FaultPlan(
            self.rate, self.kinds, seed=self.seed, retry_after=0, slow_seconds=0.05
        )

    def __str__(self) -> str:
        marker = "" if self.marker else ", no marker"
        return f"{self.label} at {self.rate:.0%}, seed {self.seed}{marker}"


@dataclass(frozen=True)
class CaseResult:
    """What one case did.

    Attributes:
        case: The case.
        comparisons: The destination against the sandbox, per table.
        faults: Faults injected, by kind.
        requests: HTTP requests the sync sent, retries included.
        seconds: How long the sync took.
    """

    case: FaultCase
    comparisons: tuple[Comparison, ...]
    faults: dict[str, int]
    requests: int
    seconds: float

    @property
    def exact(self) -> bool:
        """Whether every table holds exactly the sandbox's rows."""
        return all(comparison.exact for comparison in self.comparisons)

    def __str__(self) -> str:
        injected = sum(self.faults.values())
        verdict = "exact" if self.exact else "DIFFERENT"
        rows = sum(comparison.loaded for comparison in self.comparisons)
        return (
            f"{self.case!s:<28} {verdict}: {rows:,} rows, {self.requests} "
            f"requests, {injected} faults, {self.seconds:.1f} s"
        )


def matrix(
    seeds: int,
    *,
    rate: float = 0.3,
    first_seed: int = 0,
    singles: bool = True,
    unmarked: int = 0,
) -> list[FaultCase]:
    """Each kind alone at `rate`, then all kinds mixed under `seeds` seeds.

    `unmarked` more mixed cases run without the end-of-stream marker.
    """
    cases = []
    if singles:
        cases = [
            FaultCase(kind, (kind,), rate, first_seed + number)
            for number, kind in enumerate(ALL_KINDS)
        ]
    cases += [
        FaultCase("mixed", ALL_KINDS, rate, seed)
        for seed in range(first_seed, first_seed + seeds)
    ]
    cases += [
        FaultCase("mixed", ALL_KINDS, rate, seed, marker=False)
        for seed in range(first_seed, first_seed + unmarked)
    ]
    return cases


@contextmanager
def fault_sandbox(
    records: int = 3_000,
    metrics: int = 600,
    *,
    seed: int = 3,
    marker: bool = True,
    batch_rows: int = 50,
) -> Iterator[SandboxServer]:
    """A sandbox of six hours of telemetry, its clock stopped at `NOW`."""
    store = Store.generated(
        seed=seed, records=records, metrics=metrics, hours=6, end=NOW
    )
    clock = Clock(start=NOW, speed=1e-9)
    with SandboxServer(
        store, clock=clock, arrow_end_marker=marker, batch_rows=batch_rows
    ) as server:
        yield server


def run_case(
    server: SandboxServer, case: FaultCase, workdir: Path, **options: Any
) -> CaseResult:
    """Sync the sandbox under the case's faults and compare the destination.

    Args:
        server: A sandbox from :func:`fault_sandbox`, with or without the
            marker as the case says.
        case: The faults.
        workdir: A folder for this case's destination and dlt state.
        **options: Source options on top of the matrix's own.
    """
    name = f"faults_{case.label}_{case.seed}{'' if case.marker else '_unmarked'}"
    if not case.marker:
        options = {"require_end_marker": False, **options}
    database = workdir / f"{name}.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(database)),
        pipelines_dir=str(workdir / "pipelines"),
        dataset_name="logfire",
    )
    server.counters.reset()
    server.faults = case.plan()
    started = time.monotonic()
    try:
        with short_retry_waits():
            report = _sync(server, pipeline, options)
    finally:
        server.faults = FaultPlan.none()
    seconds = time.monotonic() - started

    return CaseResult(
        case=case,
        comparisons=_compare(server, database, report),
        faults=dict(server.counters.snapshot()["faults"]),
        requests=report.requests,
        seconds=seconds,
    )


def run_matrix(
    cases: Sequence[FaultCase],
    workdir: Path,
    *,
    say: Callable[[str], None] = print,
) -> list[CaseResult]:
    """Run every case against one sandbox; returns their results."""
    results = []
    for marker in (True, False):
        chosen = [case for case in cases if case.marker == marker]
        if not chosen:
            continue
        with fault_sandbox(marker=marker) as server:
            for case in chosen:
                result = run_case(server, case, workdir)
                say(str(result))
                results.append(result)
    return results


def _sync(
    server: SandboxServer, pipeline: dlt.Pipeline, options: dict[str, Any]
) -> SyncReport:
    """One sync of the sandbox, with the matrix's options."""
    return run_sync(
        pipeline,
        read_token=server.token,
        base_url=server.url,
        **{**SYNC_OPTIONS, **options},
    )


def _compare(
    server: SandboxServer, database: Path, report: SyncReport
) -> tuple[Comparison, ...]:
    """Each table of the destination against the sandbox's rows."""
    horizon = server.clock.now() - SETTLE
    comparisons = []
    for table in TABLE_NAMES:
        stored = server.store.visible(table, server.clock.now())
        expected = expected_rows(stored, created_before=horizon)
        comparisons.append(compare(table, read_table(database, table), expected))
    if not report.caught_up:
        raise AssertionError(f"The sync did not catch up: {report}")
    return tuple(comparisons)
