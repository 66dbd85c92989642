"""The demo: the bundled sandbox, synced into DuckDB under ``state/``.

The sandbox runs as its own process (``python -m sandbox serve``), exactly as a
user would start it, so the connector talks to it over HTTP like to Logfire.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Final

from connector.errors import ConfigurationError, LogfireSyncError
from connector.pipeline import PipelineOptions, make_pipeline
from connector.sync import SyncReport, run_sync

__all__ = ["run_demo"]

DEMO_TOKEN: Final = "pylf_v1_us_demo0000000000000000000000000000"
_PIPELINE: Final = "logfire_demo"
_HOURS: Final = 24
_URL_LINE: Final = re.compile(r"serving on (http://\S+)")
_SAMPLE_QUERY: Final = """
SELECT service_name,
       COUNT(*) AS spans,
       SUM(CASE WHEN is_exception THEN 1 ELSE 0 END) AS exceptions,
       ROUND(QUANTILE_CONT(duration, 0.95) * 1000, 1) AS p95_ms
FROM records
WHERE kind = 'span'
GROUP BY service_name
ORDER BY spans DESC
"""


def run_demo(*, records: int, metrics: int, seed: int, state_dir: Path) -> int:
    """Serve generated telemetry, sync it into DuckDB and show what arrived.

    Raises:
        ConfigurationError: If a row count is negative, or both are zero.
    """
    if records < 0 or metrics < 0 or records + metrics == 0:
        raise ConfigurationError(
            f"The demo needs rows to serve, not {records} records and {metrics} "
            "metrics: give --records and --metrics counts of 0 or more, not both 0."
        )
    started = datetime.now(UTC)
    _start_over(state_dir)
    print(f"Starting the sandbox with {records:,} records and {metrics:,} metrics...")
    with _sandbox(records=records, metrics=metrics, seed=seed) as url:
        # Its own file, whatever DuckDB the user's config names.
        options = PipelineOptions(
            name=_PIPELINE, state_dir=state_dir, database=_database(state_dir)
        )
        pipeline = make_pipeline(options)
        report = run_sync(
            pipeline,
            read_token=DEMO_TOKEN,
            base_url=url,
            start=(started - timedelta(hours=_HOURS + 1)).isoformat(),
        )
        _print_summary(report, state_dir)
        if records:
            _print_sample(pipeline.sql_client())
    return 0


def _start_over(state_dir: Path) -> None:
    """Delete what an earlier demo left: its pipeline's state and its database.

    Each demo serves newly generated rows, which an earlier demo's watermark
    would skip but for the last minutes.
    """
    folder = state_dir / "pipelines" / _PIPELINE
    database = _database(state_dir)
    if not folder.exists() and not database.exists():
        return
    print(f"Starting over: replacing the earlier demo's {database}.")
    shutil.rmtree(folder, ignore_errors=True)
    for leftover in (database, database.with_name(database.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _database(state_dir: Path) -> Path:
    return state_dir / f"{_PIPELINE}.duckdb"


class _sandbox:  # noqa: N801 - used as a context manager, like a function
    """A sandbox process on a free loopback port, stopped on exit."""

    def __init__(self, *, records: int, metrics: int, seed: int) -> None:
        self._command = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--token",
            DEMO_TOKEN,
            "--records",
            str(records),
            "--metrics",
            str(metrics),
            "--seed",
            str(seed),
            "--hours",
            str(_HOURS),
        ]
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self._process.stdout is not None
        return _read_url(self._process.stdout, self._process)

    def __exit__(self, *_: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def _read_url(stdout: IO[str], process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line and process.poll() is not None:
            break
        match = _URL_LINE.search(line)
        if match:
            return match.group(1)
    raise LogfireSyncError(
        "The sandbox did not start; run `python -m sandbox serve` to see why."
    )


def _print_summary(report: SyncReport, state_dir: Path) -> None:
    print(
        f"Synced {report.rows:,} rows in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s) with {report.requests} requests."
    )
    for table in report.tables:
        print(f"  {table.table:<8} {table.rows:>10,} rows")
    print(f"The data is in {_database(state_dir)} (dataset logfire).")


def _print_sample(client: object) -> None:
    from dlt.destinations.sql_client import SqlClientBase

    assert isinstance(client, SqlClientBase)
    with client:
        rows = client.execute_sql(_SAMPLE_QUERY)
    print("\nSpans per service, from DuckDB:")
    print(f"  {'service':<14} {'spans':>8} {'exceptions':>11} {'p95 ms':>9}")
    for service, spans, exceptions, p95 in rows or []:
        print(f"  {service:<14} {spans:>8,} {exceptions:>11,} {p95:>9}")
