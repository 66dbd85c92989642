"""Running syncs to completion, and reading how far they have got.

:func:`run_sync` runs the source again and again, one chunk of `created_at`
time per ``pipeline.run``, until every table has caught up with the horizon.
Each chunk is committed on its own, so a crash redoes at most one chunk.
:func:`run_backfill` does the same for a backfill of an event-time range, and
:func:`read_status` reads the watermarks back from the pipeline's state::

    pipeline = dlt.pipeline(
        "logfire_sync", destination="duckdb", dataset_name="logfire"
    )
    report = run_sync(pipeline, service_names=["api"])
    print(report.rows, report.requests, report.caught_up)

Destinations whose merge cannot delete and insert (the filesystem destination
with Parquet files, for one) get ``write_disposition="append"`` unless the
caller chooses.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common.configuration import inject_section, resolve_configuration
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.configuration.specs import known_sections
from dlt.common.configuration.specs.config_section_context import (
    ConfigSectionContext,
)
from dlt.common.pipeline import LoadInfo
from dlt.common.schema.typing import TTableSchema
from dlt.common.schema.utils import has_table_seen_data
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.extract import DltSource
from dlt.load.configuration import LoaderConfiguration

from connector.errors import (
    ConfigurationError,
    LogfireSyncError,
    PipelineBusyError,
    causes,
)
from connector.indexes import index_merge_keys, indexes_merge_keys
from connector.readahead import ReadAhead
from connector.restore import (
    SOURCE_NAME,
    refuse_lost_destination,
    resource_states_in,
)
from connector.settings import parse_instant, unreadable_config
from connector.source import (
    Progress,
    TableSynced,
    WindowLoaded,
    logfire_source,
    refuse_another_target,
)

__all__ = [
    "SyncReport",
    "TableReport",
    "TableStatus",
    "read_status",
    "run_backfill",
    "run_sync",
]

logger = logging.getLogger(__name__)


_REWRITES_JOBS: Final = frozenset({"filesystem"})
"""Destinations whose load job, run again, replaces what it wrote before."""

_POSTGRES_TEXT: Final = frozenset({"postgres"})
"""Destinations whose text holds no NUL character, and whose loader stores ''
as NULL."""

_LOCK_FILE: Final = "logfire-sync.lock"
"""The file in a pipeline's folder that a run holds locked."""

_READ_AHEAD_FOLDER: Final = "logfire-read-ahead"
"""Where, in the pipeline's folder, a sync writes what it reads on."""

_KEPT_LOADS: Final = 24
"""Loaded packages kept in the pipeline's folder: a day of hourly runs."""


@dataclass(frozen=True)
class TableReport:
    """What a sync did to one table, over all of its chunks.

    Attributes:
        table: The table, such as ``records``.
        rows: Rows loaded.
        windows: Windows read.
        requests: HTTP requests sent for it, retries included.
        watermark: Every row stored before it is loaded (in a backfill: how
            far the backfill has got).
        caught_up: Whether the table has reached the horizon (in a backfill:
            whether the backfill is finished).
    """

    table: str
    rows: int
    windows: int
    requests: int
    watermark: datetime | None
    caught_up: bool


@dataclass(frozen=True)
class SyncReport:
    """What :func:`run_sync` or :func:`run_backfill` did.

    Attributes:
        tables: One report per table.
        chunks: How many times the pipeline ran.
        seconds: Wall-clock time of the whole sync.
    """

    tables: tuple[TableReport, ...]
    chunks: int
    seconds: float

    @property
    def rows(self) -> int:
        """Rows loaded into all tables."""
        return sum(table.rows for table in self.tables)

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return sum(table.requests for table in self.tables)

    @property
    def caught_up(self) -> bool:
        """Whether every table has caught up (or the backfill is finished).

        A sync that read no table at all has not.
        """
        return bool(self.tables) and all(table.caught_up for table in self.tables)

    @property
    def rows_per_second(self) -> float:
        """Rows loaded per second of the sync."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class TableStatus:
    """How far one table's sync has got, from the pipeline's state.

    Attributes:
        table: The resource, such as ``records``.
        watermark: Every row stored before it is loaded.
        lag: How far the watermark is behind `now`.
        rows_loaded: Rows loaded by all runs so far.
        last_run_at: The service's clock at the start of the last run.
        caught_up: Whether the last run reached the horizon.
    """

    table: str
    watermark: datetime | None
    lag: timedelta | None
    rows_loaded: int
    last_run_at: datetime | None
    caught_up: bool


@dataclass
class _Tally:
    """Sums the source's events over the chunks of one sync."""

    progress: Progress | None
    rows: dict[str, int] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    last: dict[str, TableSynced] = field(default_factory=dict)
    chunk_windows: int = 0

    def __call__(self, event: WindowLoaded | TableSynced) -> None:
        if isinstance(event, WindowLoaded):
            self.chunk_windows += 1
        else:
            table = event.table
            self.rows[table] = self.rows.get(table, 0) + event.rows
            self.windows[table] = self.windows.get(table, 0) + event.windows
            self.requests[table] = self.requests.get(table, 0) + event.requests
            self.last[table] = event
        if self.progress is not None:
            self.progress(event)

    def pending(self) -> list[str]:
        """Tables that have not caught up yet."""
        return [name for name, event in self.last.items() if not event.caught_up]

    def report(self, chunks: int, seconds: float) -> SyncReport:
        """The report of the sync so far."""
        tables = tuple(
            TableReport(
                table=name,
                rows=self.rows[name],
                windows=self.windows[name],
                requests=self.requests[name],
                watermark=event.watermark,
                caught_up=event.caught_up,
            )
            for name, event in self.last.items()
        )
        return SyncReport(tables=tables, chunks=chunks, seconds=seconds)


def run_sync(
    pipeline: dlt.Pipeline,
    *,
    max_chunks: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> SyncReport:
    """Sync new rows until every table has caught up with the horizon.

    Args:
        pipeline: The dlt pipeline to run; its state holds the watermarks.
        max_chunks: Stop after this many runs of the pipeline, caught up or
            not [no limit].
        progress: Called with every event of the source, as in
            :func:`connector.logfire_source`.
        **options: The options of :func:`connector.logfire_source`; those
            left out come from dlt's config (``[sources.logfire]``).

    Returns:
        What was loaded, and whether everything caught up.

    Raises:
        ConfigurationError: For a bad or missing option, before any request.
        LogfireSyncError: When reading fails for good; the watermarks stay
            where the last committed chunk left them.
    """
    if "backfill" in options:
        raise ConfigurationError(
            "run_sync does not take backfill; call run_backfill(pipeline, start, "
            "end) instead."
        )
    with _exclusive(pipeline, "sync"), _each_warning_once():
        return _run(pipeline, options, max_chunks, progress, label="sync")


def run_backfill(
    pipeline: dlt.Pipeline,
    start: datetime | str,
    end: datetime | str,
    /,
    *,
    max_chunks: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> SyncReport:
    """Re-read the rows whose event time lies in ``[start, end)``.

    The event time is `start_timestamp` for records and `recorded_timestamp`
    for metrics. Rows merge with what the incremental sync loaded (the merge
    key replaces them), and the live watermark does not move. Progress is
    kept in the pipeline's state, so an interrupted backfill resumes where it
    stopped when called again with the same range; a finished one reads its
    range again. A backfill with other filters than the incremental sync's
    is refused before any request: rows a narrower backfill does not read would
    still be deleted where they share a merge key with rows it does read. Pass
    ``accept_filter_change=True`` for filters that keep every row the sync's
    kept.

    Args:
        pipeline: The dlt pipeline to run.
        start: The first event time to re-read; timezone-aware. Positional,
            as the `start` option (where the first sync starts) may be given
            among the options too.
        end: The end of the range, excluded.
        max_chunks: As in :func:`run_sync`.
        progress: As in :func:`run_sync`.
        **options: As in :func:`run_sync`.

    Returns:
        What was loaded, and whether the backfill is finished.

    Raises:
        ConfigurationError: For a bad or missing option, before any request.
        LogfireSyncError: When reading fails for good.
    """
    instants = (parse_instant(start, "start"), parse_instant(end, "end"))
    if not instants[0] < instants[1]:
        raise ConfigurationError(
            f"The backfill starts at {instants[0].isoformat()}, which is not before "
            f"its end {instants[1].isoformat()}. Give the earlier instant first."
        )
    options = {**options, "backfill": instants}
    with _exclusive(pipeline, "backfill"), _each_warning_once():
        return _run(pipeline, options, max_chunks, progress, label="backfill")


def read_status(
    pipeline: dlt.Pipeline, *, now: datetime | None = None
) -> list[TableStatus]:
    """The watermark, lag and totals of every synced table, from local state.

    Args:
        pipeline: The dlt pipeline; call ``pipeline.sync_destination()`` first
            to read the state kept in the destination instead.
        now: What the lag is measured against [the local clock, in UTC,
            moved by how far the service's clock was from it at the table's
            last run].
    """
    statuses = []
    for name, state in _resource_states(pipeline).items():
        watermark = _instant(state.get("watermark"))
        moment = now or datetime.now(UTC) + _clock_offset(state)
        statuses.append(
            TableStatus(
                table=name,
                watermark=watermark,
                lag=None if watermark is None else moment - watermark,
                rows_loaded=int(state.get("rows_loaded", 0)),
                last_run_at=_instant(state.get("last_run_at")),
                caught_up=bool(state.get("caught_up", False)),
            )
        )
    return statuses


def _clock_offset(state: Mapping[str, Any]) -> timedelta:
    """How far the service's clock was ahead of this machine's at the last run."""
    seconds = state.get("clock_offset_seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return timedelta(seconds=seconds)
    return timedelta(0)


_ONCE_PER_RUN: Final = ("connector.columns", "connector.settings", "connector.source")
"""The loggers of what is built again for each chunk, warnings included."""


@contextlib.contextmanager
def _each_warning_once() -> Iterator[None]:
    """Let a run say each of the source's warnings once, not once a chunk.

    The source, and with it the settings, is built again for every chunk, so a
    short `settle` or a lateness below Logfire's bounds would be warned of as
    often as there are chunks. Other threads' runs keep warnings of their own.
    """
    thread = threading.get_ident()
    said: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or record.thread != thread:
            return True
        message = record.getMessage()
        if message in said:
            return False
        said.add(message)
        return True

    loggers = [logging.getLogger(name) for name in _ONCE_PER_RUN]
    for each in loggers:
        each.addFilter(first_time)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(first_time)


@contextlib.contextmanager
def _exclusive(pipeline: dlt.Pipeline, label: str) -> Iterator[None]:
    """Hold the pipeline's lock for a run, or refuse the run at once.

    Two runs of one pipeline would read the same windows, and both would
    append to tables they each found empty: every row twice. The lock is an
    advisory ``flock`` on a file in the pipeline's folder, which the system
    releases when the process ends, so a killed run leaves no stale lock.
    Runs on other machines, with state of their own, are not seen.
    """
    folder = Path(pipeline.working_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _LOCK_FILE
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineBusyError(
                f"Another run of the pipeline {pipeline.pipeline_name} is going on "
                f"(it holds {path}), so this {label} did not start: two at once "
                "would load the same rows twice. Let the other run finish; a "
                "schedule can simply try again at its next tick."
            ) from None
        yield


def _run(
    pipeline: dlt.Pipeline,
    options: dict[str, Any],
    max_chunks: int | None,
    progress: Progress | None,
    *,
    label: str,
) -> SyncReport:
    """Run chunks until caught up, stalled or out of chunks, under the lock."""
    if max_chunks is not None and max_chunks < 1:
        raise ConfigurationError(f"max_chunks must be 1 or more, not {max_chunks}.")
    _refuse_unraised_job_failures(pipeline)
    options = _with_text_rules(pipeline, with_disposition(pipeline, options))
    tally = _Tally(progress)
    # Under the pipeline's lock, so that a killed run's spool is cleared here.
    read_ahead = ReadAhead(Path(pipeline.working_dir) / _READ_AHEAD_FOLDER)
    source = _make_source(options, tally, read_ahead)
    # The resources refuse the same, but only once dlt has loaded what is pending.
    refuse_other_targets(pipeline, source.selected_resources)
    _refuse_appended_copies(pipeline, source, options)
    _refuse_unrestored_state(pipeline, source, options)
    refuse_lost_destination(pipeline)
    started = time.monotonic()
    _finish_pending(pipeline)
    merged = _merge_tables(source)
    appended = _empty_merge_tables(pipeline, source.schema.name, merged)
    if indexes_merge_keys(destination_kind(pipeline)):
        index_merge_keys(pipeline, _merge_keys(merged, appended))

    chunks = 0
    pending: list[str] = list(source.resources.keys())
    try:
        while pending:
            chunk_started = time.monotonic()
            rows_before = sum(tally.rows.values())
            tally.chunk_windows = 0

            chunk = source.with_resources(*pending)
            _append_to(chunk, appended)
            if max_chunks is not None and chunks + 1 >= max_chunks:
                read_ahead.stop_parking()
            _run_chunk(pipeline, chunk)
            chunks += 1
            rows = sum(tally.rows.values()) - rows_before
            _log_chunk(label, chunks, rows, chunk_started)

            pending = tally.pending()
            if tally.chunk_windows == 0 or (
                max_chunks is not None and chunks >= max_chunks
            ):
                break
            source = _make_source(options, tally, read_ahead)
    finally:
        read_ahead.close()

    _forget_old_loads(pipeline)
    return tally.report(chunks, time.monotonic() - started)


def _forget_old_loads(pipeline: dlt.Pipeline) -> None:
    """Delete all but the newest `_KEPT_LOADS` loaded packages from the folder.

    dlt keeps every loaded package, a copy of its rows included, so a sync run
    hourly would fill the disk over the years. The destination keeps its own
    record of every load in ``_dlt_loads``; pending packages are left alone.
    """
    loaded = sorted(pipeline.list_completed_load_packages(), key=_load_order)
    if len(loaded) <= _KEPT_LOADS:
        return
    # dlt's Pipeline has no public call that deletes a loaded package.
    storage = pipeline._get_load_storage()
    for load_id in loaded[:-_KEPT_LOADS]:
        storage.delete_loaded_package(load_id)


def _load_order(load_id: str) -> tuple[float, str]:
    """Oldest first: dlt's load ids are the times of their loads."""
    try:
        return float(load_id), load_id
    except ValueError:
        return float("inf"), load_id


def _refuse_appended_copies(
    pipeline: dlt.Pipeline, source: DltSource, options: Mapping[str, Any]
) -> None:
    """Refuse a run that would append a second copy of loaded rows.

    Appended rows replace nothing, and a backfill's event-time range and a
    sync's `created_at` windows overlap however they are chosen. So into a
    table that holds rows, a backfill is refused unless it goes on with one
    that began into the empty table before any sync, and a first sync is
    refused once a backfill has loaded into it. A sync that was let through
    holds the table from then on.
    """
    if options.get("write_disposition") != "append":
        return
    backfill = options.get("backfill")
    for name, resource in source.selected_resources.items():
        state = _resource_state(pipeline, name)
        synced = "watermark" in state
        if backfill is None and (synced or not state.get("backfills")):
            continue
        if backfill is not None and not synced and _resumes_backfill(state, *backfill):
            continue
        table = resource.compute_table_schema().get("name") or name
        if _holds_no_rows(pipeline, source.schema.name, table):
            continue
        raise ConfigurationError(_appended_copies(pipeline, table, backfill is None))


def _refuse_unrestored_state(
    pipeline: dlt.Pipeline, source: DltSource, options: Mapping[str, Any]
) -> None:
    """Refuse a first sync into rows whose state dlt was told not to restore.

    A worker with a fresh folder gets the watermark back from the
    destination, unless `restore_from_destination` is off: then its first
    sync would start a day back and leave a gap after the last run's rows.
    With `start` given, the caller has said where to begin.
    """
    if pipeline.config.restore_from_destination or options.get("backfill"):
        return
    if options.get("start") or configured_option("start"):
        return
    for name, resource in source.selected_resources.items():
        state = _resource_state(pipeline, name)
        if "watermark" in state or state.get("backfills"):
            continue
        table = resource.compute_table_schema().get("name") or name
        if _holds_no_rows(pipeline, source.schema.name, table):
            continue
        raise ConfigurationError(
            f"{table} holds rows, but this pipeline has no watermark for it, and "
            "dlt is set not to restore the state from the destination "
            "(restore_from_destination = false): a first sync would start a "
            "day back and leave a gap after the rows loaded before. Turn "
            "restore_from_destination back on, or give start to say where "
            "this sync begins. Nothing was read."
        )


_OTHER_TARGET: Final = (
    "another pipeline name and dataset_name; --pipeline and --dataset on the "
    "command line"
)


def _appended_copies(pipeline: dlt.Pipeline, table: str, sync: bool) -> str:
    """Why a run into an append-only table was refused, and what to do."""
    kind = destination_kind(pipeline)
    appends = (
        f"Rows are appended into {table} (by write_disposition append, or as "
        f"the {kind} destination only appends rows)"
    )
    if sync:
        return (
            f"{appends}, and it holds rows "
            "that a backfill of this pipeline loaded: a sync would add a second "
            "copy of every one of them it reads again. Sync into another dataset "
            f"({_OTHER_TARGET}). To load history into a "
            "dataset that a sync keeps current, give its first sync an earlier "
            "start instead of backfilling."
        )
    return (
        f"{appends}, and it already holds rows: a backfill would add a second "
        "copy of every row the sync loaded in its range. Backfill into a fresh "
        f"dataset ({_OTHER_TARGET}), or load with merge "
        "into a destination that can, such as DuckDB or PostgreSQL."
    )


def refuse_other_targets(pipeline: dlt.Pipeline, tables: Iterable[str]) -> None:
    """Refuse watermarks that runs into another destination or dataset moved.

    Raises:
        ConfigurationError: If a table's state belongs to another target.
    """
    for name in tables:
        refuse_another_target(_resource_state(pipeline, name), name, pipeline)


def _resource_state(pipeline: dlt.Pipeline, resource: str) -> dict[str, Any]:
    """The state a resource of the source keeps, empty if it has none."""
    sources = pipeline.state.get("sources", {})
    state = sources.get(SOURCE_NAME, {}).get("resources", {}).get(resource, {})
    return state if isinstance(state, dict) else {}


def _resumes_backfill(state: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    """Whether an unfinished backfill of ``[start, end)`` is in `state`."""
    for key, progress in state.get("backfills", {}).items():
        low, _, high = str(key).partition("/")
        try:
            same = (datetime.fromisoformat(low), datetime.fromisoformat(high)) == (
                start,
                end,
            )
        except ValueError:
            continue
        if same and not progress.get("finished"):
            return True
    return False


def destination_kind(pipeline: dlt.Pipeline) -> str | None:
    """The short name of the pipeline's destination, such as ``duckdb``."""
    destination = pipeline.destination
    if destination is None:
        return None
    return str(destination.destination_type).rsplit(".", 1)[-1]


def _make_source(
    options: Mapping[str, Any], tally: _Tally, read_ahead: ReadAhead
) -> DltSource:
    """The source with the caller's options, its events counted by `tally`."""
    try:
        source: DltSource = logfire_source(
            **options, progress=tally, read_ahead=read_ahead
        )
    except ConfigFieldMissingException as error:
        raise ConfigurationError(
            f"A required option is missing: {', '.join(error.fields)}. Set "
            "read_token in .dlt/secrets.toml under [sources.logfire], or in the "
            "SOURCES__LOGFIRE__READ_TOKEN environment variable."
        ) from None
    except ConfigValueCannotBeCoercedException as error:
        raise unreadable_config(
            error.field_name, error.field_value, error.hint
        ) from None
    return source


def _finish_pending(pipeline: dlt.Pipeline) -> None:
    """Load what an interrupted run extracted, before reading anything new.

    A run killed after its extract leaves a load package, with the state that
    moved past its windows, and ``pipeline.run`` given new data would only load
    that package and return, so the chunk loop would stop at once. Loading it
    here first lets the sync go on from where the package left the state.
    It is loaded without ``pipeline.run``, whose first step, finding no dataset
    in the destination after a first load that failed, would wipe the folder,
    package included.
    """
    _drop_normalized_leftovers(pipeline)
    _abort_interrupted_load(pipeline)
    if not pipeline.has_pending_data:
        return
    logger.info(
        "The pipeline %s has load packages left by an interrupted run; loading "
        "them first.",
        pipeline.pipeline_name,
    )
    try:
        _run_chunk(pipeline, None)
    except LogfireSyncError:
        raise
    except Exception as failure:
        raise LogfireSyncError(
            f"A load package that an earlier run of {pipeline.pipeline_name} left "
            f"failed to load again ({failure}). Every run loads it first, so if "
            "the destination refuses it for good, abort it: `dlt pipeline "
            f"--pipelines-dir {shlex.quote(pipeline.pipelines_dir)} "
            f"{pipeline.pipeline_name} abort-packages` (or "
            "pipeline.abort_packages()). The state goes back to where it was "
            "before the package, so the next run reads its rows again."
        ) from failure


def _abort_interrupted_load(pipeline: dlt.Pipeline) -> None:
    """Abort a package whose load was killed in the middle of a job.

    dlt notes a job's outcome once the destination has committed it, and the
    next load takes a noted job as done. A job killed before that note may
    have committed its rows all the same, and dlt would run it again: into a
    staging table it does not empty a second time, or straight into a table
    loaded by append, so its rows would arrive twice. Aborting restores the
    state from before the package, so its chunk is read again and merged over
    whatever the first attempt left.

    The filesystem destination is left to run the job again: it writes the
    same file again, named by package and job, where a chunk read again would
    go to new files beside the old ones, appended as its tables are.
    """
    if destination_kind(pipeline) in _REWRITES_JOBS:
        return
    for load_id in pipeline.list_normalized_load_packages():
        started = pipeline.get_load_package_info(load_id).jobs.get("started_jobs")
        # dlt has no public call that lists the noted jobs; its storage does.
        storage = pipeline._get_load_storage().normalized_packages
        noted = set(storage.list_pending_transitions(load_id))
        if all(Path(job.file_path).name in noted for job in started or ()):
            continue
        logger.warning(
            "The load of package %s of the pipeline %s stopped in the middle of "
            "a job; aborting it, so that its chunk is read again rather than "
            "some of its rows loaded twice.",
            load_id,
            pipeline.pipeline_name,
        )
        pipeline.abort_packages()
        return


def _drop_normalized_leftovers(pipeline: dlt.Pipeline) -> None:
    """Delete what is left of extracted packages that were already normalized.

    dlt normalizes an extracted package into a load package, commits that, and
    then deletes the extracted one. A run killed during the deletion leaves part
    of it behind, and every later run fails on its missing files. Its rows are
    safe in the load package, so the leftover can go.
    """
    done = {
        *pipeline.list_normalized_load_packages(),
        *pipeline.list_completed_load_packages(),
    }
    leftovers = [
        load_id
        for load_id in pipeline.list_extracted_load_packages()
        if load_id in done
    ]
    for load_id in leftovers:
        logger.warning(
            "Deleting the rest of the extracted package %s of the pipeline %s: "
            "an interrupted run had normalized it already.",
            load_id,
            pipeline.pipeline_name,
        )
        # dlt has no public call for this; its own storage deletes the folder.
        storage = pipeline._get_normalize_storage()
        storage.extracted_packages.delete_package(load_id, not_exists_ok=True)


def _merge_tables(source: DltSource) -> dict[str, TTableSchema]:
    """The table of each selected resource of `source` that is loaded by merge."""
    tables: dict[str, TTableSchema] = {}
    for resource in source.selected_resources.values():
        table = resource.compute_table_schema()
        if table.get("write_disposition") == "merge":
            tables[resource.name] = table
    return tables


def _empty_merge_tables(
    pipeline: dlt.Pipeline, schema: str, merged: Mapping[str, TTableSchema]
) -> set[str]:
    """The resources whose merge tables hold no rows yet, to load by append.

    A delete-insert merge loads every row into a staging table, deletes the
    destination's rows that share a merge key with them, then copies them
    over. Into a table that was empty when the sync began it deletes nothing:
    every row there came from an earlier chunk of the same sync, whose windows
    this chunk's do not overlap, and a merge key holds a `created_at`, or an
    event time in a backfill, so none of them shares one with a row of this
    chunk. Appending loads exactly the same rows, about twice as fast. The
    next sync, finding rows, merges again.
    """
    empty: set[str] = set()
    for resource, table in merged.items():
        name = table.get("name") or resource
        if _holds_no_rows(pipeline, schema, name):
            logger.info(
                "%s is empty in the destination, so this sync appends its rows "
                "rather than merging them.",
                name,
            )
            empty.add(resource)
    return empty


def _merge_keys(
    merged: Mapping[str, TTableSchema], appended: set[str]
) -> dict[str, list[str]]:
    """The merge key's columns of each table the sync merges into."""
    keys: dict[str, list[str]] = {}
    for resource, table in merged.items():
        if resource in appended:
            continue
        columns = table.get("columns", {}).values()
        key = [str(column["name"]) for column in columns if column.get("merge_key")]
        if key:
            keys[table.get("name") or resource] = key
    return keys


def _append_to(source: DltSource, resources: set[str]) -> None:
    """Load the chosen resources of `source` by plain append."""
    for name, resource in source.selected_resources.items():
        if name in resources:
            resource.apply_hints(write_disposition="append")


def _holds_no_rows(pipeline: dlt.Pipeline, schema_name: str, table_name: str) -> bool:
    """Whether the destination table is missing or empty; False if unsure.

    A table the pipeline's schema has seen data for is taken as not empty
    without asking the destination, so incremental runs send no query.
    """
    if pipeline.destination is None:
        return False
    schemas = pipeline.schemas
    known_schema = schema_name if schema_name in schemas else None
    if known_schema is not None:
        known = schemas[known_schema].tables.get(table_name)
        if known is not None and has_table_seen_data(known):
            return False
    try:
        # A schema not yet stored loads into the pipeline's own dataset.
        client_context = (
            pipeline.sql_client(known_schema)
            if known_schema is not None
            else pipeline.sql_client()
        )
        with client_context as client:
            name = client.make_qualified_table_name(table_name)
            rows = client.execute_sql(f"SELECT 1 FROM {name} LIMIT 1")
    except DatabaseUndefinedRelation:
        return True
    except Exception as error:
        # No SQL client, or the destination failed: merging is always right.
        logger.debug("Could not tell whether %s is empty: %s", table_name, error)
        return False
    return not rows


def _refuse_unraised_job_failures(pipeline: dlt.Pipeline) -> None:
    """Refuse a pipeline whose failed load jobs would not fail its run.

    A package carries its rows and the watermark past them; with
    `raise_on_failed_jobs` off, dlt completes a package whose job failed, and
    its rows are never read again.
    """
    with inject_section(
        ConfigSectionContext(
            pipeline_name=pipeline.pipeline_name, sections=(known_sections.LOAD,)
        )
    ):
        config = resolve_configuration(
            LoaderConfiguration(), sections=(known_sections.LOAD,), accept_partial=True
        )
    if not config.raise_on_failed_jobs:
        raise ConfigurationError(
            "dlt is set not to raise when a load job fails (raise_on_failed_jobs = "
            "false under [load] in config.toml, or LOAD__RAISE_ON_FAILED_JOBS in "
            "the environment). A failed job's rows would then be lost: the "
            "watermark past them is committed with the same package. Remove "
            "the setting for this pipeline; nothing was read."
        )


def _run_chunk(pipeline: dlt.Pipeline, source: DltSource | None) -> None:
    """One pipeline run, raising the connector's own error if it fails.

    Without a source, the pending packages are normalized and loaded.

    Raises:
        LogfireSyncError: If a load job failed without failing the run, which
            only a setting checked before the first run allows.
    """
    try:
        info = pipeline.run(source) if source is not None else _load_pending(pipeline)
    except Exception as failure:
        cause = _connector_error(failure) or _missing_config(pipeline, failure)
        if cause is None:
            raise
        raise cause from failure
    if info is not None and info.has_failed_jobs:
        raise LogfireSyncError(
            f"A load job of {pipeline.pipeline_name} failed, and dlt completed its "
            "package all the same, watermark included. Run `logfire-sync verify "
            "--repair` over the loaded range to load its rows again.\n"
            f"{info}"
        )


def _load_pending(pipeline: dlt.Pipeline) -> LoadInfo | None:
    """Normalize and load the pending packages, as ``pipeline.run`` would."""
    if pipeline.list_extracted_load_packages():
        pipeline.normalize()
    if not pipeline.list_normalized_load_packages():
        return None
    return pipeline.load()


def _missing_config(
    pipeline: dlt.Pipeline, failure: BaseException
) -> ConfigurationError | None:
    """The error for a destination setting that no config provides, if so."""
    chain = list(causes(failure))
    missing = next(
        (error for error in chain if isinstance(error, ConfigFieldMissingException)),
        None,
    )
    if missing is None:
        return None
    steps = {getattr(error, "step", None) for error in chain}
    then = (
        "Nothing was read."
        if "sync" in steps
        else "Rows already read wait in the pipeline's folder and load on the next run."
    )
    return missing_destination_config(pipeline, missing, then=then)


def missing_destination_config(
    pipeline: dlt.Pipeline, error: ConfigFieldMissingException, *, then: str = ""
) -> ConfigurationError:
    """The error for destination settings, such as credentials, left unset.

    A setting given in part, such as credentials as a URL without a password,
    is named down to the part that is missing. `then` says what became of the
    run, after the fix.
    """
    name = destination_kind(pipeline) or "chosen"
    section = name.upper()
    keys = [key for field in error.fields for key in _missing_keys(error, field)]
    variables = " and ".join(
        f"DESTINATION__{section}__{key.replace('.', '__').upper()}" for key in keys
    )
    shown = ", ".join(keys)
    return ConfigurationError(
        f"The {name} destination needs {shown}, which no config provides. Set "
        f"{variables} in the environment, or {shown} under [destination.{name}] "
        f"in .dlt/secrets.toml. {then}".rstrip()
    )


def _missing_keys(error: ConfigFieldMissingException, field: str) -> list[str]:
    """The dotted keys missing under `field`: itself, or the parts left unset.

    Only a field given in part, such as credentials as a URL without its
    password, is named by its parts; one not given at all is named whole.
    """
    parts = [
        f"{field}.{part}"
        for trace in error.traces.get(field, ())
        if getattr(trace, "resolved_fields_set", None)
        for part in getattr(trace, "traces", {})
    ]
    return parts or [field]


def _connector_error(failure: BaseException) -> LogfireSyncError | None:
    """The connector's error behind a failed pipeline step, if any."""
    for error in causes(failure):
        if isinstance(error, LogfireSyncError):
            return error
    return None


def with_disposition(pipeline: dlt.Pipeline, options: dict[str, Any]) -> dict[str, Any]:
    """The options, with the write disposition the rows will really get.

    That is the one given or configured (merge by default), but append on a
    destination that cannot delete-insert, where dlt would append anyway:
    the checks against appended copies must know.
    """
    disposition = options.get("write_disposition")
    if disposition is None:
        disposition = configured_option("write_disposition") or "merge"
    if disposition == "merge" and pipeline.destination is not None:
        strategies = pipeline.destination.capabilities().supported_merge_strategies
        if "delete-insert" not in strategies:
            logger.info(
                "The %s destination cannot merge by delete-insert, so rows are "
                "appended.",
                pipeline.destination.destination_name,
            )
            disposition = "append"
    return {**options, "write_disposition": disposition}


def configured_option(name: str, *, secret: bool = False, listed: bool = False) -> Any:
    """An option from dlt's config or secrets, as the source would find it."""
    accessor = dlt.secrets if secret else dlt.config
    for key in (f"sources.logfire.{name}", f"sources.{name}"):
        try:
            value: Any = accessor.get(key, list) if listed else accessor.get(key)
        except Exception as error:
            raise ConfigurationError(
                f"The configured {name} ({key}) cannot be read: {error}"
            ) from None
        if value is not None:
            return value
    return None


def _with_text_rules(pipeline: dlt.Pipeline, options: dict[str, Any]) -> dict[str, Any]:
    """The options, with the text rules of the pipeline's destination.

    PostgreSQL stores no NUL character, and its loader stores '' as NULL. The
    filesystem destination parses no JSON, so its values need no parsing to
    tell JSON from text that only looks like it.
    """
    kind = destination_kind(pipeline)
    rules: dict[str, bool] = {}
    if kind in _POSTGRES_TEXT:
        rules = {"replace_nul": True, "warn_empty_text": True}
    elif kind == "filesystem":
        rules = {"parse_json": False}
    # What the caller or dlt's config says comes first.
    unset = {
        name: value
        for name, value in rules.items()
        if options.get(name) is None and configured_option(name) is None
    }
    return {**options, **unset}


def _log_chunk(label: str, chunk: int, rows: int, started: float) -> None:
    """One INFO line per chunk: rows and rows per second."""
    seconds = time.monotonic() - started
    rate = rows / seconds if seconds > 0 else 0.0
    logger.info(
        "The %s's chunk %s loaded %s rows in %.1f s (%.0f rows/s).",
        label,
        chunk,
        rows,
        seconds,
        rate,
    )


def _resource_states(pipeline: dlt.Pipeline) -> dict[str, dict[str, Any]]:
    """The state of every resource that keeps a watermark."""
    return resource_states_in(pipeline.state)


def _instant(value: object) -> datetime | None:
    """An instant kept in the state."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None
