"""Runs query requests against the store with Apache DataFusion, as Logfire does.

Every request gets its own DataFusion session. In it, `records` and `metrics` are
views over the store's batches that keep only what the request may see: rows
already visible at the clock's now, inside the request's time bounds and
environments, without the hidden `_visible_at` column. The row cap is applied to
the query's own plan, which keeps its ORDER BY, and results stream out batch by
batch.

Handing thousands of Arrow arrays to DataFusion costs about 70 microseconds a batch
of the full schema, so it happens once: each table keeps its batches in a few
DataFusion memory tables (segments) shared by all requests, and only batches the
store appended since are added, with small segments merged as they pile up.

Memory tables keep no statistics, so every query would scan every stored row. A
segment therefore stops growing at about 130,000 rows and remembers the range of
its timestamp columns; each query is planned first over empty stand-ins, and only
the segments that meet the time ranges its plan filters on are handed to it (see
`sandbox.pruning`). Stored in `created_at` order, as generated data is, a query
on an hour of a day reads an hour's segments. Within them, a batch sorted on a
bounded column is cut to the bounded rows by binary search, and the cut pieces
are handed over for that query alone: a page that starts after a cursor does
not filter the rows before it. A query that keeps only its first rows in the
stored order is run first over a prefix of it (see `sandbox.firstrows`), so
that a page does not sort the rest of its window.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import datafusion
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import DataFrame, Expr, SessionConfig, SessionContext, SQLOptions, col
from datafusion import functions as f
from datafusion.catalog import Table
from datafusion.record_batch import RecordBatchStream

from sandbox import firstrows, functions, pruning, schema
from sandbox.clock import Clock
from sandbox.store import Store, stored_schema

logger = logging.getLogger(__name__)

_SLICE_ROWS = 65_536
"""Stored batches longer than this reach DataFusion in slices of this many rows."""

_SEGMENT_SLICES = 2
"""Segments stop growing at this many slices, so that queries can skip most."""

_PROBE_PREFIX = "__sandbox_probe_"
"""The names of the empty stand-ins a query is first planned over."""

_ROWS_PREFIX = "__sandbox_rows_"
"""The names of the cut segments a query reads, in its own session."""

_PREFIX_TRIES: Final = (1.25, 16)
"""A query that keeps its first rows in a stored order is tried over prefixes
holding this many times the rows it keeps, in turn, before all its rows (see
`sandbox.firstrows`)."""


@dataclass(frozen=True)
class QueryRequest:
    """One query, with the options of Logfire's query API."""

    sql: str
    min_timestamp: datetime
    max_timestamp: datetime | None
    limit: int
    timezone: str | None = None
    environments: tuple[str, ...] | None = None
    explain: bool = False


@dataclass
class QueryResult:
    """A query's result: its schema at once, its rows as they are computed."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    plans: str | None


# The name is part of the contract with the HTTP layer.
class QueryFailed(Exception):  # noqa: N818
    """The SQL failed: the message is DataFusion's, or says what to change."""


_ARROW_OPERATOR_HINT = (
    "The sandbox has no -> or ->> operator: write json_get(column, 'key') or "
    "json_as_text(column, 'key') instead."
)


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Report DataFusion's errors, raised as plain exceptions, as QueryFailed."""
    try:
        yield
    except QueryFailed:
        raise
    except Exception as error:
        message = str(error)
        if "Operator ->" in message:
            message = f"{message}. {_ARROW_OPERATOR_HINT}"
        raise QueryFailed(message) from error


@dataclass(frozen=True)
class _Segment:
    """A run of a table's stored batches, handed to DataFusion as one table.

    `ranges` holds the least and greatest microseconds of each prunable
    column's non-null values; `orders` holds, for each batch, the microseconds
    of the prunable columns it is sorted on and has no null in.
    """

    batches: tuple[pa.RecordBatch, ...]
    table: Table
    slice_count: int
    ranges: dict[str, pruning.Bounds]
    orders: tuple[dict[str, npt.NDArray[np.int64]], ...]


def _prunable(table_name: str) -> tuple[str, ...]:
    """The timestamp columns whose ranges a segment remembers."""
    return ("created_at", schema.BOUND_COLUMN[table_name], schema.VISIBLE_AT)


def _ranges(
    table_name: str, batches: Sequence[pa.RecordBatch]
) -> dict[str, pruning.Bounds]:
    ranges: dict[str, pruning.Bounds] = {}
    for name in _prunable(table_name):
        lows, highs = [], []
        for batch in batches:
            bounds = pc.min_max(batch.column(name))
            if bounds["min"].is_valid:
                lows.append(bounds["min"].value)
                highs.append(bounds["max"].value)
        ranges[name] = (min(lows), max(highs)) if lows else (None, None)
    return ranges


def _orders(table_name: str, batch: pa.RecordBatch) -> dict[str, npt.NDArray[np.int64]]:
    """The microseconds of the prunable columns `batch` is sorted on, nulls aside."""
    orders = {}
    for name in _prunable(table_name):
        column = batch.column(name)
        if column.null_count:
            continue
        micros = column.view(pa.int64()).to_numpy()
        if bool(np.all(micros[1:] >= micros[:-1])):
            orders[name] = micros
    return orders


def _slices(batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    return [
        batch.slice(offset, _SLICE_ROWS)
        for offset in range(0, batch.num_rows, _SLICE_ROWS)
    ]


def _memory_table(table_name: str, batches: Sequence[pa.RecordBatch]) -> _Segment:
    slices = [piece for batch in batches for piece in _slices(batch)]
    empty = pa.RecordBatch.from_pylist([], schema=stored_schema(table_name))
    context = SessionContext()
    context.register_record_batches("segment", [slices or [empty]])
    table = context.table_provider("segment")
    ranges = _ranges(table_name, batches)
    orders = tuple(_orders(table_name, batch) for batch in batches)
    return _Segment(tuple(batches), table, len(slices), ranges, orders)


def _slice_count(batch: pa.RecordBatch) -> int:
    rows = int(batch.num_rows)
    return max(1, -(-rows // _SLICE_ROWS))


def _groups(batches: Sequence[pa.RecordBatch]) -> list[list[pa.RecordBatch]]:
    """`batches` in runs of at most `_SEGMENT_SLICES` slices, unless one is more."""
    groups: list[list[pa.RecordBatch]] = []
    size = 0
    for batch in batches:
        count = _slice_count(batch)
        if not groups or size + count > _SEGMENT_SLICES:
            groups.append([])
            size = 0
        groups[-1].append(batch)
        size += count
    return groups


class _TableCache:
    """DataFusion tables over one stored table's batches, extended as it grows."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._empty = _memory_table(table_name, [])

    @property
    def empty(self) -> _Segment:
        """A segment with no rows, of the table's schema."""
        return self._empty

    def segments(self, batches: Sequence[pa.RecordBatch]) -> list[_Segment]:
        """Segments holding exactly `batches`, in order; none for no batches."""
        with self._lock:
            segments = self._kept(batches)
            covered = sum(len(segment.batches) for segment in segments)
            for group in _groups(batches[covered:]):
                segments.append(_memory_table(self._table_name, group))
                segments = self._merged(segments)
            self._segments = segments
            return list(segments)

    def _kept(self, batches: Sequence[pa.RecordBatch]) -> list[_Segment]:
        """The cached segments that still match the start of `batches`."""
        kept: list[_Segment] = []
        position = 0
        for segment in self._segments:
            end = position + len(segment.batches)
            current = batches[position:end]
            if len(current) < len(segment.batches) or any(
                mine is not theirs
                for mine, theirs in zip(segment.batches, current, strict=True)
            ):
                break
            kept.append(segment)
            position = end
        return kept

    def _merged(self, segments: list[_Segment]) -> list[_Segment]:
        """Merge trailing segments until each is smaller than the one before.

        Like a binary counter, this keeps the number of small segments
        logarithmic in the number of batches, and each batch is handed over
        again only a logarithmic number of times. Segments stop merging at
        `_SEGMENT_SLICES` slices, so that queries can leave most of them out.
        """
        while (
            len(segments) >= 2
            and segments[-1].slice_count >= segments[-2].slice_count
            and segments[-1].slice_count + segments[-2].slice_count <= _SEGMENT_SLICES
        ):
            merged = segments[-2].batches + segments[-1].batches
            segments[-2:] = [_memory_table(self._table_name, merged)]
            logger.debug(
                "Merged %s batches of %s into one segment.",
                len(merged),
                self._table_name,
            )
        return segments


def _needed(
    segments: list[_Segment], scans: list[pruning.ScanRanges] | None
) -> list[_Segment]:
    """The segments that can hold rows the scans read; all without scans."""
    if scans is None:
        return segments
    return [segment for segment in segments if pruning.needed(segment.ranges, scans)]


def _narrowed(
    segment: _Segment, bounds: pruning.ScanRanges
) -> list[pa.RecordBatch] | None:
    """The segment's rows within `bounds`; None if no row falls outside.

    Only batches sorted on a bounded column are cut, by binary search, so
    that a query on the rows after a cursor does not filter a whole segment.
    """
    if not bounds:
        return None
    pieces, cut = [], False
    for batch, orders in zip(segment.batches, segment.orders, strict=True):
        start, stop = 0, int(batch.num_rows)
        for column, column_bounds in bounds.items():
            micros = orders.get(column)
            if micros is None:
                continue
            low, high = _within(micros, column_bounds)
            start, stop = max(start, low), min(stop, high)
        cut = cut or start > 0 or stop < batch.num_rows
        if start < stop:
            pieces.append(batch.slice(start, stop - start))
    return pieces if cut else None


def _within(micros: npt.NDArray[np.int64], bounds: pruning.Bounds) -> tuple[int, int]:
    """The start and stop of the sorted `micros` that lie within `bounds`."""
    low, high = bounds
    start = 0 if low is None else int(np.searchsorted(micros, low, side="left"))
    stop = (
        len(micros)
        if high is None
        else int(np.searchsorted(micros, high, side="right"))
    )
    return start, stop


@dataclass(frozen=True)
class _Probe:
    """What planning over the stand-ins told about a query."""

    scans: dict[str, list[pruning.ScanRanges]]
    first: firstrows.FirstRows | None


def _read_plan(
    plan: Any, plan_text: str, stand_ins: dict[str, tuple[str, ...]]
) -> _Probe:
    """What a plan over the stand-ins tells, each part apart.

    DataFusion's Python binding cannot show every plan node and expression:
    where one part cannot be read, it is left empty and the other stands.
    """
    try:
        found = pruning.scan_ranges(plan, plan_text, stand_ins)
    except Exception:
        found = {}
    try:
        first = firstrows.first_rows(plan, plan_text, stand_ins)
    except Exception:
        first = None
    scans = {name[len(_PROBE_PREFIX) :]: ranges for name, ranges in found.items()}
    return _Probe(scans, first)


@dataclass(frozen=True)
class _Prefix:
    """A table's rows before `cut` on `column`, with every unsorted batch."""

    table: str
    column: str
    cut: int
    tag: str

    def bounds(self, bounds: pruning.ScanRanges) -> pruning.ScanRanges:
        """`bounds` with the column held below the cut."""
        low, high = bounds.get(self.column, (None, None))
        below = self.cut - 1 if high is None else min(high, self.cut - 1)
        return {**bounds, self.column: (low, below)}

    def meets(self, segment: _Segment) -> bool:
        """Whether the segment can hold a row of the prefix."""
        least, _ = segment.ranges.get(self.column, (None, None))
        return least is None or least < self.cut


def _cut_point(
    segments: list[_Segment], bounds: pruning.ScanRanges, column: str, rows: int
) -> int | None:
    """A time before which the sorted rows within `bounds` number about `rows`.

    None when they are no more than `rows`: a prefix would hold them all.
    """
    column_bounds = bounds.get(column, (None, None))
    values = []
    for segment in segments:
        for orders in segment.orders:
            micros = orders.get(column)
            if micros is None:
                continue
            start, stop = _within(micros, column_bounds)
            values.append(micros[start:stop])
    if sum(len(part) for part in values) <= rows:
        return None
    joined = np.concatenate(values)
    return int(np.partition(joined, rows)[rows])


def _complete(batches: list[pa.RecordBatch], column: int, rows: int, cut: int) -> bool:
    """Whether a prefix's answer is the whole query's: all its rows, before the cut.

    Rows left out of the prefix are at or after the cut, or null, and sort
    after a last row that is before it.
    """
    kept = [batch for batch in batches if batch.num_rows]
    if not kept or sum(batch.num_rows for batch in kept) != rows:
        return False
    last = kept[-1].column(column)
    if last.type != schema.TIMESTAMP or not last[-1].is_valid:
        return False
    return int(last.view(pa.int64())[-1].as_py()) < cut


def _timestamp(value: datetime) -> Expr:
    return datafusion.lit(pa.scalar(value, type=schema.TIMESTAMP))


def _environment_filter(environments: tuple[str, ...]) -> Expr:
    column = col("deployment_environment")
    if not environments:
        return datafusion.lit(False)
    condition = f.in_list(column, [datafusion.lit(name) for name in environments])
    if "" in environments:
        condition = condition | column.is_null()
    return condition


def _row_filter(table_name: str, request: QueryRequest, now: datetime) -> Expr:
    """What a request may see of a table's stored rows."""
    bound = col(schema.BOUND_COLUMN[table_name])
    condition = col(schema.VISIBLE_AT) <= _timestamp(now)
    condition = condition & (bound >= _timestamp(request.min_timestamp))
    if request.max_timestamp is not None:
        condition = condition & (bound <= _timestamp(request.max_timestamp))
    if request.environments is not None:
        condition = condition & _environment_filter(request.environments)
    return condition


def _read_only() -> SQLOptions:
    return (
        SQLOptions()
        .with_allow_ddl(False)
        .with_allow_dml(False)
        .with_allow_statements(False)
    )


def _check_time_zone(context: SessionContext, time_zone: str) -> None:
    """Fail now if DataFusion cannot use the session time zone."""
    try:
        context.sql("SELECT TIMESTAMPTZ '2000-01-01T00:00:00Z'").collect()
    except Exception as error:
        raise QueryFailed(
            f"The time zone {time_zone!r} is not known ({error}). Use an IANA name "
            "such as 'Europe/Paris' or an offset such as '+02:00'."
        ) from error


def _public_schema(frame_schema: pa.Schema) -> pa.Schema:
    """The result schema, with the sandbox's JSON overload names taken out."""
    names = [functions.public_name(name) for name in frame_schema.names]
    if names == frame_schema.names:
        return frame_schema
    fields = [
        field.with_name(name) for field, name in zip(frame_schema, names, strict=True)
    ]
    return pa.schema(fields, metadata=frame_schema.metadata)


def _conform(batch: pa.RecordBatch, result_schema: pa.Schema) -> pa.RecordBatch:
    """Label a streamed batch with the result schema announced before it."""
    if batch.schema.equals(result_schema):
        return batch
    columns = [
        column if column.type == field.type else column.cast(field.type)
        for column, field in zip(batch.columns, result_schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=result_schema)


@functools.lru_cache(maxsize=16)
def _rewritten(sql: str) -> str:
    """`functions.rewrite_calls`, kept for the plans one request makes of its SQL."""
    return functions.rewrite_calls(sql)


def _plans(frame: DataFrame) -> str:
    logical = frame.optimized_logical_plan().display_indent()
    physical = frame.execution_plan().display_indent()
    return f"logical_plan\n{logical}\n\nphysical_plan\n{physical}"


def _stream(
    stream: RecordBatchStream, result_schema: pa.Schema, context: SessionContext
) -> Iterator[pa.RecordBatch]:
    """Yield the query's batches, holding on to its session until the last."""
    while True:
        with _engine_errors():
            try:
                batch = next(stream)
            except StopIteration:
                break
            arrow_batch = batch.to_pyarrow()
        yield _conform(arrow_batch, result_schema)
    del context


class QueryEngine:
    """Answers query requests from a store, as of a clock's now."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._caches = {name: _TableCache(name) for name in schema.TABLES}

    def execute(self, request: QueryRequest) -> QueryResult:
        """Plan a request's SQL and start streaming its result.

        Raises:
            QueryFailed: the SQL does not parse or plan, is not a read-only query,
                or the time zone is unknown. Errors met while the rows are
                computed surface from iterating `QueryResult.batches`.
        """
        now = self._clock.now()
        context = self._session(request, now)
        segments = {
            name: self._caches[name].segments(self._store.snapshot(name))
            for name in schema.TABLES
        }
        probe = self._probe(context, request, now)
        if probe.first is not None and not request.explain:
            answered = self._from_prefixes(context, request, now, segments, probe)
            if answered is not None:
                return answered

        self._register_views(context, request, now, segments, probe.scans)
        frame = self._plan(context, request)

        with _engine_errors():
            result_schema = _public_schema(frame.schema())
            plans = _plans(frame) if request.explain else None
            stream = frame.execute_stream()
        logger.debug("Planned %r as of %s.", request.sql, now)
        return QueryResult(
            schema=result_schema,
            batches=_stream(stream, result_schema, context),
            plans=plans,
        )

    def _session(self, request: QueryRequest, now: datetime) -> SessionContext:
        """A session with the request's time zone and the sandbox's functions."""
        config = SessionConfig().with_information_schema(True)
        # One partition: plans run as a single pipeline per request, so rows of a
        # query without ORDER BY come in stored order and requests in parallel
        # do not compete for threads.
        config = config.with_target_partitions(1)
        if request.timezone is not None:
            config = config.set("datafusion.execution.time_zone", request.timezone)
        context = SessionContext(config)
        if request.timezone is not None:
            _check_time_zone(context, request.timezone)

        with _engine_errors():
            functions.register(context, now=now, time_zone=request.timezone)
        return context

    def _from_prefixes(
        self,
        context: SessionContext,
        request: QueryRequest,
        now: datetime,
        segments: dict[str, list[_Segment]],
        probe: _Probe,
    ) -> QueryResult | None:
        """The query's answer from a prefix of the stored order, if one holds it.

        Any failure here, an error in the SQL included, leaves the query to be
        run over all its rows, where it fails or streams as it otherwise would.
        """
        first = probe.first
        assert first is not None
        table_name = first.table[len(_PROBE_PREFIX) :]
        scans = probe.scans.get(table_name)
        needed = _needed(segments[table_name], scans)
        bounds = {} if scans is None else pruning.hull(scans)
        for factor in _PREFIX_TRIES:
            cut = _cut_point(needed, bounds, first.column, int(first.rows * factor))
            if cut is None:
                return None
            prefix = _Prefix(table_name, first.column, cut, tag=f"p{factor}_")
            self._register_views(context, request, now, segments, probe.scans, prefix)
            try:
                frame = self._plan(context, request)
                batches = frame.collect()
                names = frame.schema().names
            except Exception:
                return None
            if names.count(first.output) != 1:
                return None
            if _complete(batches, names.index(first.output), first.rows, cut):
                result_schema = _public_schema(frame.schema())
                conformed = [_conform(batch, result_schema) for batch in batches]
                return QueryResult(result_schema, iter(conformed), None)
        return None

    def _register_views(
        self,
        context: SessionContext,
        request: QueryRequest,
        now: datetime,
        segments: dict[str, list[_Segment]],
        scans: dict[str, list[pruning.ScanRanges]],
        prefix: _Prefix | None = None,
    ) -> None:
        """Register each table as the view of the rows the request may see."""
        for table_name in schema.TABLES:
            cut = prefix if prefix is not None and prefix.table == table_name else None
            frames = self._frames(
                context, table_name, segments[table_name], scans.get(table_name), cut
            )
            view = self._filtered(
                functools.reduce(DataFrame.union, frames), table_name, request, now
            )
            if context.table_exist(table_name):
                context.deregister_table(table_name)
            context.register_view(table_name, view)

    def _probe(
        self, context: SessionContext, request: QueryRequest, now: datetime
    ) -> _Probe:
        """Plan the SQL over empty stand-ins, to learn which rows it can need.

        A query that fails to plan here fails again, with its error, when it is
        planned over the real segments.
        """
        stand_ins = {}
        for table_name in schema.TABLES:
            probe = _PROBE_PREFIX + table_name
            context.register_table(probe, self._caches[table_name].empty.table)
            stand_in = context.table(probe)
            view = self._filtered(stand_in, table_name, request, now)
            context.register_view(table_name, view)
            stand_ins[probe] = _prunable(table_name)
        try:
            plan = self._plan(context, request).optimized_logical_plan()
            read = _read_plan(plan, plan.display_indent(), stand_ins)
        except Exception:
            # DataFusion raises plain exceptions while it optimizes.
            read = _Probe({}, None)
        for table_name in schema.TABLES:
            context.deregister_table(table_name)
            context.deregister_table(_PROBE_PREFIX + table_name)
        return read

    def _frames(
        self,
        context: SessionContext,
        table_name: str,
        segments: list[_Segment],
        scans: list[pruning.ScanRanges] | None,
        prefix: _Prefix | None = None,
    ) -> list[DataFrame]:
        """The stored rows the scans can read, in stored order, as frames.

        A segment whose rows the scans all read is handed over as cached; one
        that is cut is registered in the request's session as its pieces.
        With a prefix, rows sorted at or after its cut are left out.
        """
        bounds = {} if scans is None else pruning.hull(scans)
        needed = _needed(segments, scans)
        if prefix is not None:
            bounds = prefix.bounds(bounds)
            needed = [segment for segment in needed if prefix.meets(segment)]
        tag = "" if prefix is None else prefix.tag
        frames = []
        for number, segment in enumerate(needed):
            pieces = _narrowed(segment, bounds)
            if pieces is None:
                frames.append(context.read_table(segment.table))
            elif pieces:
                name = f"{_ROWS_PREFIX}{tag}{table_name}_{number}"
                slices = [piece for batch in pieces for piece in _slices(batch)]
                context.register_record_batches(name, [slices])
                frames.append(context.table(name))
        if not frames:
            frames.append(context.read_table(self._caches[table_name].empty.table))
        return frames

    def _filtered(
        self, frame: DataFrame, table_name: str, request: QueryRequest, now: datetime
    ) -> DataFrame:
        """Stored rows as the request sees them: filtered, without `_visible_at`."""
        frame = frame.filter(_row_filter(table_name, request, now))
        return frame.select(*schema.TABLES[table_name].names)

    def _plan(self, context: SessionContext, request: QueryRequest) -> DataFrame:
        """The request's SQL as a DataFrame capped at the request's row limit."""
        try:
            sql = _rewritten(request.sql)
        except ValueError as error:
            raise QueryFailed(str(error)) from error
        with _engine_errors():
            frame = context.sql(sql, options=_read_only())
            return frame.limit(request.limit)
