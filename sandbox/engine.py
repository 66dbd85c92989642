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
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import datafusion
import pyarrow as pa
from datafusion import DataFrame, Expr, SessionConfig, SessionContext, SQLOptions, col
from datafusion import functions as f
from datafusion.catalog import Table
from datafusion.record_batch import RecordBatchStream

from sandbox import functions, schema
from sandbox.clock import Clock
from sandbox.store import Store, stored_schema

logger = logging.getLogger(__name__)

_SLICE_ROWS = 65_536
"""Stored batches longer than this reach DataFusion in slices of this many rows."""


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
    """A run of a table's stored batches, handed to DataFusion as one table."""

    batches: tuple[pa.RecordBatch, ...]
    table: Table
    slice_count: int


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
    return _Segment(tuple(batches), table, len(slices))


class _TableCache:
    """DataFusion tables over one stored table's batches, extended as it grows."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._empty = _memory_table(table_name, [])

    def tables(self, batches: Sequence[pa.RecordBatch]) -> list[Table]:
        """DataFusion tables holding exactly `batches`, in order."""
        with self._lock:
            segments = self._kept(batches)
            covered = sum(len(segment.batches) for segment in segments)
            if covered < len(batches):
                segments.append(_memory_table(self._table_name, batches[covered:]))
            self._segments = self._merged(segments)
            tables = [segment.table for segment in self._segments]
        return tables or [self._empty.table]

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

        Like a binary counter, this keeps the number of segments logarithmic in
        the number of batches, and each batch is handed over again only a
        logarithmic number of times.
        """
        while (
            len(segments) >= 2 and segments[-1].slice_count >= segments[-2].slice_count
        ):
            merged = segments[-2].batches + segments[-1].batches
            segments[-2:] = [_memory_table(self._table_name, merged)]
            logger.debug(
                "Merged %s batches of %s into one segment.",
                len(merged),
                self._table_name,
            )
        return segments


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
        """A session whose tables and clock are what the request may see."""
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
        for table_name in schema.TABLES:
            context.register_view(
                table_name, self._view(context, table_name, request, now)
            )
        return context

    def _view(
        self,
        context: SessionContext,
        table_name: str,
        request: QueryRequest,
        now: datetime,
    ) -> DataFrame:
        """A table as the request sees it: filtered, without `_visible_at`."""
        tables = self._caches[table_name].tables(self._store.snapshot(table_name))
        frames = [context.read_table(table) for table in tables]
        frame = functools.reduce(DataFrame.union, frames)
        frame = frame.filter(_row_filter(table_name, request, now))
        return frame.select(*schema.TABLES[table_name].names)

    def _plan(self, context: SessionContext, request: QueryRequest) -> DataFrame:
        """The request's SQL as a DataFrame capped at the request's row limit."""
        try:
            sql = functions.rewrite_calls(request.sql)
        except ValueError as error:
            raise QueryFailed(str(error)) from error
        with _engine_errors():
            frame = context.sql(sql, options=_read_only())
            return frame.limit(request.limit)
