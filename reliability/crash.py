"""Killing the sync with SIGKILL at random points of a 7-day backfill.

A week of telemetry is saved as Parquet and served by a sandbox in its own
process. The backfill runs as the ``logfire-sync backfill`` command in a child
process, which is killed at a random moment (seeded), started again, killed
again, and so on; then it is let finish. The destination must then hold every
row of the week exactly once.

Each kill is measured. Before and after each run, the backfill's progress is
read from the pipeline's local state, and the rows the sandbox served during
the run are read from its counters. Rows served beyond those of the event time
the progress moved over were read in vain and will be read again: that work
must not exceed the rows of the one chunk that was in flight when the kill
came (plus the row per page that keyset paging reads twice).

A run killed after its extract leaves a load package, with the state that
moved past its chunk; the next run loads that package first. So a kill at any
point costs at most the chunk being read.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common.versioned_state import json_decode_state

from connector.tables import TABLES, TableName
from reliability.compare import Comparison, compare, expected_rows, read_table
from reliability.processes import SandboxProcess, SyncProcess
from sandbox.generator import generate_metrics, generate_records

__all__ = ["CrashOptions", "CrashResult", "Kill", "run_crash"]

TOKEN: Final = "crash-test-token"
PIPELINE: Final = "crash"
TABLE_NAMES: Final[tuple[TableName, ...]] = ("records", "metrics")
_SETTLED: Final = timedelta(days=2)
_WORK_TIMEOUT: Final = 120.0
_FINISH_TIMEOUT: Final = 900.0
_FINAL_RUNS: Final = 3
_SETTLE_SECONDS: Final = 0.2


@dataclass(frozen=True)
class CrashOptions:
    """How hard to crash the backfill.

    Attributes:
        kills: How many times the sync is killed before it may finish.
        seed: Makes the data and the kill times repeatable.
        records: Records rows in the week.
        metrics: Metric points in the week.
        days: The backfill's length.
        chunk: Event time one pipeline run reads; small, so there are many.
        page_size: Rows per request.
        concurrency: Windows in flight.
        latest_kill: The most seconds after the first loaded window a kill
            waits; the kill lands anywhere in extract, normalize or load.
        early_kills: The share of kills at a random time since the start
            instead, which may land while a package of the last run loads.
    """

    kills: int = 20
    seed: int = 0
    records: int = 200_000
    metrics: int = 40_000
    days: int = 7
    chunk: timedelta = timedelta(hours=3)
    page_size: int = 1_000
    concurrency: int = 2
    latest_kill: float = 2.5
    early_kills: float = 0.2


@dataclass(frozen=True)
class Kill:
    """One run of the backfill, killed.

    Attributes:
        number: Which kill, from 1.
        after: Seconds from the child's start to the kill.
        rows_served: Rows the sandbox sent during the run.
        rows_committed: Rows of the event time the progress moved over.
        redone: Rows served that the next runs read again.
        in_flight: Rows of the chunk after the progress reached.
        allowance: Rows keyset paging reads twice, one per page at most.
        progress: Each table's backfill progress after the run.
    """

    number: int
    after: float
    rows_served: int
    rows_committed: int
    redone: int
    in_flight: int
    allowance: int
    progress: dict[TableName, datetime] = field(repr=False)

    @property
    def within_one_chunk(self) -> bool:
        """Whether the work redone is at most the chunk in flight."""
        return self.redone <= self.in_flight + self.allowance

    def __str__(self) -> str:
        return (
            f"kill {self.number:>2} after {self.after:5.1f} s: "
            f"{self.rows_committed:>6,} rows committed, {self.redone:>6,} read "
            f"again (chunk in flight: {self.in_flight:,} rows)"
        )


@dataclass(frozen=True)
class CrashResult:
    """What the crash test saw.

    Attributes:
        kills: Every killed run.
        comparisons: The destination against the week, per table.
        final_runs: Runs it took to finish after the last kill.
        final_redone: Rows those runs read beyond what was left to read,
            keyset paging's one row per page aside.
        rows_served: Rows the sandbox sent over all runs.
        rows_expected: Rows in the week.
        largest_chunk: The most rows one chunk of both tables holds.
        seconds: How long it all took.
    """

    kills: tuple[Kill, ...]
    comparisons: tuple[Comparison, ...]
    final_runs: int
    final_redone: int
    rows_served: int
    rows_expected: int
    largest_chunk: int
    seconds: float

    @property
    def passed(self) -> bool:
        """Exact destination, and no kill cost more than its chunk."""
        exact = all(comparison.exact for comparison in self.comparisons)
        within = all(kill.within_one_chunk for kill in self.kills)
        return exact and within and self.final_redone <= 0

    @property
    def most_redone(self) -> int:
        """The most rows one kill made the sync read again."""
        return max((kill.redone for kill in self.kills), default=0)


class _Week:
    """The saved telemetry, and how many rows lie between two event times."""

    def __init__(
        self, tables: dict[TableName, pa.Table], start: datetime, end: datetime
    ) -> None:
        self.tables = tables
        self.start = start
        self.end = end
        self._times = {
            name: np.sort(_micros(table[TABLES[name].bound]))
            for name, table in tables.items()
        }

    def rows_between(self, table: TableName, low: datetime, high: datetime) -> int:
        """Rows of `table` whose event time lies in ``[low, high)``."""
        low, high = max(low, self.start), min(high, self.end)
        if low >= high:
            return 0
        times = self._times[table]
        bounds = np.array([_to_micros(low), _to_micros(high)], dtype=np.int64)
        first, last = np.searchsorted(times, bounds, side="left")
        return int(last - first)

    def expected(self, table: TableName) -> pa.Table:
        """The rows of `table` the backfill must load."""
        return expected_rows(
            self.tables[table],
            column=TABLES[table].bound,
            within=(self.start, self.end),
        )


def run_crash(
    options: CrashOptions,
    workdir: Path,
    *,
    log: IO[str] | None = None,
    say: Callable[[str], None] = print,
) -> CrashResult:
    """Kill and rerun a 7-day backfill, then check the destination.

    Args:
        options: How many kills, how much data, how small the chunks.
        workdir: An empty folder for the data, the state and the destination.
        log: Where the sync's own log lines are copied, if anywhere.
        say: Called with one line per kill and at the end.
    """
    started = time.monotonic()
    week = _write_week(workdir / "data", options)
    state_dir = workdir / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    rng = random.Random(options.seed)

    with SandboxProcess(workdir / "data", token=TOKEN) as sandbox:
        command = _backfill_command(sandbox.url, state_dir, week, options)
        kills, served = _kill_repeatedly(command, sandbox, week, options, rng, say, log)
        final_runs, final_served = _finish(command, sandbox, log)
        served += final_served
    left_from = kills[-1].progress if kills else dict.fromkeys(TABLE_NAMES, week.start)
    left = sum(
        week.rows_between(table, left_from[table], week.end) for table in TABLE_NAMES
    )
    paging = math.ceil(final_served / options.page_size)

    comparisons = tuple(
        compare(
            table,
            read_table(state_dir / f"{PIPELINE}.duckdb", table),
            week.expected(table),
        )
        for table in TABLE_NAMES
    )
    result = CrashResult(
        kills=tuple(kills),
        comparisons=comparisons,
        final_runs=final_runs,
        final_redone=final_served - left - paging,
        rows_served=served,
        rows_expected=sum(week.expected(name).num_rows for name in TABLE_NAMES),
        largest_chunk=_largest_chunk(week, options.chunk),
        seconds=time.monotonic() - started,
    )
    for comparison in comparisons:
        say(str(comparison))
    return result


def _kill_repeatedly(
    command: tuple[list[str], dict[str, str]],
    sandbox: SandboxProcess,
    week: _Week,
    options: CrashOptions,
    rng: random.Random,
    say: Callable[[str], None],
    log: IO[str] | None,
) -> tuple[list[Kill], int]:
    """Start and kill the sync `options.kills` times; returns the kills."""
    arguments, environment = command
    state_dir = Path(arguments[arguments.index("--state-dir") + 1])
    progress = _progress(state_dir, week)
    sandbox.counters(reset=True)
    kills: list[Kill] = []
    served = 0

    while len(kills) < options.kills:
        child = SyncProcess(arguments, environment, log=log)
        delay = _kill_delay(child, options, rng)
        code = child.poll()
        if code is not None:
            raise RuntimeError(
                f"The backfill exited by itself (code {code}) after "
                f"{len(kills)} kills; if it finished, give it more data or "
                "smaller chunks so that every kill lands. Its last lines:\n"
                f"{''.join(child.lines[-5:])}"
            )
        child.kill()
        # Let the sandbox notice the closed connection before it is asked.
        time.sleep(_SETTLE_SECONDS)

        after = _progress(state_dir, week)
        rows = _rows_served(sandbox)
        served += rows
        kill = _measure(len(kills) + 1, delay, rows, progress, after, week, options)
        kills.append(kill)
        say(str(kill))
        progress = after
    return kills, served


def _kill_delay(child: SyncProcess, options: CrashOptions, rng: random.Random) -> float:
    """Wait for a random moment to kill `child`; returns its age then."""
    early = rng.random() < options.early_kills
    extra = rng.uniform(0.0, options.latest_kill)
    if not early and not child.wait_until_working(_WORK_TIMEOUT):
        raise RuntimeError(
            "The backfill loaded no window within "
            f"{_WORK_TIMEOUT:g} s. Its last lines:\n{''.join(child.lines[-10:])}"
        )
    deadline = time.monotonic() + extra
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    return time.monotonic() - child.started


def _measure(
    number: int,
    after: float,
    rows_served: int,
    before: dict[TableName, datetime],
    progress: dict[TableName, datetime],
    week: _Week,
    options: CrashOptions,
) -> Kill:
    """What a killed run achieved and what it wasted."""
    committed = sum(
        week.rows_between(table, before[table], progress[table])
        for table in TABLE_NAMES
    )
    in_flight = sum(
        week.rows_between(table, progress[table], progress[table] + options.chunk)
        for table in TABLE_NAMES
    )
    return Kill(
        number=number,
        after=after,
        rows_served=rows_served,
        rows_committed=committed,
        redone=rows_served - committed,
        in_flight=in_flight,
        allowance=math.ceil(rows_served / options.page_size),
        progress=progress,
    )


def _finish(
    command: tuple[list[str], dict[str, str]],
    sandbox: SandboxProcess,
    log: IO[str] | None,
) -> tuple[int, int]:
    """Let the backfill run to its end; returns the runs and rows it took."""
    arguments, environment = command
    for run in range(1, _FINAL_RUNS + 1):
        child = SyncProcess(arguments, environment, log=log)
        code = child.wait(_FINISH_TIMEOUT)
        served = _rows_served(sandbox)
        if code == 0 and any("caught up" in line for line in child.lines):
            return run, served
    raise RuntimeError(
        f"The backfill did not finish in {_FINAL_RUNS} runs after the kills "
        f"(exit code {code}). Its last lines:\n{''.join(child.lines[-10:])}"
    )


def _rows_served(sandbox: SandboxProcess) -> int:
    """Rows the sandbox sent since it was last asked."""
    rows = int(sandbox.counters()["rows_served"])
    sandbox.counters(reset=True)
    return rows


def _backfill_command(
    url: str, state_dir: Path, week: _Week, options: CrashOptions
) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment of the child's backfill."""
    arguments = [
        "backfill",
        "--start",
        week.start.isoformat(),
        "--end",
        week.end.isoformat(),
        "--base-url",
        url,
        "--state-dir",
        str(state_dir),
        "--pipeline",
        PIPELINE,
        "--concurrency",
        str(options.concurrency),
    ]
    environment = {
        "LOGFIRE_READ_TOKEN": TOKEN,
        "SOURCES__LOGFIRE__CHUNK": str(options.chunk.total_seconds()),
        "SOURCES__LOGFIRE__PAGE_SIZE": str(options.page_size),
    }
    return arguments, environment


def _progress(state_dir: Path, week: _Week) -> dict[TableName, datetime]:
    """Each table's backfill progress, as the next run will go on from it."""
    progress = dict.fromkeys(TABLE_NAMES, week.start)
    text = _state_text(state_dir / "pipelines" / PIPELINE)
    if text is None:
        return progress

    state = json_decode_state(text)
    resources = state.get("sources", {}).get("logfire", {}).get("resources", {})
    key = f"{_iso(week.start)}/{_iso(week.end)}"
    for table in TABLE_NAMES:
        backfill = resources.get(table, {}).get("backfills", {}).get(key, {})
        done = backfill.get("done_until")
        if isinstance(done, str):
            progress[table] = datetime.fromisoformat(done)
    return progress


def _state_text(pipeline_dir: Path) -> str | None:
    """The state the next run goes on from, as JSON text; None if it has none.

    That is the local state, unless a kill cut a load in the middle of a job
    dlt had not noted: the next run aborts that package, which puts back the
    state saved as the package started (see ``connector.sync``).
    """
    for package in sorted((pipeline_dir / "load" / "normalized").glob("*")):
        started = {job.name for job in (package / "started_jobs").glob("*")}
        noted = {job.name for job in (package / ".pending_transitions").glob("*")}
        restore = package / ".restore"
        if started - noted and restore.is_dir():
            saved = restore / "state.json"
            return saved.read_text() if saved.is_file() else None
    local = pipeline_dir / "state.json"
    return local.read_text() if local.is_file() else None


def _write_week(folder: Path, options: CrashOptions) -> _Week:
    """Generate the week's telemetry, stored long ago, as Parquet in `folder`."""
    end = (datetime.now(UTC) - _SETTLED).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=options.days)
    first = start - timedelta(hours=1)
    tables: dict[TableName, pa.Table] = {
        "records": generate_records(
            options.records, seed=options.seed, start=first, end=end
        ),
        "metrics": generate_metrics(
            options.metrics, seed=options.seed + 1, start=first, end=end
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        newest = table["created_at"].to_pylist()
        if newest and max(newest) > datetime.now(UTC) - timedelta(hours=1):
            raise RuntimeError(f"Generated {name} rows were stored too recently.")
        pq.write_table(table, folder / f"{name}.parquet")
    return _Week(tables, start, end)


def _largest_chunk(week: _Week, chunk: timedelta) -> int:
    """The most rows of both tables one chunk of the backfill holds."""
    largest = 0
    low = week.start
    while low < week.end:
        rows = sum(week.rows_between(table, low, low + chunk) for table in TABLE_NAMES)
        largest = max(largest, rows)
        low += chunk
    return largest


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as integer microseconds since the epoch."""
    cast = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    values: np.ndarray = cast.to_numpy()
    return values


def _to_micros(moment: datetime) -> int:
    """An instant as integer microseconds since the epoch."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _iso(moment: datetime) -> str:
    """An instant the way the source keys its backfills."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
