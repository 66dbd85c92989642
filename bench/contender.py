"""One contender of the benchmark, run in a process of its own.

``python -m bench.contender SPEC_JSON`` runs what the spec names against a
running sandbox and writes its figures as JSON to the spec's ``result_path``.
The parent reads the process's peak memory from the operating system, so the
figures here are counts and times only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

Kind = Literal["sdk", "fetch", "connector"]
DestinationName = Literal["duckdb", "parquet", "none"]

PAGE_ROWS = 10_000
"""Rows per request, for every contender: the service's largest page."""

_LATENESS = timedelta(hours=24)


@dataclass(frozen=True)
class Spec:
    """What one contender process runs.

    Attributes:
        kind: Which contender.
        table: ``records`` or ``metrics``.
        destination: Where rows are loaded; ``none`` for the bare fetch.
        concurrency: Windows read at once (the connector and the fetch).
        url: The sandbox's base URL.
        token: Its read token.
        start: The first ``created_at`` to read, ISO 8601.
        workdir: A folder of the contender's own.
        result_path: Where the figures are written.
        max_rows: Stop after about this many rows (the SDK baseline).
        until_seconds: Sync only the rows created this long after `start`
            (the connector), to compare smaller syncs with the full one.
        incremental: Also time a second sync that finds nothing new, and an
            empty dlt run on the same pipeline (the connector).
        server_pid: The sandbox's process, whose CPU time is read while the
            contender is timed; None to leave it out.
    """

    kind: Kind
    table: str
    destination: DestinationName
    url: str
    token: str
    start: str
    workdir: str
    result_path: str
    concurrency: int = 1
    max_rows: int | None = None
    until_seconds: float | None = None
    incremental: bool = False
    server_pid: int | None = None


@dataclass
class Figures:
    """What a contender measured itself.

    Attributes:
        cpu_seconds: The CPU time of every thread of the contender's process
            while it was timed, DuckDB's own threads included.
        server_cpu_seconds: The sandbox's CPU time meanwhile, if it was read.
    """

    rows: int = 0
    requests: int = 0
    windows: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _timed(spec: Spec, figures: Figures) -> Iterator[None]:
    """Time the block: elapsed seconds, and the CPU of both processes."""
    server = _process_cpu(spec.server_pid)
    cpu = time.process_time()
    started = time.perf_counter()
    yield
    figures.seconds = time.perf_counter() - started
    figures.cpu_seconds = time.process_time() - cpu
    server_after = _process_cpu(spec.server_pid)
    if server is not None and server_after is not None:
        figures.server_cpu_seconds = server_after - server


def _process_cpu(pid: int | None) -> float | None:
    """The user and system CPU seconds of process `pid` so far (Linux only)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: count from after it.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    """Run the contender described by the JSON spec in ``argv[0]``."""
    spec = Spec(**json.loads(argv[0]))
    os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    runners = {"sdk": run_sdk, "fetch": run_fetch, "connector": run_connector}
    figures = runners[spec.kind](spec)
    Path(spec.result_path).write_text(json.dumps(asdict(figures)))
    return 0


def _pipeline(spec: Spec, name: str) -> Any:
    """A dlt pipeline loading into the spec's destination, in its workdir.

    A throwaway pipeline first loads one Arrow row, so that what dlt and
    pyarrow do once per process (imports, the destination's setup) is not timed.
    """
    _make_pipeline(spec, f"{name}_warmup", Path(spec.workdir) / "warmup").run(
        _warmup_rows(), table_name="warmup"
    )
    return _make_pipeline(spec, name, Path(spec.workdir))


def _warmup_rows() -> Any:
    """One row made from Python values, with a UTC timestamp and a list.

    pyarrow imports pandas the first time it converts a Python value, which
    takes a second or more here; every contender would pay it in its first page.
    """
    import pyarrow as pa

    return pa.table(
        {
            "at": pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC")),
            "tags": pa.array([["warm"]], pa.list_(pa.string())),
        }
    )


def _make_pipeline(spec: Spec, name: str, workdir: Path) -> Any:
    import dlt

    destination: Any
    if spec.destination == "duckdb":
        destination = dlt.destinations.duckdb(str(workdir / "bench.duckdb"))
    else:
        destination = dlt.destinations.filesystem(
            (workdir / "files").resolve().as_uri()
        )
    return dlt.pipeline(
        pipeline_name=name,
        destination=destination,
        dataset_name="logfire",
        pipelines_dir=str(workdir / "pipelines"),
    )


def run_sdk(spec: Spec) -> Figures:
    """The baseline: ``query_json_rows`` pages, as dicts, into a dlt resource."""
    import dlt
    from logfire.query_client import LogfireQueryClient

    figures = Figures()
    start = datetime.fromisoformat(spec.start)
    client = LogfireQueryClient(spec.token, base_url=spec.url)

    def pages() -> Iterator[list[dict[str, Any]]]:
        cursor = start
        while spec.max_rows is None or figures.rows < spec.max_rows:
            sql = (
                f"SELECT * FROM {spec.table} WHERE created_at > '{cursor.isoformat()}' "
                f"ORDER BY created_at LIMIT {PAGE_ROWS}"
            )
            result = client.query_json_rows(
                sql, min_timestamp=cursor - _LATENESS, limit=PAGE_ROWS
            )
            figures.requests += 1
            rows = result["rows"]
            figures.rows += len(rows)
            if rows:
                yield rows
                cursor = datetime.fromisoformat(rows[-1]["created_at"])
            if len(rows) < PAGE_ROWS:
                return

    resource = dlt.resource(pages(), name=spec.table, write_disposition="append")
    pipeline = _pipeline(spec, "bench_sdk")
    file_format = "parquet" if spec.destination == "parquet" else None
    with _timed(spec, figures):
        pipeline.run(resource, loader_file_format=file_format)
    return figures


def run_fetch(spec: Spec) -> Figures:
    """The ceiling: the connector's own pages as Arrow, loading nothing."""
    from connector.client import LogfireClient
    from connector.pager import WindowStats, read_window, read_windows
    from connector.settings import build_settings

    # The source's own planner and SQL, so the pages are exactly the ones a
    # sync reads; they are private because nothing but this needs them.
    from connector.source import _planner, _TableQuery
    from connector.tables import TABLES

    figures = Figures()
    _warmup_rows()
    settings = build_settings(
        read_token=spec.token,
        base_url=spec.url,
        tables=[spec.table],
        start=spec.start,
        concurrency=spec.concurrency,
    )
    spec_table = TABLES[spec.table]  # type: ignore[index]
    query = _TableQuery(spec_table, settings, horizon=None)
    stats = WindowStats()
    with _timed(spec, figures), LogfireClient(spec.token, base_url=spec.url) as client:

        def narrow(window: Any, rows: int, reached: datetime) -> Any:
            # Windows narrow as the source's do, so the pages are the same.
            narrower = planner.narrow(window, rows, reached)
            return None if narrower is None else query.window_query(narrower)

        def read(window: Any) -> Any:
            return read_window(
                client,
                query.window_query(window),
                page_size=settings.page_size,
                stats=stats,
                narrow=narrow,
            )

        horizon = client.server_now() - settings.settle
        assert settings.start is not None
        lo = settings.start
        state: dict[str, Any] = {}
        # One chunk after another up to the horizon, as run_sync reads them.
        while lo < horizon:
            span = settings.chunk_span(by_rows=True)
            hi = horizon if span is None else min(horizon, lo + span)
            planner = _planner(
                settings, lo, hi, state, settings.max_width, chunked=True
            )
            for _, batch in read_windows(planner, read, concurrency=spec.concurrency):
                if batch is None:
                    figures.windows += 1
                else:
                    figures.rows += batch.num_rows
            state = {"window_seconds": planner.width.total_seconds()}
            lo = hi
        figures.requests = client.requests_made
    return figures


def run_connector(spec: Spec) -> Figures:
    """The connector: :func:`connector.run_sync` into the destination."""
    from connector.sync import run_sync

    figures = Figures()
    pipeline = _pipeline(spec, "bench_connector")
    options: dict[str, Any] = {
        "read_token": spec.token,
        "base_url": spec.url,
        "tables": [spec.table],
        "start": spec.start,
        "concurrency": spec.concurrency,
    }
    with _timed(spec, figures):
        if spec.until_seconds is None:
            reports = [run_sync(pipeline, **options)]
        else:
            reports = _sync_until(pipeline, options, spec.until_seconds)
    figures.rows = sum(report.rows for report in reports)
    figures.requests = sum(report.requests for report in reports)
    figures.windows = sum(
        table.windows for report in reports for table in report.tables
    )
    figures.extra["chunks"] = sum(report.chunks for report in reports)
    if spec.incremental:
        figures.extra.update(_time_incremental(pipeline, options))
    return figures


def _sync_until(pipeline: Any, options: dict[str, Any], seconds: float) -> list[Any]:
    """Sync the rows created up to `seconds` after the start, chunk by chunk.

    Each chunk's `chunk` option is what is left of the span, so that no chunk
    reads past its end; a chunk ends early at `chunk_rows` rows as in a full
    sync, so the peak memory is that of a sync of the same rows.
    """
    from connector.sync import run_sync

    end = datetime.fromisoformat(options["start"]) + timedelta(seconds=seconds)
    # A full sync into a fresh table appends for all its chunks; these calls
    # are separate syncs, so they ask for the same.
    options = {**options, "write_disposition": "append"}
    reports = []
    left = seconds
    while left > 0:
        report = run_sync(pipeline, max_chunks=1, **options, chunk=left)
        reports.append(report)
        (table,) = report.tables
        if table.windows == 0 or table.watermark is None:
            break
        left = (end - table.watermark).total_seconds()
    return reports


_INCREMENTAL_ROUNDS = 3
"""Times each of the two short runs this often, taking the median: one run of
a tenth of a second is at the mercy of whatever else the machine does."""


def _time_incremental(pipeline: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Time empty dlt runs and syncs that find nothing new, in turns."""
    from connector.sync import run_sync

    empty, incremental, rows, requests = [], [], 0, 0
    for _ in range(_INCREMENTAL_ROUNDS):
        started = time.perf_counter()
        pipeline.run([], table_name="bench_empty")
        empty.append(time.perf_counter() - started)

        started = time.perf_counter()
        report = run_sync(pipeline, **options)
        incremental.append(time.perf_counter() - started)
        rows += report.rows
        requests = max(requests, report.requests)
    return {
        "empty_dlt_run_seconds": statistics.median(empty),
        "incremental_seconds": statistics.median(incremental),
        "incremental_rows": rows,
        "incremental_requests": requests,
        "rounds": _INCREMENTAL_ROUNDS,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
