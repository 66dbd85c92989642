"""The `logfire-sync` command: incremental syncs, backfills, status and a demo.

Exit codes, for orchestrators:

====  ==========================================================
0     done (``run``: every table caught up or out of chunks)
1     an unexpected failure; the message says what
2     bad usage or configuration: fix the command or the config
3     the read token was refused: fix the token or its region
4     the service refused a query: fix the query options
5     the service kept failing or rate limiting: run again later
6     the destination failed: check it is reachable and has space
====  ==========================================================

Whatever the exit code, rows already committed stay loaded and the watermarks
only ever cover committed rows, so running again is always safe.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    LogfireSyncError,
    QueryError,
    RetryableError,
)
from connector.pipeline import DEFAULT_STATE_DIR, PipelineOptions, make_pipeline
from connector.source import TableSynced, WindowLoaded
from connector.sync import SyncReport, read_status, run_backfill, run_sync

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_AUTH: Final = 3
EXIT_QUERY: Final = 4
EXIT_RETRY_LATER: Final = 5
EXIT_DESTINATION: Final = 6

TOKEN_VARIABLE: Final = "LOGFIRE_READ_TOKEN"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        code: int = args.command(args)
    except KeyboardInterrupt:
        print("Interrupted; committed chunks stay loaded.", file=sys.stderr)
        return 130
    except Exception as error:
        return _report_failure(error)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logfire-sync",
        description="Sync Pydantic Logfire records and metrics into a warehouse.",
        epilog=(
            f"The read token comes from {TOKEN_VARIABLE}, or from dlt's secrets "
            "([sources.logfire] read_token, or SOURCES__LOGFIRE__READ_TOKEN)."
        ),
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what to log on standard error (default INFO)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="sync new rows incrementally")
    _add_common(run)
    run.add_argument("--start", help="where the first sync starts (ISO 8601)")
    run.add_argument(
        "--max-chunks", type=int, help="stop after this many committed chunks"
    )
    run.set_defaults(command=_run)

    backfill = commands.add_parser(
        "backfill", help="re-read an event-time range [start, end)"
    )
    _add_common(backfill)
    backfill.add_argument("--start", required=True, help="first event time")
    backfill.add_argument("--end", required=True, help="end of the range, excluded")
    backfill.add_argument("--max-chunks", type=int)
    backfill.set_defaults(command=_backfill)

    status = commands.add_parser("status", help="watermarks and totals per table")
    _add_pipeline(status)
    status.add_argument(
        "--from-destination",
        action="store_true",
        help="restore the state from the destination first",
    )
    status.set_defaults(command=_status)

    demo = commands.add_parser(
        "demo", help="sync the bundled sandbox into DuckDB under state/"
    )
    demo.add_argument("--records", type=int, default=200_000)
    demo.add_argument("--metrics", type=int, default=50_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    demo.set_defaults(command=_demo)
    return parser


def _add_pipeline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--destination", default="duckdb", help="a dlt destination (default duckdb)"
    )
    parser.add_argument("--dataset", default="logfire", help="default logfire")
    parser.add_argument("--pipeline", default="logfire", help="dlt pipeline name")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="dlt's local working folder (default state/)",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    _add_pipeline(parser)
    parser.add_argument("--base-url", help="the service (default: the token's region)")
    parser.add_argument(
        "--tables", help="comma-separated: records, metrics (default both)"
    )
    parser.add_argument("--concurrency", type=int, help="windows in flight (1-16)")


def _pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        name=args.pipeline,
        destination=args.destination,
        dataset=args.dataset,
        state_dir=args.state_dir,
    )


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options given on the command line; the rest come from dlt's config."""
    options: dict[str, Any] = {}
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        options["read_token"] = token
    if args.base_url:
        options["base_url"] = args.base_url
    if args.tables:
        options["tables"] = [name.strip() for name in args.tables.split(",")]
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    return options


def _run(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    options = _source_options(args)
    if args.start:
        options["start"] = args.start
    report = run_sync(
        pipeline, max_chunks=args.max_chunks, progress=_Progress(), **options
    )
    _print_report("sync", report)
    return EXIT_OK


def _backfill(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    report = run_backfill(
        pipeline,
        args.start,
        args.end,
        max_chunks=args.max_chunks,
        progress=_Progress(),
        **_source_options(args),
    )
    _print_report("backfill", report)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    if args.from_destination:
        pipeline.sync_destination()
    statuses = read_status(pipeline)
    if not statuses:
        print(
            f"The pipeline {args.pipeline!r} has synced nothing yet (state in "
            f"{args.state_dir}). Run `logfire-sync run` first, or pass "
            "--from-destination to restore its state from the destination."
        )
        return EXIT_OK
    print(f"{'table':<10} {'watermark':<27} {'behind':>10} {'rows':>12}  last run")
    for status in statuses:
        print(
            f"{status.table:<10} {_instant(status.watermark):<27} "
            f"{_duration(status.lag):>10} {status.rows_loaded:>12,}  "
            f"{_instant(status.last_run_at)}"
            + ("" if status.caught_up else "  (not caught up)")
        )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from connector.demo import run_demo

    return run_demo(
        records=args.records,
        metrics=args.metrics,
        seed=args.seed,
        state_dir=args.state_dir,
    )


class _Progress:
    """Logs the running totals every few seconds, and each finished table."""

    def __init__(self, every: float = 5.0) -> None:
        self._every = every
        self._started = time.monotonic()
        self._last = self._started
        self._windows = 0
        self._rows = 0

    def __call__(self, event: WindowLoaded | TableSynced) -> None:
        if isinstance(event, WindowLoaded):
            self._window(event)
            return
        logger.info(
            "%s: %s rows in %s windows, %s requests, watermark %s%s",
            event.table,
            f"{event.rows:,}",
            event.windows,
            event.requests,
            _instant(event.watermark),
            "" if event.caught_up else " (more to read)",
        )

    def _window(self, event: WindowLoaded) -> None:
        self._windows += 1
        self._rows += event.rows
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        rate = self._rows / (now - self._started)
        logger.info(
            "Progress: %s windows, %s rows, %s rows/s.",
            self._windows,
            f"{self._rows:,}",
            f"{rate:,.0f}",
        )


def _print_report(label: str, report: SyncReport) -> None:
    state = "caught up" if report.caught_up else "not caught up yet"
    print(
        f"The {label} loaded {report.rows:,} rows in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s) with {report.requests} requests "
        f"over {report.chunks} chunks; {state}."
    )
    for table in report.tables:
        print(
            f"  {table.table:<10} {table.rows:>12,} rows  {table.requests:>6} "
            f"requests  watermark {_instant(table.watermark)}"
        )


def _report_failure(error: Exception) -> int:
    """Print one clear line about a failure and choose the exit code."""
    code, advice = _classify(error)
    message = _scrub(str(error) or type(error).__name__)
    print(f"logfire-sync: {message}", file=sys.stderr)
    if advice:
        print(f"logfire-sync: {advice}", file=sys.stderr)
    logger.debug("Failure detail", exc_info=error)
    return code


def _classify(error: Exception) -> tuple[int, str]:
    if isinstance(error, ConfigurationError):
        return EXIT_CONFIG, ""
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH, ""
    if isinstance(error, QueryError):
        return EXIT_QUERY, ""
    if isinstance(error, RetryableError):
        return EXIT_RETRY_LATER, "Nothing past the last committed chunk moved."
    if isinstance(error, LogfireSyncError):
        return EXIT_FAILED, ""
    if _is_destination_failure(error):
        return EXIT_DESTINATION, (
            "The destination failed; loaded rows and watermarks are as the last "
            "committed chunk left them. Check that it is reachable and has space."
        )
    return EXIT_FAILED, ""


def _is_destination_failure(error: Exception) -> bool:
    from dlt.pipeline.exceptions import PipelineStepFailed

    return isinstance(error, PipelineStepFailed) and error.step in {"load", "sync"}


def _scrub(text: str) -> str:
    """The text without the read token, should any layer have let it through."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    return text.replace(token, "****") if len(token) >= 8 else text


def _instant(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds}s"
    if abs(seconds) < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        # dlt and httpx are chatty at INFO; their warnings still show.
        for name in ("dlt", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
