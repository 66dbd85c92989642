"""A simulated day of live traffic, with faults, synced every few minutes.

The sandbox's clock runs hundreds of times faster than real time while
telemetry keeps arriving, late spans included, as Logfire stores it: a row
shows in queries only from its `_visible_at`, within five minutes after its
`created_at`, and long spans are stored hours after they began. Faults are
injected into a share of the queries all along. The sync runs again every few
simulated minutes, into one DuckDB destination. At the end the clock jumps a
day on, so that every stored row has settled, and a last sync runs; the
destination must then hold exactly the rows the sandbox stores before the last
sync's horizon.

By default the day's telemetry is generated before the clock starts and
revealed by the clock alone, so a busy machine cannot change what arrives
when. With `live_feed`, the sandbox's live feed stores it instead, a minute's
worth at a time in a thread of this process. A feed that falls behind the fast
clock stores rows whose `created_at` the sync has already passed, which
Logfire never does, so the soak measures how far behind it fell and fails with
its own error past the settle time: the machine was too busy for that speed.

Retry waits are cut short (see :mod:`reliability.retries`), as a second of
real time is minutes on the sandbox's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from connector.errors import RetryableError
from connector.sync import SyncReport, run_sync
from connector.tables import TableName
from reliability.compare import Comparison, compare, expected_rows, read_table
from reliability.retries import short_retry_waits
from sandbox.clock import Clock
from sandbox.faults import ALL_KINDS, FaultPlan
from sandbox.live import LiveFeed
from sandbox.server import SandboxServer
from sandbox.store import Store

__all__ = ["FeedTooSlowError", "SoakOptions", "SoakResult", "run_soak"]

START: Final = datetime(2026, 5, 27, 0, 0, tzinfo=UTC)
TABLE_NAMES: Final[tuple[TableName, ...]] = ("records", "metrics")
_SETTLE: Final = timedelta(minutes=5)
_SETTLED_AFTER: Final = timedelta(hours=25)
_FINAL_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class SoakOptions:
    """How long, how fast and how rough the soak is.

    Attributes:
        hours: Simulated hours of live traffic.
        speed: Simulated seconds per real second.
        every: Simulated time from the start of one sync to the next; a
            sync that takes longer is followed at once.
        records_per_hour: Records the live feed stores an hour.
        metrics_per_hour: Metric points it stores an hour.
        history_hours: Hours of telemetry stored before the feed starts.
        fault_rate: The share of query requests that get a fault.
        seed: Makes the data and the faults repeatable.
        page_size: Rows per request.
        concurrency: Windows in flight.
        live_feed: Store the traffic from the live feed's thread as the
            clock runs, rather than generate it first.
    """

    hours: float = 24.0
    speed: float = 200.0
    every: timedelta = timedelta(minutes=5)
    records_per_hour: int = 6_000
    metrics_per_hour: int = 1_500
    history_hours: float = 2.0
    fault_rate: float = 0.2
    seed: int = 0
    page_size: int = 1_000
    concurrency: int = 2
    live_feed: bool = False


@dataclass(frozen=True)
class SoakResult:
    """What the soak saw.

    Attributes:
        syncs: Syncs that completed while the feed ran.
        failed_syncs: Syncs that gave up on a fault; the next one went on.
        simulated: Simulated time the feed ran.
        seconds: Real time the whole soak took.
        requests: Requests the sandbox received.
        faults: Faults injected, by kind.
        comparisons: The destination against the sandbox, per table.
        feed_lag: How far behind the clock the feed stored rows, at worst.
        largest_lag: How far behind the horizon a watermark was after a
            sync, at worst.
    """

    syncs: int
    failed_syncs: int
    simulated: timedelta
    seconds: float
    requests: int
    faults: dict[str, int]
    comparisons: tuple[Comparison, ...]
    feed_lag: timedelta
    largest_lag: timedelta

    @property
    def exact(self) -> bool:
        """Whether every table holds exactly the sandbox's rows."""
        return all(comparison.exact for comparison in self.comparisons)

    @property
    def rows(self) -> int:
        """Rows loaded in all."""
        return sum(comparison.loaded for comparison in self.comparisons)


class FeedTooSlowError(RuntimeError):
    """The feed fell so far behind the clock that the soak proves nothing."""


class _TimedStore(Store):
    """A store that notes how late rows arrive after they were stored."""

    def __init__(self, records: pa.Table, metrics: pa.Table, clock: Clock) -> None:
        super().__init__(records, metrics)
        self.clock = clock
        self.worst_lag = timedelta(0)

    def append(self, table_name: str, rows: pa.Table) -> None:
        """Add rows, and note how far the clock has passed their storing."""
        if rows.num_rows:
            stored = pc.min(rows["created_at"]).as_py()
            lag = self.clock.now() - stored
            self.worst_lag = max(self.worst_lag, lag)
        super().append(table_name, rows)


@dataclass
class _Tally:
    """Counts of the syncs while the feed runs."""

    syncs: int = 0
    failed: int = 0
    largest_lag: timedelta = timedelta(0)
    last: SyncReport | None = field(default=None, repr=False)


def run_soak(
    options: SoakOptions,
    workdir: Path,
    *,
    say: Callable[[str], None] = print,
) -> SoakResult:
    """Run the soak in `workdir` and compare the destination at the end."""
    started = time.monotonic()
    records, metrics = _history(options)
    if not options.live_feed:
        records, metrics = _with_traffic(records, metrics, options)
    # The clock starts once the rows are made: at hundreds of times real
    # time, generating them would cost simulated hours.
    clock = Clock(start=START, speed=options.speed)
    store = _TimedStore(records, metrics, clock)
    plan = FaultPlan(
        options.fault_rate,
        ALL_KINDS,
        seed=options.seed,
        retry_after=0,
        slow_seconds=0.1,
    )
    database = workdir / "soak.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="soak",
        destination=dlt.destinations.duckdb(str(database)),
        pipelines_dir=str(workdir / "pipelines"),
        dataset_name="logfire",
    )

    with SandboxServer(store, clock=clock, faults=plan, batch_rows=250) as server:
        feed = _live_feed(store, clock, options) if options.live_feed else None
        sync_options = _sync_options(server, options)
        with short_retry_waits():
            if feed is not None:
                feed.start()
            began = clock.now()
            end = (began if feed else START) + timedelta(hours=options.hours)
            try:
                tally = _sync_until(end, pipeline, sync_options, clock, options, say)
            finally:
                if feed is not None:
                    feed.stop()
            simulated = clock.now() - (began if feed else START)

            clock.advance(_SETTLED_AFTER)
            final = _final_sync(pipeline, sync_options, say)
        counters = server.counters.snapshot()
        comparisons = _compare(store, clock, database, final)

    for comparison in comparisons:
        say(str(comparison))
    if store.worst_lag >= _SETTLE:
        raise FeedTooSlowError(
            f"The live feed stored rows {store.worst_lag} after their created_at, "
            f"past the {_SETTLE} settle time, so the sync may rightly have "
            "missed them. Run the soak at a lower --speed, or on a quieter "
            "machine."
        )
    return SoakResult(
        syncs=tally.syncs,
        failed_syncs=tally.failed,
        simulated=simulated,
        seconds=time.monotonic() - started,
        requests=counters["requests"]["total"],
        faults=dict(counters["faults"]),
        comparisons=comparisons,
        feed_lag=store.worst_lag,
        largest_lag=tally.largest_lag,
    )


def _history(options: SoakOptions) -> tuple[pa.Table, pa.Table]:
    """The records and metrics stored before the feed starts."""
    generated = Store.generated(
        seed=options.seed + 100,
        records=round(options.records_per_hour * options.history_hours),
        metrics=round(options.metrics_per_hour * options.history_hours),
        hours=options.history_hours,
        end=START,
    )
    return (
        pa.Table.from_batches(generated.snapshot("records")),
        pa.Table.from_batches(generated.snapshot("metrics")),
    )


def _with_traffic(
    records: pa.Table, metrics: pa.Table, options: SoakOptions
) -> tuple[pa.Table, pa.Table]:
    """The history and the soak's whole day of traffic, which the clock reveals."""
    end = START + timedelta(hours=options.hours)
    traffic = Store.generated(
        seed=options.seed,
        records=round(options.records_per_hour * options.hours),
        metrics=round(options.metrics_per_hour * options.hours),
        hours=options.hours,
        end=end,
    )
    return (
        pa.concat_tables([records, *_tables(traffic, "records")]),
        pa.concat_tables([metrics, *_tables(traffic, "metrics")]),
    )


def _tables(store: Store, table: str) -> list[pa.Table]:
    """A table of a store, as it is stored, in a list to concatenate."""
    return [pa.Table.from_batches(store.snapshot(table))]


def _live_feed(store: Store, clock: Clock, options: SoakOptions) -> LiveFeed:
    """The sandbox's live feed, storing the traffic as the clock runs."""
    return LiveFeed(
        store,
        clock,
        seed=options.seed,
        records_per_hour=options.records_per_hour,
        metrics_per_hour=options.metrics_per_hour,
    )


def _sync_options(server: SandboxServer, options: SoakOptions) -> dict[str, Any]:
    """The source options of every sync of the soak."""
    first = START - timedelta(hours=options.history_hours + 1)
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": first.isoformat(),
        "page_size": options.page_size,
        "concurrency": options.concurrency,
    }


def _sync_until(
    end: datetime,
    pipeline: dlt.Pipeline,
    sync_options: dict[str, Any],
    clock: Clock,
    options: SoakOptions,
    say: Callable[[str], None],
) -> _Tally:
    """Sync every `options.every` of simulated time until the clock reads `end`."""
    tally = _Tally()
    next_sync = clock.now()
    reported = clock.now()
    while clock.now() < end:
        _sleep_until(clock, next_sync, options.speed)
        next_sync = clock.now() + options.every
        try:
            report = run_sync(pipeline, **sync_options)
        except RetryableError as error:
            tally.failed += 1
            say(f"{clock.now():%H:%M} a sync gave up: {error}")
            continue
        tally.syncs += 1
        tally.largest_lag = max(tally.largest_lag, _lag(report, clock))
        if clock.now() - reported >= timedelta(hours=2):
            reported = clock.now()
            say(
                f"{clock.now():%H:%M} simulated: {tally.syncs} syncs, "
                f"{tally.failed} gave up, watermark lag {_lag(report, clock)}"
            )
    return tally


def _final_sync(
    pipeline: dlt.Pipeline, sync_options: dict[str, Any], say: Callable[[str], None]
) -> SyncReport:
    """The last sync, once everything has settled; faults stay on."""
    for _ in range(_FINAL_ATTEMPTS):
        try:
            report = run_sync(pipeline, **sync_options)
        except RetryableError as error:
            say(f"The final sync gave up, and runs again: {error}")
            continue
        if report.caught_up:
            return report
    raise RuntimeError(f"The final sync did not catch up in {_FINAL_ATTEMPTS} runs.")


def _compare(
    store: Store, clock: Clock, database: Path, final: SyncReport
) -> tuple[Comparison, ...]:
    """Each table against the rows stored before its final watermark."""
    watermarks = {table.table: table.watermark for table in final.tables}
    comparisons = []
    for table in TABLE_NAMES:
        horizon = watermarks[table]
        assert horizon is not None
        stored = store.visible(table, clock.now())
        expected = expected_rows(stored, created_before=horizon)
        comparisons.append(compare(table, read_table(database, table), expected))
    return tuple(comparisons)


def _lag(report: SyncReport, clock: Clock) -> timedelta:
    """How far the oldest watermark trails the clock, less the settle time."""
    marks = [table.watermark for table in report.tables if table.watermark]
    if not marks:
        return timedelta(0)
    return max(clock.now() - min(marks) - _SETTLE, timedelta(0))


def _sleep_until(clock: Clock, moment: datetime, speed: float) -> None:
    """Sleep in real time until the fast clock reads `moment`."""
    left = (moment - clock.now()).total_seconds()
    if left > 0:
        time.sleep(left / speed)
