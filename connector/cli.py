"""The `logfire-sync` command: syncs, backfills, status, verify and a demo.

Exit codes, for orchestrators:

====  ==========================================================
0     done (``run``: every table caught up or out of chunks)
1     an unexpected failure; the message says what
2     bad usage or configuration: fix the command or the config
3     the read token was refused: fix the token or its region
4     the service refused a query: fix the query options
5     the service kept failing or rate limiting, or another run of
      the same pipeline is going on: run again later
6     the destination failed: fix what its message names (also a full
      disk under the state folder)
7     ``verify`` found buckets whose row counts differ: see its report,
      and run it with ``--repair``
130   interrupted (Ctrl-C)
143   terminated (SIGTERM, as orchestrators send on a timeout)
====  ==========================================================

Whatever the exit code, rows already committed stay loaded and the watermarks
only ever cover committed rows, so running again is always safe.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Final

import dlt
from dlt.common.exceptions import MissingDependencyException

from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    DestinationError,
    LogfireSyncError,
    QueryError,
    RetryableError,
    causes,
)
from connector.pipeline import DEFAULT_STATE_DIR, PipelineOptions, make_pipeline
from connector.restore import tables_synced_in_destination
from connector.source import TableSynced, WindowLoaded
from connector.sync import SyncReport, read_status, run_backfill, run_sync
from connector.verify import Audit, TableAudit, run_repair, run_verify

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_AUTH: Final = 3
EXIT_QUERY: Final = 4
EXIT_RETRY_LATER: Final = 5
EXIT_DESTINATION: Final = 6
EXIT_MISMATCH: Final = 7
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

TOKEN_VARIABLE: Final = "LOGFIRE_READ_TOKEN"

_FULL_DISK: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_UNWRITABLE: Final = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_VERIFY_HELP: Final = (
    "Count each table's rows per bucket of event time (start_timestamp for "
    "records, recorded_timestamp for metrics) in [start, end), in Logfire with "
    "COUNT(*) queries and in the destination, and list every bucket whose "
    "counts differ. Only rows the sync could have loaded are counted: rows "
    "stored (created_at) before the table's watermark that pass the filters; "
    "give the filters the sync uses. Rows stored later wait for the next sync "
    "and are not counted. Exits 7 if any bucket differs."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    # With Airflow installed, dlt also asks Airflow's variables for every
    # config key, which cost 9 s of a 20 s demo. The command reads dlt's files
    # and the environment; set the variable to true to ask Airflow as well.
    os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        with _terminated_as_interrupt():
            code: int = args.command(args)
    except KeyboardInterrupt as stop:
        return _interrupted(stop)
    except Exception as error:
        # dlt wraps an interrupt during one of its steps in its own error.
        for cause in causes(error):
            if isinstance(cause, KeyboardInterrupt):
                return _interrupted(cause)
        return _report_failure(error, getattr(args, "state_dir", None))
    return code


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """Stop on SIGTERM as on Ctrl-C, rather than dying where the signal lands.

    Orchestrators send SIGTERM when a task times out. Its default action ends
    the process at once, without a word; raised as an interrupt, it lets the
    run release its lock and say what stays loaded. During dlt's normalize
    and load steps, dlt takes the signal itself and stops them at a safe point.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(stop: BaseException) -> int:
    """Say that the run was stopped, and choose the exit code."""
    code = getattr(stop, "signal_code", None)
    if isinstance(stop, _Terminated) or code == signal.SIGTERM:
        print("Terminated (SIGTERM); committed chunks stay loaded.", file=sys.stderr)
        return EXIT_TERMINATED
    print("Interrupted; committed chunks stay loaded.", file=sys.stderr)
    return EXIT_INTERRUPTED


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
    run.add_argument(
        "--accept-filter-change",
        action="store_true",
        help="go on from the watermarks with filters other than their rows' own",
    )
    run.set_defaults(command=_run)

    backfill = commands.add_parser(
        "backfill", help="re-read an event-time range [start, end)"
    )
    _add_common(backfill)
    backfill.add_argument("--start", required=True, help="first event time")
    backfill.add_argument("--end", required=True, help="end of the range, excluded")
    backfill.add_argument("--max-chunks", type=int)
    backfill.add_argument(
        "--accept-filter-change",
        action="store_true",
        help="backfill with filters other than the loaded rows' own (wider ones)",
    )
    backfill.set_defaults(command=_backfill)

    verify = commands.add_parser(
        "verify",
        help="compare rows per bucket of event time with Logfire",
        description=_VERIFY_HELP,
    )
    _add_common(verify)
    verify.add_argument("--start", required=True, help="first event time")
    verify.add_argument("--end", required=True, help="end of the range, excluded")
    verify.add_argument(
        "--bucket", default="1h", help="width of a bucket, whole seconds (default 1h)"
    )
    verify.add_argument(
        "--repair",
        action="store_true",
        help="backfill only the differing buckets, then verify again",
    )
    verify.add_argument(
        "--accept-filter-change",
        action="store_true",
        help="repair with filters other than the loaded rows' own (wider ones)",
    )
    verify.set_defaults(command=_verify)

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
    parser.add_argument(
        "--pipeline", default="logfire_sync", help="dlt pipeline name (logfire_sync)"
    )
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
    parser.add_argument("--page-size", help="rows per request (1-10000)")
    parser.add_argument(
        "--window", help="the first window's width, such as 30m (default 1h)"
    )
    parser.add_argument(
        "--columns",
        action="append",
        metavar="TABLE:COLUMN,...",
        help="load only these columns of a table (repeatable)",
    )
    parser.add_argument(
        "--service", action="append", help="keep only this service (repeatable)"
    )
    parser.add_argument(
        "--environment",
        action="append",
        help="keep only this deployment environment; '' for none (repeatable)",
    )
    parser.add_argument(
        "--span-name",
        action="append",
        help="records: keep only this span name (repeatable)",
    )
    parser.add_argument(
        "--min-level", help="records: lowest level kept, such as warn or 13"
    )
    parser.add_argument(
        "--where",
        help="an SQL condition ANDed to every query, or a JSON object of one per table",
    )


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
    if getattr(args, "accept_filter_change", False):
        options["accept_filter_change"] = True
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        options["read_token"] = token
    if args.base_url:
        options["base_url"] = args.base_url
    if args.tables is not None:
        # An empty list is refused, with the tables to choose from.
        options["tables"] = [name.strip() for name in args.tables.split(",")]
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    flags = {
        "page_size": args.page_size,
        "initial_window": args.window,
        "service_names": args.service,
        "environments": args.environment,
        "span_names": args.span_name,
        "min_level": args.min_level,
        "where": args.where,
    }
    options.update({name: value for name, value in flags.items() if value is not None})
    if args.columns:
        options["table_columns"] = _columns(args.columns)
    return options


def _columns(values: Sequence[str]) -> dict[str, list[str]]:
    """``--columns records:span_name,duration`` as the `table_columns` option."""
    columns: dict[str, list[str]] = {}
    for value in values:
        table, sep, names = value.partition(":")
        if not sep or not table.strip() or not names.strip():
            raise ConfigurationError(
                f"--columns {value!r} names no table and columns. Write "
                "TABLE:COLUMN,COLUMN, such as records:span_name,duration."
            )
        chosen = columns.setdefault(table.strip(), [])
        chosen.extend(name.strip() for name in names.split(",") if name.strip())
    return columns


def _run(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    options = _source_options(args)
    if args.start:
        options["start"] = args.start
        _warn_if_start_ignored(pipeline)
    report = run_sync(
        pipeline, max_chunks=args.max_chunks, progress=_Progress(), **options
    )
    _print_report("sync", report)
    return EXIT_OK


def _backfill(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    options = _source_options(args)
    report = run_backfill(
        pipeline,
        args.start,
        args.end,
        max_chunks=args.max_chunks,
        progress=_Progress(),
        **options,
    )
    _print_report("backfill", report)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    options = _pipeline_options(args)
    if not args.from_destination:
        _refuse_state_of_another_dataset(options)
    pipeline = make_pipeline(options)
    if args.from_destination:
        pipeline.sync_destination()
    statuses = read_status(pipeline)
    if not statuses:
        where = (
            "its destination holds no state either"
            if args.from_destination
            else ("pass --from-destination to restore its state from the destination")
        )
        print(
            f"The pipeline {args.pipeline!r} has synced nothing yet (state in "
            f"{args.state_dir}). Run `logfire-sync run` first, or {where}."
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


def _refuse_state_of_another_dataset(options: PipelineOptions) -> None:
    """Refuse to show local state that the last run kept for another dataset.

    dlt keeps one local state per pipeline name, for the dataset and the
    destination its last run loaded; another dataset's watermarks would look
    like this one's.
    """
    from dlt.pipeline.exceptions import CannotRestorePipelineException

    try:
        kept = dlt.attach(
            options.name, pipelines_dir=str(options.state_dir / "pipelines")
        )
    except CannotRestorePipelineException:
        return
    if not kept.state.get("sources"):
        # Nothing synced yet: an earlier status made the state, and it holds no
        # watermark to mistake.
        return
    destination = str(kept.state.get("destination_type") or "").rsplit(".", 1)[-1]
    if (kept.dataset_name, destination) in {
        (options.dataset, options.destination),
        (options.dataset, ""),
    }:
        return
    raise ConfigurationError(
        f"The local state of the pipeline {options.name} is that of the dataset "
        f"{kept.dataset_name} in {destination or 'no destination'}, not of "
        f"{options.dataset} in {options.destination}. Pass those with --dataset "
        "and --destination, or add --from-destination to read the state that "
        f"{options.dataset} holds."
    )


def _verify(args: argparse.Namespace) -> int:
    pipeline = make_pipeline(_pipeline_options(args))
    options = _source_options(args)
    audit = run_verify(pipeline, args.start, args.end, bucket=args.bucket, **options)
    _print_audit(audit)
    if audit.matches or not args.repair:
        return EXIT_OK if audit.matches else EXIT_MISMATCH

    repair = run_repair(pipeline, audit, progress=_Progress(), **options)
    print(
        f"The repair read {repair.rows:,} rows again in {len(repair.ranges)} "
        "ranges. Verifying again:"
    )
    _print_audit(repair.after)
    if repair.after.matches:
        return EXIT_OK
    if any(difference.excess for difference in repair.after.differences):
        print(
            "Rows in excess that remain are rows Logfire no longer holds (past "
            "its retention, say): a repair re-reads rows and cannot remove "
            "those. Delete them from the destination by hand if they must go."
        )
    return EXIT_MISMATCH


def _print_audit(audit: Audit) -> None:
    """The counts of every table, and every bucket that differs."""
    print(
        f"Verified {_instant(audit.start)} to {_instant(audit.end)} in buckets "
        f"of {_width(audit.bucket)} ({audit.requests} requests to Logfire)."
    )
    for table in audit.tables:
        _print_table_audit(table)


def _print_table_audit(table: TableAudit) -> None:
    source = "the watermark" if table.from_watermark else "no watermark: the horizon"
    verdict = "all match" if table.matches else f"{len(table.differences)} differ"
    print(
        f"  {table.table}: {table.buckets:,} buckets of rows stored before "
        f"{_instant(table.stored_before)} ({source}); {table.logfire_rows:,} "
        f"in Logfire, {table.destination_rows:,} in the destination; {verdict}."
    )
    if table.matches:
        return
    print(f"    {'bucket':<32} {'logfire':>10} {'destination':>12}  difference")
    for diff in table.differences:
        change = (
            f"{diff.missing:,} missing" if diff.missing else f"{diff.excess:,} excess"
        )
        print(
            f"    {_instant(diff.bucket.lo):<32} {diff.logfire:>10,} "
            f"{diff.destination:>12,}  {change}"
        )


def _warn_if_start_ignored(pipeline: dlt.Pipeline) -> None:
    """Say so when --start cannot apply, as the tables have watermarks.

    A fresh folder has no state, but the run restores it from the destination
    (unless told not to), so the watermarks are looked for there too.
    """
    statuses = read_status(pipeline)
    synced = [status.table for status in statuses if status.watermark]
    if not statuses and pipeline.config.restore_from_destination:
        synced = tables_synced_in_destination(pipeline)
    if synced:
        logger.warning(
            "--start is ignored for %s: the pipeline has synced it before, so "
            "it goes on from its watermark. Use `logfire-sync backfill` to "
            "re-read older rows.",
            ", ".join(synced),
        )


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


def _report_failure(error: Exception, state_dir: Path | None = None) -> int:
    """Print one clear line about a failure and choose the exit code."""
    code, advice = _classify(error, state_dir)
    message = _scrub(str(error) or type(error).__name__)
    print(f"logfire-sync: {message}", file=sys.stderr)
    # Notes say what the error alone does not, such as how long retries went on.
    for note in getattr(error, "__notes__", ()):
        print(f"logfire-sync: {_scrub(str(note))}", file=sys.stderr)
    if advice:
        print(f"logfire-sync: {advice}", file=sys.stderr)
    logger.debug("Failure detail", exc_info=error)
    return code


def _classify(error: Exception, state_dir: Path | None) -> tuple[int, str]:
    local = _local_disk_failure(error, state_dir)
    if local is not None:
        return local
    if any(_CORRUPT_FILE in str(cause) for cause in causes(error)):
        return EXIT_DESTINATION, _CORRUPT_FILE_ADVICE
    missing = _missing_database_folder(error) or _missing_driver(error)
    if missing is not None:
        return EXIT_CONFIG, missing
    if isinstance(error, ConfigurationError):
        if "missing: read_token" in str(error):
            return EXIT_CONFIG, f"On the command line, {TOKEN_VARIABLE} also works."
        return EXIT_CONFIG, ""
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH, ""
    if isinstance(error, QueryError):
        return EXIT_QUERY, ""
    if isinstance(error, RetryableError):
        return EXIT_RETRY_LATER, "Nothing past the last committed chunk moved."
    if isinstance(error, DestinationError):
        return EXIT_DESTINATION, ""
    if isinstance(error, LogfireSyncError):
        return EXIT_FAILED, ""
    if _is_destination_failure(error):
        return EXIT_DESTINATION, (
            "The destination failed, as its message above says; loaded rows and "
            "watermarks are as the last committed chunk left them. Fix what it "
            "names (whether it is reachable with these credentials, its space, a "
            "value it refuses), then run again."
        )
    return EXIT_FAILED, ""


def _missing_driver(error: Exception) -> str | None:
    """The advice for a destination whose driver is not installed, if so."""
    kept = "Loaded rows and watermarks are as the last committed chunk left them."
    for cause in causes(error):
        if isinstance(cause, MissingDependencyException):
            installs = " or ".join(
                f'pip install "{name}"' for name in cause.dependencies
            )
            return (
                f"The destination's driver is not installed: {installs} (for "
                'PostgreSQL, pip install "logfire-sync[postgres]" does too), then '
                f"run again. {kept}"
            )
    for cause in causes(error):
        if isinstance(cause, ImportError):
            return (
                f"A module the destination needs failed to import ({cause}): "
                f"install or repair it, then run again. {kept}"
            )
    return None


_CORRUPT_FILE: Final = "Corrupt database file"
"""How DuckDB starts the error for a block whose checksum does not match."""

_CORRUPT_FILE_ADVICE: Final = (
    "The destination's database file is damaged, which no retry repairs; "
    "nothing was changed. Restore the file from a copy and delete the "
    "pipeline's folder under --state-dir (pipelines/<name>), so that the next "
    "run goes on from the copy's watermarks. Without a copy, move the file "
    "aside, delete that folder, and run again with --start as far back as the "
    "rows should go."
)


_NO_FOLDER: Final = re.compile(
    r'Cannot open file "(?P<path>[^"]+)": No such file or directory'
)
"""How DuckDB says that the folder of its database file does not exist."""


def _missing_database_folder(error: Exception) -> str | None:
    """The advice for a DuckDB file in a folder that does not exist, if so."""
    for cause in causes(error):
        found = _NO_FOLDER.search(str(cause))
        if found is not None:
            folder = Path(found["path"]).parent
            return (
                f"The folder of the DuckDB file, {folder}, does not exist. Create "
                "it, or name a file in a folder that does with "
                "DESTINATION__DUCKDB__CREDENTIALS. Loaded rows and watermarks are as "
                "the last committed chunk left them."
            )
    return None


def _local_disk_failure(
    error: Exception, state_dir: Path | None
) -> tuple[int, str] | None:
    """The exit code and advice for a full or read-only local disk, if so."""
    for cause in causes(error):
        number = cause.errno if isinstance(cause, OSError) else None
        where = getattr(cause, "filename", None)
        place = f" ({where})" if where else ""
        if number in _FULL_DISK or "No space left on device" in str(cause):
            return EXIT_DESTINATION, (
                f"The disk is full{place}. Free some space where the state "
                "folder and the DuckDB file are, or pass --state-dir with a "
                "folder on a disk that has room. Loaded rows and watermarks "
                "are as the last committed chunk left them."
            )
        if number in _UNWRITABLE and not _within(where, state_dir):
            return EXIT_DESTINATION, (
                f"The destination cannot be written{place}. Let the user that "
                "runs the sync write there, or load elsewhere. Loaded rows and "
                "watermarks are as the last committed chunk left them."
            )
        if number in _UNWRITABLE:
            return EXIT_CONFIG, (
                f"A folder cannot be written{place}. Pass --state-dir with a "
                "writable folder. Loaded rows and watermarks are as the last "
                "committed chunk left them."
            )
    return None


def _within(where: object, folder: Path | None) -> bool:
    """Whether the file an error names is in `folder`; True if either is unknown."""
    if not isinstance(where, str | bytes) or not where or folder is None:
        return True
    try:
        return Path(os.fsdecode(where)).resolve().is_relative_to(folder.resolve())
    except (OSError, TypeError, ValueError):
        return True


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
    # A watermark ahead of the clock is behind by less than nothing.
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds}s"
    if seconds < 7200:
        return f"{sign}{seconds // 60}m"
    return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _width(delta: timedelta) -> str:
    """A bucket's width in its largest whole unit: 1d, 6h, 15m or 90s."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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
