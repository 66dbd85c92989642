"""The dlt source: Logfire's `records` and `metrics`, synced incrementally.

Each table is read in windows of `created_at`, the time Logfire stored a row,
up to a horizon `settle` before the service's clock; later rows may still be
stored with an earlier `created_at`, so they wait for the next run. The
watermark, kept in the resource's dlt state, moves past a window only once all
of its rows have been yielded. A failed run therefore leaves it where it was,
and the next run reads the same windows again.

Rows are loaded with `merge` (strategy `delete-insert`) on the merge key
`(created_at, start_timestamp)` for records and `(created_at,
recorded_timestamp)` for metrics, without a primary key. Re-reading a window
replaces exactly the rows it reads again, while distinct rows that share ids
(a span, its events and logs) all survive. Destinations without merge, such as
Parquet files on the filesystem destination, take `write_disposition="append"`:
every window is read once, so rows still arrive once, but a backfill over rows
already loaded adds them again.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
from dlt.extract import DltResource

from connector.arrow import loaded_types, prepare_batch, replace_nul_characters
from connector.client import LogfireClient
from connector.columns import ArrivingColumns
from connector.dltlogs import quiet_hint_warning
from connector.errors import ConfigurationError
from connector.overlap import run_ahead
from connector.pager import (
    WindowQuery,
    WindowStats,
    order_by,
    read_window,
    read_windows,
)
from connector.readahead import ReadAhead, Reading
from connector.retry import RetryPolicy
from connector.settings import (
    DEFAULTS,
    INGEST_AHEAD,
    Settings,
    build_settings,
)
from connector.sql import in_list, quote_identifier, timestamp_literal
from connector.tables import TABLES, KeyColumn, TableSpec
from connector.windows import (
    BOUND_MARGIN,
    Window,
    WindowPlanner,
    created_at_scan,
    event_time_scan,
    max_event_time_width,
)

__all__ = [
    "Progress",
    "TableSynced",
    "WindowLoaded",
    "logfire_source",
    "logfire_sql_resource",
    "refuse_another_target",
    "table_filters",
]

logger = logging.getLogger(__name__)

_PAGES_AHEAD: Final = 2
"""Batches a window's page thread may read ahead of their shaping."""

_RETENTION: Final = timedelta(days=30)
_FUTURE_START: Final = timedelta(hours=1)
"""How far past the service's clock a first sync's start may be: clocks differ."""
_OFFSET_SLACK: Final = 60
"""Seconds the clocks' offset may move before the state keeps the new one."""
_SELECT: Final = re.compile(r"\s*(select|with)\b", re.IGNORECASE)


@dataclass(frozen=True)
class WindowLoaded:
    """A window's rows have all been yielded to dlt.

    Attributes:
        table: The resource, such as ``records``.
        window: The window, on `created_at` (or on event time in a backfill).
        rows: How many rows it held.
        watermark: The table's watermark after it; None in a backfill.
        backfill: Whether the window belongs to a backfill.
    """

    table: str
    window: Window
    rows: int
    watermark: datetime | None
    backfill: bool


@dataclass(frozen=True)
class TableSynced:
    """A resource has read everything it will read in this run.

    Attributes:
        table: The resource, such as ``records``.
        rows: Rows yielded in this run.
        windows: Windows read in this run.
        requests: HTTP requests sent, retries included.
        watermark: The watermark now (in a backfill: how far it has got).
        horizon: The newest instant that was safe to read up to.
        caught_up: Whether nothing more is left to read up to the horizon
            (in a backfill: whether the backfill is finished).
        backfill: Whether this was a backfill.
        seconds: How long the resource ran.
    """

    table: str
    rows: int
    windows: int
    requests: int
    watermark: datetime | None
    horizon: datetime
    caught_up: bool
    backfill: bool
    seconds: float


Progress = Callable[[WindowLoaded | TableSynced], None]
"""A callback told of every loaded window and every finished table."""


@dlt.source(name="logfire", max_table_nesting=0)
def logfire_source(
    read_token: str = dlt.secrets.value,
    base_url: str | None = None,
    tables: Sequence[str] | None = None,
    table_columns: dict[str, list[str]] | None = None,
    service_names: Sequence[str] | None = None,
    environments: Sequence[str] | None = None,
    span_names: Sequence[str] | None = None,
    min_level: str | int | None = None,
    where: str | dict[str, str] | None = None,
    start: str | datetime | None = None,
    initial_window: str | float | None = None,
    settle: str | float | None = None,
    lateness_back: str | float | None = None,
    lateness_ahead: str | float | None = None,
    page_size: int | None = None,
    target_pages: int | None = None,
    concurrency: int | None = None,
    timeout: str | float | None = None,
    max_attempts: int | None = None,
    max_retry_seconds: str | float | None = None,
    chunk: str | float | None = None,
    chunk_rows: int | None = None,
    chunk_bytes: int | None = None,
    backfill: Sequence[str | datetime] | None = None,
    write_disposition: str | None = None,
    require_end_marker: bool | None = None,
    verify_counts: bool | None = None,
    max_requests_per_minute: int | None = None,
    accept_filter_change: bool | None = None,
    replace_nul: bool | None = None,
    warn_empty_text: bool | None = None,
    parse_json: bool | None = None,
    progress: Progress | None = None,
    read_ahead: ReadAhead | None = None,
) -> list[DltResource]:
    """Logfire's `records` and `metrics` tables, read incrementally.

    Every option can also come from ``[sources.logfire]`` in dlt's config and
    secrets files, or from environment variables such as
    ``SOURCES__LOGFIRE__READ_TOKEN``. Durations are seconds or strings such
    as ``"5m"``, ``"1h30m"`` or ``"PT5M"``; instants are ISO 8601 with an
    offset. Left out, an option takes the default in brackets.

    Args:
        read_token: A Logfire read token (a secret).
        base_url: The service's root URL [from the token's region].
        tables: The tables to sync [records and metrics].
        table_columns: Per table, the columns to load [all the service has];
            the key, cursor and merge-key columns are always added. (Not
            `columns`: dlt would read the shell's COLUMNS variable for it.)
        service_names: Keep only rows of these services.
        environments: Keep only rows of these deployment environments; ``""``
            stands for rows with none.
        span_names: Records only: keep only these span names.
        min_level: Records only: the lowest level kept, as a number or one of
            trace, debug, info, notice, warn, error, fatal.
        where: A raw SQL condition ANDed to every query (a string), or one
            per table (a mapping). It is pasted as written: keeping it valid,
            and safe, is the caller's responsibility.
        start: Where the first sync starts [24 hours before the service's
            now]; ignored once a watermark exists.
        initial_window: The first window's width [1 h]; later ones adapt.
        settle: How far behind the service's clock to stop reading [5 min],
            as Logfire stores no more rows with a `created_at` older than that.
        lateness_back: How long before `created_at` a row's event time can be
            [24 h].
        lateness_ahead: How long after `created_at` it can be [1 h].
        page_size: Rows per request, 1 to 10,000 [10,000].
        target_pages: About how many pages a window should hold [10];
            under :func:`connector.run_sync`, windows hold no more than a
            `concurrency`-th of `chunk_rows`, so that every reader has one.
        concurrency: Windows read at once, 1 to 16 [1]; rows are still
            yielded in window order, and reading runs ahead of loading.
        timeout: Seconds to wait for each read from the service [120].
        max_attempts: Attempts per request before giving up [8].
        max_retry_seconds: The time budget for retrying a request [300].
        chunk: The most `created_at` time one run reads [1 day for a plain
            ``pipeline.run``, so a long backfill of history is committed
            piece by piece; no limit under :func:`connector.run_sync`, whose
            chunks end by `chunk_rows`].
        chunk_rows: Under :func:`connector.run_sync`, about how many rows a
            run loads [200,000]: with one reader, windows aim at what the run
            has room for; with more, it ends at the first window boundary
            where one more window of the size windows aim at would take it
            past this many. The next run goes on at once with the rows read
            meanwhile; this bounds the memory and the disk a load takes. A
            plain ``pipeline.run`` reads its whole chunk.
        chunk_bytes: About the most bytes of Arrow data such a run loads
            [256 MiB]. Once a page shows how wide the rows are, chunks of
            wide rows end before `chunk_rows`, and pages ask for fewer rows,
            about 64 MiB at most.
        backfill: ``(start, end)``: re-read event times in ``[start, end)``
            instead of syncing new rows, without moving the watermark.
        write_disposition: ``merge`` [default], or ``append`` for destinations
            without merge.
        require_end_marker: Whether a page's Arrow stream counts as whole only
            with its end-of-stream marker [true]: a short page that ends
            without it is then confirmed by a ``COUNT(*)``. Off, the marker
            is not looked for, and only `verify_counts` checks pages.
        verify_counts: Confirm each window's last page with a ``COUNT(*)``
            query, one more request a window [on when `require_end_marker` is
            off, else off]: without the marker, only a count shows a stream
            cut cleanly between two batches.
        max_requests_per_minute: Send at most this many requests in any
            minute, over all windows in flight and all chunks [no limit].
        accept_filter_change: Go on from the watermark, or backfill, with
            filters other than those the loaded rows were read with [false:
            such a run fails, since rows before the watermark that only the
            new filters keep would never be read, and a narrower backfill
            would delete loaded rows that share a merge key with its own].
        replace_nul: Load each NUL character in text as U+FFFD, with a warning
            [false; run_sync turns it on for PostgreSQL, which stores no NUL
            and would refuse the whole load].
        warn_empty_text: Warn, once for each column, of empty strings in
            text [false; run_sync turns it on for PostgreSQL, whose loader
            stores them as NULL].
        parse_json: Parse every value of the JSON columns, so that text that
            only looks like JSON (``{'a': 1}``) is loaded as a JSON string
            rather than failing the load on every run [true; run_sync turns
            it off for the filesystem destination, whose files keep the text
            as it is; about 1 us a row].
        progress: Called with a :class:`WindowLoaded` after every window and a
            :class:`TableSynced` after every table.
        read_ahead: Where run_sync keeps what is read on between runs.

    Returns:
        One resource per table, named after it.

    Raises:
        ConfigurationError: For any bad option, before any request is sent.
    """
    settings = build_settings(
        read_token=read_token,
        base_url=base_url,
        tables=tables,
        columns=table_columns,
        service_names=service_names,
        environments=environments,
        span_names=span_names,
        min_level=min_level,
        where=where,
        start=start,
        initial_window=initial_window,
        settle=settle,
        lateness_back=lateness_back,
        lateness_ahead=lateness_ahead,
        page_size=page_size,
        target_pages=target_pages,
        concurrency=concurrency,
        timeout=timeout,
        max_attempts=max_attempts,
        max_retry_seconds=max_retry_seconds,
        chunk=chunk,
        chunk_rows=chunk_rows,
        chunk_bytes=chunk_bytes,
        backfill=backfill,
        write_disposition=write_disposition,
        require_end_marker=require_end_marker,
        verify_counts=verify_counts,
        max_requests_per_minute=max_requests_per_minute,
        accept_filter_change=accept_filter_change,
        replace_nul=replace_nul,
        warn_empty_text=warn_empty_text,
        parse_json=parse_json,
    )
    return [
        _table_resource(TABLES[name], settings, progress, read_ahead)
        for name in settings.tables
    ]


def _table_resource(
    spec: TableSpec,
    settings: Settings,
    progress: Progress | None,
    read_ahead: ReadAhead | None,
) -> DltResource:
    """The dlt resource that syncs one table."""
    quiet_hint_warning()
    merge = settings.write_disposition == "merge"

    def rows() -> Iterator[pa.RecordBatch]:
        sync = _TableSync(spec, settings, progress, read_ahead)
        columns = ArrivingColumns(spec, settings.columns.get(spec.name) or spec.columns)
        for batch in sync.run():
            yield columns.named(batch)

    disposition: TWriteDispositionConfig = "append"
    if merge:
        disposition = {"disposition": "merge", "strategy": "delete-insert"}
    return dlt.resource(
        rows(),
        name=spec.name,
        table_name=spec.name,
        write_disposition=disposition,
        merge_key=list(spec.merge_key) if merge else [],
        columns=_column_hints(spec, settings),
    )


def _column_hints(spec: TableSpec, settings: Settings) -> dict[str, TColumnSchema]:
    """JSON types for JSON and list columns; partitioning on event time."""
    selected = settings.columns.get(spec.name) or spec.columns
    hints: dict[str, TColumnSchema] = {}
    for name in selected:
        if name in spec.json_columns or name in spec.list_columns:
            hints[name] = {"data_type": "json"}
    hints[spec.bound] = {"partition": True, "cluster": True}
    return hints


def _make_client(settings: Settings) -> LogfireClient:
    """A client with the settings' timeout and retry policy."""
    policy = RetryPolicy(
        max_attempts=settings.max_attempts, max_elapsed=settings.max_retry_seconds
    )
    return LogfireClient(
        settings.read_token,
        base_url=settings.base_url,
        timeout=settings.timeout,
        retry=policy,
        require_end_marker=settings.require_end_marker,
        max_requests_per_minute=settings.max_requests_per_minute,
    )


def _iso(moment: datetime) -> str:
    """An instant as kept in the state: ISO 8601, microseconds, UTC."""
    return moment.isoformat(timespec="microseconds")


def _stored_instant(state: dict[str, Any], key: str) -> datetime | None:
    """An instant from the state, if it is there."""
    value = state.get(key)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _pipeline_target(pipeline: dlt.Pipeline) -> dict[str, str] | None:
    """The destination and dataset that `pipeline` loads; None without one."""
    if pipeline.destination is None:
        return None
    return {
        "destination": str(pipeline.destination.destination_name),
        "dataset": str(pipeline.dataset_name),
    }


def refuse_another_target(
    state: Mapping[str, Any], table: str, pipeline: dlt.Pipeline
) -> None:
    """Refuse to go on from a watermark that another target's loads moved.

    dlt keeps one local state per pipeline name, whatever the destination and
    dataset it is run with: a run into another would take up the watermark
    where the last one left it, and skip the rows before it.

    Raises:
        ConfigurationError: If `state` belongs to another destination or
            dataset than the pipeline's.
    """
    kept = state.get("target")
    target = _pipeline_target(pipeline)
    if not isinstance(kept, dict) or target is None:
        return
    if _same_target(kept, target, pipeline):
        return
    theirs = f"the dataset {kept.get('dataset')} in {kept.get('destination')}"
    ours = f"{target['dataset']} in {target['destination']}"
    raise ConfigurationError(
        f"The state of {table} in the pipeline {pipeline.pipeline_name} is that "
        f"of {theirs}, not of {ours}: going on from its watermark would skip "
        f"the rows before it in {ours}. Give each destination and dataset a "
        "pipeline name of its own (--pipeline, or the name given to "
        f"dlt.pipeline). To go on from the state that {ours} holds, delete "
        f"{pipeline.working_dir} first: the next run then restores the state "
        "from there, or starts afresh if there is none."
    )


def _same_target(
    kept: Mapping[str, Any], target: Mapping[str, str], pipeline: dlt.Pipeline
) -> bool:
    """Whether two targets are one: dataset names are compared as dlt names them.

    dlt normalizes a dataset's name with the schema's naming convention, so
    ``LOGFIRE`` and ``logfire`` are one dataset under the default one.
    """
    if kept.get("destination") != target["destination"]:
        return False
    dataset = str(kept.get("dataset"))
    if dataset == target["dataset"]:
        return True
    if not pipeline.default_schema_name:
        return False
    normalize = pipeline.default_schema.naming.normalize_table_identifier
    return bool(normalize(dataset) == normalize(target["dataset"]))


def _refuse_replace(table: str) -> None:
    """Refuse to run with the replace disposition, given to ``pipeline.run``.

    dlt starts a replaced resource's state afresh on every run, so each run
    would read from a day back again and delete every row loaded before.

    Raises:
        ConfigurationError: If the resource is to replace its table.
    """
    disposition: Any = dlt.current.resource().write_disposition
    if isinstance(disposition, Mapping):
        disposition = disposition.get("disposition")
    if disposition == "replace":
        raise ConfigurationError(
            f"{table} is to be loaded with write_disposition 'replace'. dlt "
            "forgets a replaced resource's watermark on every run, so each run "
            "would delete the rows loaded before and read only the last day "
            "again. Leave write_disposition out of pipeline.run (the connector "
            "merges, or appends where the destination cannot merge); to load "
            "a range again, use a backfill. Nothing was read."
        )


def _claim_target(state: dict[str, Any], table: str) -> None:
    """Tie `state` to the running pipeline's target, or refuse another's."""
    pipeline = dlt.current.pipeline()
    refuse_another_target(state, table, pipeline)
    target = _pipeline_target(pipeline)
    if target is not None:
        state["target"] = target


def _stored_width(state: dict[str, Any], default: timedelta) -> timedelta:
    """The window width the last run ended with, or `default`."""
    seconds = state.get("window_seconds")
    if isinstance(seconds, int | float) and seconds > 0:
        return timedelta(seconds=seconds)
    return default


def _stored_row_bytes(state: dict[str, Any]) -> float | None:
    """The rows' width the last run saw, in bytes of Arrow, if it saw any."""
    width = state.get("row_bytes")
    if isinstance(width, int | float) and not isinstance(width, bool) and width > 0:
        return float(width)
    return None


def _keep_plan(state: dict[str, Any], planner: WindowPlanner) -> None:
    """Store what the next run's planner starts from: width, rows' width."""
    state["window_seconds"] = planner.width.total_seconds()
    if planner.row_bytes is not None:
        state["row_bytes"] = round(planner.row_bytes)


class _TableSync:
    """One run of one table's resource: incremental or backfill."""

    def __init__(
        self,
        spec: TableSpec,
        settings: Settings,
        progress: Progress | None,
        read_ahead: ReadAhead | None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.progress = progress
        self.read_ahead = read_ahead
        self.windows = 0
        self.rows = 0
        self.requests = 0

    def run(self) -> Iterator[pa.RecordBatch]:
        """Read what this run should read, keeping the state up to date."""
        _refuse_replace(self.spec.name)
        state: dict[str, Any] = dlt.current.resource_state()
        _claim_target(state, self.spec.name)
        started = time.monotonic()
        mark = "watermark" if self.settings.backfill is None else "done_until"
        if self.settings.backfill is None:
            self._check_filters(state)
        else:
            self._check_backfill_filters(state)
        with _make_client(self.settings) as client:
            now = self._parked_now(mark) or _service_now(client, state)
            horizon = now - self.settings.settle
            if self.settings.backfill is None:
                yield from self._incremental(state, now, horizon)
                watermark = _stored_instant(state, "watermark")
                caught_up = watermark is not None and watermark >= horizon
            else:
                progress_state = self._backfill_state(state)
                yield from self._backfill(progress_state, now, horizon)
                watermark = _stored_instant(progress_state, "done_until")
                caught_up = bool(progress_state.get("finished"))
            requests = client.requests_made + self.requests

        self._report(
            TableSynced(
                table=self.spec.name,
                rows=self.rows,
                windows=self.windows,
                requests=requests,
                watermark=watermark,
                horizon=horizon,
                caught_up=caught_up,
                backfill=self.settings.backfill is not None,
                seconds=time.monotonic() - started,
            )
        )

    def _check_filters(self, state: dict[str, Any]) -> None:
        """Refuse other filters than the ones the watermark was reached with.

        The watermark says that every row stored before it has been read, but
        only through the filters of the runs that read it: rows that new
        filters keep and old ones did not would be left behind for good.
        """
        filters = table_filters(self.spec, self.settings)
        known = state.get("filters")
        if state.get("watermark") is None and known not in (None, filters):
            # Only a backfill has loaded rows so far, and this sync's merges
            # replace them as a backfill's would.
            message = _filters_differ(self.spec, known, filters, backfill=False)
            if not self.settings.accept_filter_change:
                raise ConfigurationError(message)
            logger.warning("Syncing %s with other filters, as asked.", self.spec.name)
        _check_watermark_inputs(
            state,
            "filters",
            filters,
            accept=self.settings.accept_filter_change,
            refusal=lambda known, watermark: _filters_changed(
                self.spec.name, known, filters, watermark
            ),
            going_on=f"Going on with new filters for {self.spec.name}",
        )

    def _check_backfill_filters(self, state: dict[str, Any]) -> None:
        """Refuse a backfill that filters otherwise than the watermark's runs.

        A backfill's rows replace every loaded row that shares their merge key,
        so one whose filters leave out rows the loaded ones kept would delete
        those rows and not load them again.
        """
        known = state.get("filters")
        filters = table_filters(self.spec, self.settings)
        if known is None:
            # The rows it loads are read so: later runs must know it.
            state["filters"] = filters
            return
        if known == filters:
            return
        message = _filters_differ(self.spec, known, filters, backfill=True)
        if not self.settings.accept_filter_change:
            raise ConfigurationError(message)
        logger.warning("Backfilling %s with other filters, as asked.", self.spec.name)

    def _incremental(
        self, state: dict[str, Any], now: datetime, horizon: datetime
    ) -> Iterator[pa.RecordBatch]:
        """Read new windows of `created_at` up to the horizon, one chunk."""
        settings = self.settings
        watermark = _stored_instant(state, "watermark")
        if watermark is None:
            watermark = _first_watermark(settings, now, self.spec.name)
            self._warn_if_beyond_retention(watermark, now, "the first sync")
            state["watermark"] = _iso(watermark)
        else:
            # After a long pause: the rows since have partly aged out.
            self._warn_if_beyond_retention(
                watermark, now, "the sync from its watermark"
            )

        reading = self._resume("watermark", watermark)
        end = _capped(horizon, watermark, settings.chunk_span(by_rows=self._chunked))
        if reading is None and end > watermark:
            planner = _planner(
                settings,
                watermark,
                end,
                state,
                settings.max_width,
                chunked=self._chunked,
            )
            query = _TableQuery(self.spec, settings, horizon=None)
            reading = _open_reading(
                planner, query.window_query, settings, end, now, self.spec
            )
        if reading is not None:
            yield from self._read(reading, state, "watermark")

        watermark = _stored_instant(state, "watermark")
        state["last_run_at"] = _iso(now)
        state["horizon"] = _iso(horizon)
        state["caught_up"] = watermark is not None and watermark >= horizon

    def _backfill_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """The progress of this backfill, kept apart from the watermark.

        Other ranges' finished backfills are forgotten: one asked for again
        starts over anyway, so the state keeps only the unfinished ones and
        this one, however many ranges a daily backfill goes through.
        """
        assert self.settings.backfill is not None
        start, end = self.settings.backfill
        key = f"{_iso(start)}/{_iso(end)}"
        backfills: dict[str, Any] = state.setdefault("backfills", {})
        finished = [
            name
            for name, kept in backfills.items()
            if name != key and kept.get("finished")
        ]
        for name in finished:
            del backfills[name]
        progress: dict[str, Any] = backfills.setdefault(key, {})
        if progress.get("finished"):
            # Asked for again once finished, a backfill reads its range again.
            progress.clear()
        progress.setdefault("done_until", _iso(start))
        progress.setdefault("finished", False)
        progress.setdefault("rows_loaded", 0)
        return progress

    def _backfill(
        self, progress: dict[str, Any], now: datetime, horizon: datetime
    ) -> Iterator[pa.RecordBatch]:
        """Re-read one chunk of the backfill's event-time range."""
        settings = self.settings
        assert settings.backfill is not None
        done_until = _stored_instant(progress, "done_until")
        assert done_until is not None
        span = settings.chunk_span(by_rows=self._chunked)
        # No row stored before the horizon has an event time much after it: a
        # range that goes further would only cost empty requests.
        latest = horizon + max(settings.lateness_ahead, INGEST_AHEAD) + BOUND_MARGIN
        end = _capped(min(settings.backfill[1], latest), done_until, span)
        if done_until == settings.backfill[0]:
            self._warn_if_beyond_retention(done_until, now, "the backfill")

        reading = self._resume("done_until", done_until)
        if reading is None and end > done_until:
            width = max_event_time_width()
            planner = _planner(
                settings,
                done_until,
                end,
                progress,
                width,
                chunked=self._chunked,
            )
            query = _TableQuery(self.spec, settings, horizon=horizon)
            reading = _open_reading(
                planner, query.window_query, settings, end, now, self.spec
            )
        if reading is not None:
            yield from self._read(reading, progress, "done_until")

        done = _stored_instant(progress, "done_until")
        progress["finished"] = done is not None and done >= settings.backfill[1]
        progress["last_run_at"] = _iso(now)

    def _parked_now(self, mark: str) -> datetime | None:
        """The clock of the reading the last chunk parked, if there is one."""
        if self.read_ahead is None:
            return None
        return self.read_ahead.parked_now(f"{self.spec.name}/{mark}")

    def _resume(self, mark: str, start: datetime) -> Reading | None:
        """The reading the last chunk parked, if it goes on from `start`."""
        if self.read_ahead is None:
            return None
        return self.read_ahead.take(f"{self.spec.name}/{mark}", start)

    def _read(
        self, reading: Reading, state: dict[str, Any], mark: str
    ) -> Iterator[pa.RecordBatch]:
        """Yield the reading's windows, moving `state[mark]` past each one.

        Under :func:`connector.run_sync`, the chunk ends where
        :meth:`_chunk_is_full` says, and the rest of the reading is parked for
        the next chunk, which run_sync starts at once.
        """

        def done(window: Window, rows: int) -> bool:
            self._done(window, rows, state, mark, reading.planner)
            full = self._chunk_is_full(reading.planner, window)
            return full and window.hi < reading.end

        start = _stored_instant(state, mark)
        last_chunk = self.read_ahead is not None and not self.read_ahead.parking
        if last_chunk and start is not None:
            # No chunk goes on from this one: reading past it would be waste.
            reading.planner.end_with_chunk(start)
        parked = False
        try:
            last = yield from _window_batches(reading, done)
            if last is not None:
                assert self.read_ahead is not None
                self.read_ahead.park(
                    f"{self.spec.name}/{mark}",
                    last.hi,
                    reading,
                    spool_rows=reading.planner.chunk_limit or self.settings.chunk_rows,
                )
                parked = True
        finally:
            self.requests += reading.uncounted_requests()
            if not parked:
                reading.close()

    def _chunk_is_full(self, planner: WindowPlanner, window: Window) -> bool:
        """Whether to end the chunk after `window`; only run_sync asks.

        With one reader, the planner cuts the chunks, sizing windows to fill
        them. With more, windows are planned before the ones ahead of them
        are read, so the chunk ends once it holds `chunk_rows` rows, or once
        a window of the size the planner aims at would take it past them.
        """
        if not self._chunked:
            return False
        if planner.chunk_rows is not None:
            return planner.closes_chunk(window)
        limit = planner.chunk_limit or self.settings.chunk_rows
        return self.rows + planner.target_rows > limit

    @property
    def _chunked(self) -> bool:
        """Whether this run reads in row chunks: under run_sync, which goes on."""
        return self.read_ahead is not None

    def _done(
        self,
        window: Window,
        rows: int,
        state: dict[str, Any],
        mark: str,
        planner: WindowPlanner,
    ) -> None:
        """Move the state past a window whose rows have all been yielded."""
        state[mark] = _iso(window.hi)
        _keep_plan(state, planner)
        state["rows_loaded"] = int(state.get("rows_loaded", 0)) + rows
        self.rows += rows
        self.windows += 1
        self._window_done(window, rows, mark)

    def _window_done(self, window: Window, rows: int, mark: str) -> None:
        """Log and report a window whose rows have all been yielded."""
        backfill = mark != "watermark"
        logger.info(
            "%s: %s window %s loaded %s rows; %s is now %s.",
            self.spec.name,
            "backfill" if backfill else "created_at",
            window,
            rows,
            "backfill progress" if backfill else "watermark",
            window.hi.isoformat(),
        )
        self._report(
            WindowLoaded(
                table=self.spec.name,
                window=window,
                rows=rows,
                watermark=None if backfill else window.hi,
                backfill=backfill,
            )
        )

    def _report(self, event: WindowLoaded | TableSynced) -> None:
        """Tell the progress callback, if there is one."""
        if self.progress is not None:
            self.progress(event)

    def _warn_if_beyond_retention(
        self, start: datetime, now: datetime, what: str
    ) -> None:
        """Warn when a read starts further back than Logfire keeps data."""
        if now - start > _RETENTION:
            logger.warning(
                "%s: %s starts at %s, more than 30 days before the "
                "service's now (%s): data that old is probably past retention "
                "and will not be found.",
                self.spec.name,
                what,
                start.isoformat(),
                now.isoformat(),
            )


def _service_now(client: LogfireClient, state: dict[str, Any]) -> datetime:
    """The service's clock, keeping how far it is from this machine's.

    `status`, which sends no request, measures lag by this machine's clock
    moved by that much. The offset is kept only when it moved by more than
    `_OFFSET_SLACK`: the clock comes in whole seconds, and a state changed
    on every run costs a load of its own in a run that finds nothing.
    """
    now = client.server_now()
    offset = round((now - datetime.now(UTC)).total_seconds())
    kept = state.get("clock_offset_seconds")
    if not isinstance(kept, int | float) or abs(kept - offset) > _OFFSET_SLACK:
        state["clock_offset_seconds"] = offset
    return now


def _capped(end: datetime, start: datetime, span: timedelta | None) -> datetime:
    """`end`, or `span` after `start` if that comes first."""
    return end if span is None else min(end, start + span)


def _first_sync() -> timedelta:
    """How far back the first sync starts when no start is given."""
    value = DEFAULTS["first_sync"]
    assert isinstance(value, timedelta)
    return value


def _first_watermark(settings: Settings, now: datetime, table: str) -> datetime:
    """Where the first sync of `table` starts: `start`, or a day before `now`.

    Raises:
        ConfigurationError: If `start` is well after the service's clock. The
            watermark would be stored there, and every later run, which goes
            on from it whatever its `start`, would load nothing until then.
    """
    if settings.start is None:
        return now - _first_sync()
    if settings.start > now + _FUTURE_START:
        raise ConfigurationError(
            f"start = {settings.start.isoformat()} is after the service's clock "
            f"({now.isoformat()}): the first sync of {table} would find nothing, "
            "and every later run would go on from there. Check the year, or "
            "leave start out to begin a day back. Nothing was stored."
        )
    return settings.start


class _TableQuery:
    """The SQL of a table's windows, with the settings' columns and filters.

    With a `horizon`, windows are on the table's event-time column (a
    backfill), and only rows stored before the horizon are read.
    """

    def __init__(
        self, spec: TableSpec, settings: Settings, *, horizon: datetime | None
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.horizon = horizon
        self.window_column = spec.cursor if horizon is None else spec.bound
        self.columns = _select_list(settings.columns.get(spec.name))
        self.filters = table_filters(spec, settings)

    def window_query(self, window: Window) -> WindowQuery:
        """What the pager needs to read `window`."""
        if self.horizon is None:
            low, high = created_at_scan(
                window, self.settings.lateness_back, self.settings.lateness_ahead
            )
        else:
            low, high = event_time_scan(window)
        conditions = [*_window_conditions(self.window_column, window), *self.filters]
        if self.horizon is not None:
            cursor = quote_identifier(self.spec.cursor)
            conditions.append(f"{cursor} < {timestamp_literal(self.horizon)}")

        build, count = _page_sql(
            self.columns, self.spec.name, conditions, self.spec.key
        )
        return WindowQuery(
            build=build,
            key=self.spec.key,
            window=window,
            window_column=self.window_column,
            min_timestamp=low,
            max_timestamp=high,
            label=self.spec.name,
            count=count,
        )


def _page_sql(
    columns: str, source: str, conditions: list[str], key: Sequence[KeyColumn]
) -> tuple[Callable[[str | None, int], str], Callable[[str | None], str]]:
    """The SQL of a window's pages and of its count, from the rows' `source`.

    Both take the pager's extra condition (a keyset condition, or None); the
    pages also take their row limit.
    """

    def where(extra: str | None) -> str:
        held = conditions if extra is None else [*conditions, f"({extra})"]
        return " AND ".join(held)

    def build(extra: str | None, limit: int) -> str:
        return (
            f"SELECT {columns}\nFROM {source}\nWHERE {where(extra)}\n"
            f"ORDER BY {order_by(key)}\nLIMIT {limit}"
        )

    def count(extra: str | None) -> str:
        return f"SELECT COUNT(*) AS row_count\nFROM {source}\nWHERE {where(extra)}"

    return build, count


def _check_watermark_inputs(
    state: dict[str, Any],
    key: str,
    current: Any,
    *,
    accept: bool,
    refusal: Callable[[Any, str], str],
    going_on: str,
) -> None:
    """Refuse `current` if the watermark was reached with another `state[key]`.

    State from before `key` was kept has nothing to compare, so it takes
    `current` as it is. With `accept`, the refusal is logged and the run goes on.
    """
    known = state.get(key)
    watermark = state.get("watermark")
    if watermark is not None and known is not None and known != current:
        message = refusal(known, watermark)
        if not accept:
            raise ConfigurationError(message)
        logger.warning("%s from %s, as asked.", going_on, watermark)
    state[key] = current


def _shown_filters(filters: Sequence[str]) -> str:
    return " AND ".join(" ".join(part.split()) for part in filters) or "none"


def _filters_differ(
    spec: TableSpec, loaded: Sequence[str], new: Sequence[str], *, backfill: bool
) -> str:
    """The error for a backfill or first sync whose filters are not the loaded rows'.

    Both replace every loaded row that shares a merge key with a row they read.
    """
    merge_key = ", ".join(spec.merge_key)
    run, other = ("backfill", "sync") if backfill else ("first sync", "backfill")
    command = "backfill" if backfill else "run"
    return (
        f"The {run} of {spec.name} filters with {_shown_filters(new)}, but the "
        f"rows loaded so far were read with {_shown_filters(loaded)}. A {run} "
        f"replaces every loaded row that shares ({merge_key}) with a row it "
        "reads, so loaded rows that its filters leave out could be deleted and "
        f"not loaded again. Give it the same filters as the {other}. If its "
        f"filters keep every row the {other}'s kept (they are wider), pass "
        f"accept_filter_change=true (`--accept-filter-change` to `logfire-sync "
        f"{command}`, or to `verify --repair`)."
    )


def _filters_changed(
    table: str, before: Sequence[str], after: Sequence[str], watermark: str
) -> str:
    """The error for filters that differ from the ones the watermark was read with."""
    return (
        f"The filters of {table} are not the ones its rows up to the watermark "
        f"({watermark}) were read with: they were {_shown_filters(before)}, and "
        f"are now {_shown_filters(after)}. Rows stored before the watermark that "
        "only the new filters keep would never be loaded. To load them, backfill "
        "the event times up to now with the new filters (`logfire-sync backfill "
        "--start ... --end ... --accept-filter-change`; rows already loaded "
        "merge into one copy), then run once with accept_filter_change=true "
        "(`logfire-sync run --accept-filter-change`). To apply the new filters "
        "only from the watermark on, just run once with it."
    )


def _select_list(columns: Sequence[str] | None) -> str:
    """The SELECT list: the chosen columns, or every column."""
    if not columns:
        return "*"
    return ", ".join(quote_identifier(name) for name in columns)


def _window_conditions(column: str, window: Window) -> list[str]:
    """The SQL that keeps rows of `column` within ``[lo, hi)``."""
    name = quote_identifier(column)
    return [
        f"{name} >= {timestamp_literal(window.lo)}",
        f"{name} < {timestamp_literal(window.hi)}",
    ]


def table_filters(spec: TableSpec, settings: Settings) -> list[str]:
    """The SQL conditions of the settings' filters for one table.

    Every read of the table applies them, and so does `logfire-sync verify`.
    """
    conditions = []
    if settings.service_names:
        conditions.append(f"service_name IN {in_list(settings.service_names)}")
    if settings.environments:
        condition = f"deployment_environment IN {in_list(settings.environments)}"
        if "" in settings.environments:
            condition = f"({condition} OR deployment_environment IS NULL)"
        conditions.append(condition)
    if spec.name == "records" and settings.span_names:
        conditions.append(f"span_name IN {in_list(settings.span_names)}")
    if spec.name == "records" and settings.min_level is not None:
        conditions.append(f"level >= {settings.min_level}")
    where = settings.where.get(spec.name)
    if where:
        # Line breaks keep a trailing `--` comment from swallowing the rest.
        conditions.append(f"(\n{where}\n)")
    return conditions


def logfire_sql_resource(
    name: str,
    sql: str,
    cursor_column: str,
    *,
    primary_key: str | Sequence[str] | None = None,
    read_token: str | None = None,
    base_url: str | None = None,
    start: str | datetime | None = None,
    initial_window: str | float | None = None,
    settle: str | float | None = None,
    lateness_back: str | float | None = None,
    lateness_ahead: str | float | None = None,
    page_size: int | None = None,
    target_pages: int | None = None,
    timeout: str | float | None = None,
    max_attempts: int | None = None,
    max_retry_seconds: str | float | None = None,
    chunk: str | float | None = None,
    require_end_marker: bool | None = None,
    verify_counts: bool | None = None,
    max_requests_per_minute: int | None = None,
    accept_query_change: bool = False,
    progress: Progress | None = None,
) -> DltResource:
    """A resource that syncs the result of any query by a timestamp cursor.

    The query must be a ``SELECT`` (or ``WITH ... SELECT``) whose result has
    `cursor_column`, a timestamp. It is read in windows of that column the
    way the tables are read by `created_at`::

        SELECT * FROM (<sql>) AS q
        WHERE cursor >= lo AND cursor < hi [AND keyset condition]
        ORDER BY cursor, primary_key... LIMIT page_size

    DataFusion keeps an outer ``ORDER BY`` with ``LIMIT`` over a subquery (only
    an inner ``ORDER BY`` is dropped), so this pages correctly.

    The request's `min_timestamp` and `max_timestamp` bound the table's own
    time column (`start_timestamp` for records, `recorded_timestamp` for
    metrics): a window ``[lo, hi)`` scans ``[lo - lateness_back, hi +
    lateness_ahead]``, so these must cover how far that column can lie from
    the cursor. The defaults (24 h back, 1 h ahead) suit a `created_at`
    cursor and hourly or finer buckets of event time.

    A cursor value is read once, after `settle`. For rollups of event time,
    whose buckets keep changing while late spans arrive (up to a day), set
    `settle` to at least ``lateness_back`` plus 5 minutes, e.g. ``"24h5m"``.

    Merge semantics: with `primary_key`, rows are merged (`delete-insert`) on
    it, so a row read again replaces the old one; without, rows are appended,
    each window being read exactly once. Pages are ordered by the cursor and
    then the primary key, whose columns must not be null; without a primary
    key, more than 10,000 rows sharing one cursor value fail the sync.

    The resource's state remembers the query, cursor and primary key its
    watermark was reached with. A run with another one fails before any
    request, because the rows before the watermark came from the old query.

    Args:
        name: The resource and table name.
        sql: The user's query.
        cursor_column: The timestamp column of the result windows are cut on.
        primary_key: Columns that identify a row of the result.
        read_token: A Logfire read token [``sources.logfire.read_token`` from
            dlt's secrets].
        base_url: As in :func:`logfire_source`; so are the other options.
            Those left out are read from ``[sources.logfire]`` in dlt's
            config, or its environment variables, as the source's are.
        start: As in :func:`logfire_source`.
        initial_window: As in :func:`logfire_source`.
        settle: As in :func:`logfire_source`.
        lateness_back: As in :func:`logfire_source`.
        lateness_ahead: As in :func:`logfire_source`.
        page_size: As in :func:`logfire_source`.
        target_pages: As in :func:`logfire_source`.
        timeout: As in :func:`logfire_source`.
        max_attempts: As in :func:`logfire_source`.
        max_retry_seconds: As in :func:`logfire_source`.
        chunk: As in :func:`logfire_source`.
        require_end_marker: As in :func:`logfire_source`.
        verify_counts: As in :func:`logfire_source`.
        max_requests_per_minute: As in :func:`logfire_source`.
        accept_query_change: Go on from the watermark with a query, cursor or
            primary key other than the one it was reached with.
        progress: As in :func:`logfire_source`.

    Raises:
        ConfigurationError: For any bad option, before any request is sent.
    """
    token = read_token if read_token is not None else _configured_token()
    given: dict[str, object] = {
        "base_url": base_url,
        "start": start,
        "initial_window": initial_window,
        "settle": settle,
        "lateness_back": lateness_back,
        "lateness_ahead": lateness_ahead,
        "page_size": page_size,
        "target_pages": target_pages,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "max_retry_seconds": max_retry_seconds,
        "chunk": chunk,
        "require_end_marker": require_end_marker,
        "verify_counts": verify_counts,
        "max_requests_per_minute": max_requests_per_minute,
    }
    options = {key: _configured(key, value) for key, value in given.items()}
    settings = build_settings(read_token=token, tables=["records"], **options)
    query = _UserQuery(name, sql, cursor_column, _key_names(primary_key), settings)

    def rows() -> Iterator[pa.RecordBatch]:
        sync = _QuerySync(query, settings, progress)
        yield from sync.run(accept_query_change=accept_query_change)

    keys = list(query.primary_key)
    disposition: TWriteDispositionConfig = "append"
    if keys:
        disposition = {"disposition": "merge", "strategy": "delete-insert"}
    return dlt.resource(
        rows(),
        name=query.name,
        table_name=query.name,
        write_disposition=disposition,
        primary_key=keys or [],
    )


def _configured_token() -> str:
    """The read token from dlt's secrets, for the SQL resource."""
    try:
        token = dlt.secrets["sources.logfire.read_token"]
    except KeyError:
        token = None
    if not isinstance(token, str):
        raise ConfigurationError(
            "No read token: pass read_token, or set sources.logfire.read_token in "
            ".dlt/secrets.toml (or SOURCES__LOGFIRE__READ_TOKEN)."
        )
    return token


def _configured(option: str, given: object) -> object:
    """An option of the SQL resource: as given, or from dlt's config.

    logfire_source gets its options from ``[sources.logfire]`` through dlt;
    the SQL resource, a plain function, reads the same keys itself.
    """
    if given is not None:
        return given
    value: object = dlt.config.get(f"sources.logfire.{option}")
    return value


def _key_names(primary_key: str | Sequence[str] | None) -> tuple[str, ...]:
    """The primary key as a tuple of column names."""
    if primary_key is None:
        return ()
    if isinstance(primary_key, str):
        return (primary_key,)
    return tuple(primary_key)


class _UserQuery:
    """A user's query, wrapped for windows and keyset paging."""

    def __init__(
        self,
        name: str,
        sql: str,
        cursor_column: str,
        primary_key: tuple[str, ...],
        settings: Settings,
    ) -> None:
        self.name = _resource_name(name)
        self.sql = _user_sql(sql)
        self.cursor = _plain_column(cursor_column, "cursor_column")
        self.primary_key = tuple(
            _plain_column(column, "primary_key") for column in primary_key
        )
        self.key = tuple(
            KeyColumn(column, "text")
            for column in dict.fromkeys([self.cursor, *self.primary_key])
        )
        self.settings = settings

    def fingerprint(self) -> dict[str, Any]:
        """What the rows depend on, as kept in the resource's state."""
        return {
            "sql": self.sql,
            "cursor_column": self.cursor,
            "primary_key": list(self.primary_key),
        }

    def window_query(self, window: Window) -> WindowQuery:
        """What the pager needs to read `window` of the cursor."""
        low, high = created_at_scan(
            window, self.settings.lateness_back, self.settings.lateness_ahead
        )
        conditions = _window_conditions(self.cursor, window)

        build, count = _page_sql("*", f"(\n{self.sql}\n) AS q", conditions, self.key)
        return WindowQuery(
            build=build,
            key=self.key,
            window=window,
            window_column=self.cursor,
            min_timestamp=low,
            max_timestamp=high,
            label=self.name,
            count=count,
        )


def _query_changed(
    name: str, before: dict[str, Any], after: dict[str, Any], watermark: str
) -> str:
    """The error for a query other than the one the watermark was reached with."""
    changed = [key for key in after if before.get(key) != after[key]]
    shown = "; ".join(
        _shown_change(key, before.get(key), after[key]) for key in changed
    )
    return (
        f"The SQL resource {name} is not the one its rows up to the watermark "
        f"({watermark}) were read with: {shown}. Those rows came from the old "
        "query, so going on would mix the two in one table. To reload every "
        "row with the new query, drop the resource's table and state: run once "
        'with pipeline.run(resource, refresh="drop_resources") (or `dlt '
        f"pipeline <pipeline> drop {name}`), or give the resource a new name. To "
        "keep the old rows and use the new query from the watermark on, run "
        "once with accept_query_change=True."
    )


def _shown_change(key: str, before: object, after: object) -> str:
    """How one part of a query's fingerprint changed, on one line."""
    if isinstance(before, str) and isinstance(after, str):
        before, after = " ".join(before.split()), " ".join(after.split())
        if before == after:
            return f"{key} differs only in its spacing or line breaks"
    return f"{key} was {before!r}, is now {after!r}"


def _resource_name(name: object) -> str:
    """The SQL resource's name, fit for a table."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(
            f"The resource name {name!r} is not a plain name. Use letters, digits "
            "and underscores, such as 'hourly_errors'."
        )
    return name


def _user_sql(sql: object) -> str:
    """The user's query, which must be one SELECT."""
    if not isinstance(sql, str) or not _SELECT.match(sql):
        raise ConfigurationError(
            "The query of a SQL resource must be a SELECT (or WITH ... SELECT) "
            f"statement, not {sql!r}."
        )
    text = sql.strip()
    # A trailing semicolon would end the statement inside the subquery.
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def _plain_column(name: object, option: str) -> str:
    """A column of the user's result named in an option."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(
            f"{option} = {name!r} is not a plain column name. Alias the column "
            "in the query (AS hour) and name the alias."
        )
    return name


class _QuerySync:
    """One run of a SQL resource: new windows of its cursor, one chunk."""

    def __init__(
        self, query: _UserQuery, settings: Settings, progress: Progress | None
    ) -> None:
        self.query = query
        self.settings = settings
        self.progress = progress
        self.windows = 0
        self.rows = 0
        self.requests = 0

    def run(self, *, accept_query_change: bool = False) -> Iterator[pa.RecordBatch]:
        """Read the cursor's new windows up to the horizon, one chunk."""
        _refuse_replace(self.query.name)
        state: dict[str, Any] = dlt.current.resource_state()
        _claim_target(state, self.query.name)
        self._check_query(state, accept_query_change)
        started = time.monotonic()
        settings = self.settings
        with _make_client(settings) as client:
            now = client.server_now()
            horizon = now - settings.settle
            watermark = _stored_instant(state, "watermark")
            if watermark is None:
                watermark = _first_watermark(settings, now, self.query.name)
                state["watermark"] = _iso(watermark)

            end = _capped(horizon, watermark, settings.chunk_span(by_rows=False))
            if end > watermark:
                planner = _planner(settings, watermark, end, state, settings.max_width)

                reading = _open_reading(planner, self.query.window_query, settings, end)
                try:
                    yield from self._read(reading, state)
                finally:
                    self.requests += reading.uncounted_requests()
                    reading.close()
            requests = client.requests_made + self.requests

        final = _stored_instant(state, "watermark")
        state["last_run_at"] = _iso(now)
        state["caught_up"] = final is not None and final >= horizon
        if self.progress is not None:
            self.progress(
                TableSynced(
                    table=self.query.name,
                    rows=self.rows,
                    windows=self.windows,
                    requests=requests,
                    watermark=final,
                    horizon=horizon,
                    caught_up=bool(state["caught_up"]),
                    backfill=False,
                    seconds=time.monotonic() - started,
                )
            )

    def _check_query(self, state: dict[str, Any], accept: bool) -> None:
        """Refuse another query than the one the watermark was reached with.

        The rows before the watermark are the old query's: going on with a new
        one would leave a table that mixes the two, with nothing to show it.
        """
        query = self.query.fingerprint()
        _check_watermark_inputs(
            state,
            "query",
            query,
            accept=accept,
            refusal=lambda known, watermark: _query_changed(
                self.query.name, known, query, watermark
            ),
            going_on=f"Going on with a new query for {self.query.name}",
        )

    def _read(self, reading: Reading, state: dict[str, Any]) -> Iterator[pa.Table]:
        """Yield the reading's windows, moving the watermark past each one."""

        def done(window: Window, rows: int) -> bool:
            _keep_plan(state, reading.planner)
            self._window_done(state, window, rows)
            return False

        yield from _window_batches(reading, done)

    def _window_done(self, state: dict[str, Any], window: Window, rows: int) -> None:
        """Move the watermark past a window whose rows were all yielded."""
        state["watermark"] = _iso(window.hi)
        state["rows_loaded"] = int(state.get("rows_loaded", 0)) + rows
        self.rows += rows
        self.windows += 1
        logger.info(
            "%s: window %s loaded %s rows; watermark is now %s.",
            self.query.name,
            window,
            rows,
            window.hi.isoformat(),
        )
        if self.progress is not None:
            self.progress(
                WindowLoaded(self.query.name, window, rows, window.hi, backfill=False)
            )


def _planner(
    settings: Settings,
    start: datetime,
    end: datetime,
    state: dict[str, Any],
    max_width: timedelta,
    *,
    chunked: bool = False,
) -> WindowPlanner:
    """A planner over ``[start, end)`` that resumes the last run's width."""
    return WindowPlanner(
        start,
        end,
        width=_stored_width(state, settings.initial_window),
        max_width=max_width,
        target_rows=_window_rows(settings, chunked=chunked),
        page_rows=settings.page_size,
        concurrency=settings.concurrency,
        chunk_rows=settings.chunk_rows if chunked else None,
        page_bytes=settings.page_bytes,
        chunk_bytes=settings.chunk_bytes if chunked else None,
        row_bytes=_stored_row_bytes(state),
    )


def _window_rows(settings: Settings, *, chunked: bool) -> int:
    """The rows a window aims at: `target_pages` pages.

    In row chunks, no more than a `concurrency`-th of `chunk_rows` (and no
    less than a page): windows are read at once only within a chunk and its
    read-ahead, so a chunk of one big window would leave the other readers idle.
    """
    rows = settings.target_pages * settings.page_size
    if not chunked:
        return rows
    share = settings.chunk_rows // settings.concurrency
    return min(rows, max(settings.page_size, share))


def _regrouped(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The batches as tables of about `rows` rows each, without copying.

    The service streams a page in batches of a few thousand rows; dlt spends
    as much on each item it is handed whatever its size (schema checks, one
    Parquet row group), so it gets a page's worth at a time.
    """
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if held and not batch.schema.equals(held[0].schema):
            yield pa.Table.from_batches(held)
            held, count = [], 0
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held)
            held, count = [], 0
    if held:
        yield pa.Table.from_batches(held)


def _open_reading(
    planner: WindowPlanner,
    window_query: Callable[[Window], WindowQuery],
    settings: Settings,
    end: datetime,
    now: datetime | None = None,
    spec: TableSpec | None = None,
) -> Reading:
    """Start reading the planner's windows, with a client of their own.

    The client belongs to the reading rather than to one run of the resource,
    as a reading parked between chunks outlives the run that started it. With
    `spec`, its JSON columns are made safe to load as JSON.
    """
    json_columns = frozenset() if spec is None else spec.json_columns
    loose = frozenset() if spec is None else spec.loose_json_columns
    if settings.parse_json:
        loose = json_columns
    json_like = json_columns | (frozenset() if spec is None else spec.list_columns)
    types = None if spec is None else loaded_types(spec)
    warned: set[str] = set()
    emptied: set[str] = set()
    client = _make_client(settings)
    stats = WindowStats()

    def narrow(window: Window, rows: int, reached: datetime) -> WindowQuery | None:
        narrower = planner.narrow(window, rows, reached)
        return None if narrower is None else window_query(narrower)

    def read(window: Window) -> Iterator[pa.RecordBatch]:
        # Shaping batches here runs it in the reader threads, off dlt's thread.
        # Each page asks for rows fitted to their width as the last ones had it.
        query = window_query(window)
        page_size = planner.page_rows
        pages = read_window(
            client,
            query,
            page_size=lambda: planner.page_rows,
            stats=stats,
            verify_counts=settings.verify_counts,
            narrow=narrow,
            marker_required=settings.require_end_marker,
        )
        if settings.concurrency == 1:
            pages = _fetched_ahead(pages)
        shaped = (prepare_batch(b, json_columns, loose, types) for b in pages)
        if settings.replace_nul:
            shaped = (_nul_free(batch, window, json_like, warned) for batch in shaped)
        if settings.warn_empty_text:
            shaped = (_noting_empty_text(batch, window, emptied) for batch in shaped)
        yield from _regrouped(shaped, page_size)

    _import_pandas()
    items = read_windows(planner, read, concurrency=settings.concurrency)
    return Reading(items, end, planner, client, now=now)


def _fetched_ahead(pages: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A window's pages, read in a thread of their own while they are shaped.

    A page's request waits for the last key of the page before it, so one
    reader that shaped each page before asking for the next would add the
    shaping to every request's wait. With more readers, their waits overlap
    already and the cores are busy: a thread more for each costs more than it
    saves (four readers into Parquet took 8% longer, with 150 MB more).
    """
    name = f"{threading.current_thread().name}-pages"
    return run_ahead(pages, depth=_PAGES_AHEAD, name=name)


def _import_pandas() -> None:
    """Import pandas, where it is installed, before any reader thread starts.

    pyarrow imports it on its first conversion of a timestamp to Python,
    which a reader would do, while dlt looks for it in ``sys.modules`` on its
    own thread: finding it half imported, dlt's extract fails.
    """
    with contextlib.suppress(ImportError):
        importlib.import_module("pandas")


def _nul_free(
    batch: pa.RecordBatch,
    window: Window,
    json_columns: frozenset[str],
    warned: set[str],
) -> pa.RecordBatch:
    """`batch` with NUL characters replaced, warning once for each column."""
    cleaned, columns = replace_nul_characters(batch, json_columns)
    for name in columns:
        if name not in warned:
            warned.add(name)
            logger.warning(
                "Column %s holds NUL characters (first in the window %s), which "
                "the destination cannot store; they are loaded as U+FFFD.",
                name,
                window,
            )
    return cleaned


def _noting_empty_text(
    batch: pa.RecordBatch, window: Window, warned: set[str]
) -> pa.RecordBatch:
    """`batch` as it is, after a warning for each new column that holds ''."""
    for index, field in enumerate(batch.schema):
        text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
        if not text or field.name in warned:
            continue
        if pc.any(pc.equal(batch.column(index), "")).as_py():
            warned.add(field.name)
            logger.warning(
                "Column %s holds empty strings (first in the window %s). The "
                "destination's loader stores them as NULL: dlt copies rows into "
                "PostgreSQL as CSV, where an empty value of a nullable column "
                "reads as NULL. Read NULL there as '' where the two must not "
                "differ, e.g. COALESCE(%s, '').",
                field.name,
                window,
                field.name,
            )
    return batch


def _window_batches(
    reading: Reading, done: Callable[[Window, int], bool]
) -> Generator[pa.Table, None, Window | None]:
    """Yield the reading's rows, calling ``done(window, rows)`` after each window.

    Stops after the first window for which `done` returns true, and returns
    that window; returns None once the reading is exhausted.
    """
    rows = 0
    for window, batch in reading.items:
        if batch is not None:
            rows += batch.num_rows
            yield batch
            continue
        if done(window, rows):
            return window
        rows = 0
    return None
