"""Auditing a sync: rows per bucket of event time, in Logfire and in the destination.

:func:`run_verify` counts each table's rows in every bucket of event time
(`start_timestamp` for records, `recorded_timestamp` for metrics) within
``[start, end)``: in Logfire with ``COUNT(*) ... GROUP BY`` queries, read as
NDJSON, and in the destination through the pipeline's SQL client. It reports
every bucket where the counts differ::

    audit = run_verify(pipeline, "2026-05-01T00:00:00Z", "2026-05-08T00:00:00Z")
    for difference in audit.differences:
        print(difference.table, difference.bucket, difference.missing)

Both sides count only rows the sync could have loaded: rows stored (their
`created_at`) before the table's watermark, and, in Logfire, that pass the
sync's filters. Rows stored later are left to the next sync, not reported.

:func:`run_repair` backfills only the buckets that differ, then counts again.
A backfill merges by the merge key, so it restores missing rows and folds the
duplicates of rows Logfire still holds; rows Logfire no longer holds, such as
rows past its retention, are left alone and still show as excess.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from connector.client import MAX_LIMIT, LogfireClient
from connector.errors import (
    ConfigurationError,
    DestinationError,
    LogfireSyncError,
)
from connector.retry import RetryPolicy
from connector.settings import Settings, build_settings, parse_duration, parse_instant
from connector.source import Progress, table_filters
from connector.sql import quote_identifier, timestamp_literal
from connector.sync import (
    SyncReport,
    configured_option,
    destination_kind,
    missing_destination_config,
    read_status,
    refuse_other_targets,
    run_backfill,
    with_disposition,
)
from connector.tables import EPOCH_LITERAL, TABLES, TableName, TableSpec
from connector.windows import Window, event_time_scan, max_event_time_width

__all__ = [
    "DEFAULT_BUCKET",
    "Audit",
    "BucketDifference",
    "Repair",
    "TableAudit",
    "run_repair",
    "run_verify",
]

logger = logging.getLogger(__name__)

DEFAULT_BUCKET: Final = timedelta(hours=1)
"""How much event time one bucket spans unless the caller says."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_RETENTION: Final = timedelta(days=30)
_PIECE_BUCKETS: Final = 5_000
"""Buckets one count query spans at most, well below the 10,000-row cap."""

# The bucket number of a timestamp column in the destination's SQL: whole
# microseconds since the epoch divided by the bucket's, in integers, so that a
# row at a bucket's edge lands where Logfire's date_bin puts it.
_DUCKDB_INDEX: Final = "epoch_us({column}) // {stride}"
_POSTGRES_INDEX: Final = (
    "CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT) / {stride}"
)
_BUCKET_INDEX: Final[Mapping[str, str]] = {
    "duckdb": _DUCKDB_INDEX,
    "motherduck": _DUCKDB_INDEX,
    "filesystem": _DUCKDB_INDEX,
    "postgres": _POSTGRES_INDEX,
}

# Options read from dlt's config when the caller leaves them out, as the
# source itself would, so that both count the same rows.
_LIST_OPTIONS: Final = ("tables", "service_names", "environments", "span_names")
_OTHER_OPTIONS: Final = (
    "base_url",
    "min_level",
    "where",
    "settle",
    "timeout",
    "max_attempts",
    "max_retry_seconds",
    "write_disposition",
)


@dataclass(frozen=True)
class BucketDifference:
    """A bucket of event time whose row counts differ.

    Attributes:
        table: The table, such as ``records``.
        bucket: The bucket, cut to the audited range.
        logfire: Rows Logfire holds in it.
        destination: Rows the destination holds in it.
    """

    table: TableName
    bucket: Window
    logfire: int
    destination: int

    @property
    def missing(self) -> int:
        """Rows the destination lacks."""
        return max(self.logfire - self.destination, 0)

    @property
    def excess(self) -> int:
        """Rows the destination has beyond Logfire's."""
        return max(self.destination - self.logfire, 0)


@dataclass(frozen=True)
class TableAudit:
    """The counts of one table.

    Attributes:
        table: The table, such as ``records``.
        stored_before: Only rows stored before this were counted.
        from_watermark: Whether `stored_before` is the table's watermark;
            otherwise the table has none and it is the service's horizon.
        buckets: How many buckets the range holds.
        logfire_rows: Rows counted in Logfire.
        destination_rows: Rows counted in the destination.
        differences: The buckets whose counts differ, in time order.
    """

    table: TableName
    stored_before: datetime
    from_watermark: bool
    buckets: int
    logfire_rows: int
    destination_rows: int
    differences: tuple[BucketDifference, ...]

    @property
    def matches(self) -> bool:
        """Whether every bucket has the same count on both sides."""
        return not self.differences


@dataclass(frozen=True)
class Audit:
    """What :func:`run_verify` found.

    Attributes:
        start: The first event time counted.
        end: The end of the range, excluded.
        bucket: How much event time one bucket spans.
        tables: One audit per table.
        requests: HTTP requests sent to Logfire, retries included.
    """

    start: datetime
    end: datetime
    bucket: timedelta
    tables: tuple[TableAudit, ...]
    requests: int

    @property
    def matches(self) -> bool:
        """Whether every table matches."""
        return all(table.matches for table in self.tables)

    @property
    def differences(self) -> tuple[BucketDifference, ...]:
        """Every differing bucket of every table."""
        return tuple(diff for table in self.tables for diff in table.differences)


@dataclass(frozen=True)
class Repair:
    """What :func:`run_repair` did.

    Attributes:
        before: The audit that was repaired.
        ranges: The event-time ranges backfilled, with their tables.
        backfills: The report of each range's backfill, in the same order.
        after: The audit taken once the backfills were done.
    """

    before: Audit
    ranges: tuple[tuple[Window, tuple[TableName, ...]], ...]
    backfills: tuple[SyncReport, ...]
    after: Audit

    @property
    def rows(self) -> int:
        """Rows the backfills read again."""
        return sum(report.rows for report in self.backfills)


def run_verify(
    pipeline: dlt.Pipeline,
    start: datetime | str,
    end: datetime | str,
    /,
    *,
    bucket: timedelta | str | float = DEFAULT_BUCKET,
    **options: Any,
) -> Audit:
    """Compare the rows per bucket of event time in Logfire and the destination.

    Args:
        pipeline: The dlt pipeline that synced the tables; its state gives
            the watermarks and its SQL client counts the destination's rows.
            DuckDB, MotherDuck, filesystem and PostgreSQL destinations work.
        start: The first event time to count; timezone-aware.
        end: The end of the range, excluded. A range of any length works: it
            is counted in pieces of at most 13 days, within the 14-day limit
            of one query.
        bucket: The width of a bucket [1 h], a whole number of seconds.
        **options: The options of :func:`connector.logfire_source` that
            the sync used; those left out come from dlt's config. The filters
            (service_names, environments, span_names, min_level, where) must
            be the sync's, or the counts differ by what they leave out.

    Returns:
        The counts, with every bucket where they differ.

    Raises:
        ConfigurationError: For a bad option or range, before any request.
        DestinationError: If the destination cannot be queried.
        LogfireSyncError: When a count query fails for good.
    """
    first, last = _range(start, end)
    stride = _bucket(bucket)
    settings = _settings(options)
    refuse_other_targets(pipeline, settings.tables)
    index_sql = _index_sql(pipeline)
    statuses = read_status(pipeline)
    if not statuses:
        # A fresh machine: the watermarks are kept in the destination too, and
        # without them every row the sync has yet to reach would count as missing.
        pipeline.sync_destination()
        statuses = read_status(pipeline)
    watermarks = {status.table: status.watermark for status in statuses}

    with _client(settings) as client:
        now = client.server_now()
        _warn_if_beyond_retention(first, now)
        audits = []
        for name in settings.tables:
            spec = TABLES[name]
            watermark = watermarks.get(name)
            stored_before = watermark or now - settings.settle
            counts = _TableCounts(spec, settings, first, last, stride, stored_before)
            destination = counts.in_destination(pipeline, index_sql)
            logfire = counts.in_logfire(client)
            audits.append(counts.audit(logfire, destination, watermark is not None))
            _log_table(audits[-1])
        requests = client.requests_made

    return Audit(first, last, stride, tuple(audits), requests)


def run_repair(
    pipeline: dlt.Pipeline,
    audit: Audit,
    /,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> Repair:
    """Backfill the buckets an audit found differing, then count again.

    Adjacent differing buckets are backfilled as one range, and a range that
    differs in both tables is backfilled for both at once.

    Args:
        pipeline: The pipeline the audit was taken of.
        audit: What :func:`run_verify` found.
        progress: As in :func:`connector.sync.run_backfill`.
        **options: As in :func:`run_verify`; the backfills take them too.

    Returns:
        The ranges backfilled and the audit taken after them.

    Raises:
        ConfigurationError: If the destination only appends rows, as a repair
            would then add copies of the rows it reads again.
        LogfireSyncError: When a backfill or a count fails for good.
    """
    _check_merges(pipeline, options)
    ranges = _ranges(audit.differences)
    reports = []
    for window, tables in ranges:
        logger.info("Repairing %s in %s.", ", ".join(tables), window)
        reports.append(
            run_backfill(
                pipeline,
                window.lo,
                window.hi,
                progress=progress,
                **{**options, "tables": list(tables)},
            )
        )
    after = run_verify(pipeline, audit.start, audit.end, bucket=audit.bucket, **options)
    return Repair(audit, tuple(ranges), tuple(reports), after)


class _TableCounts:
    """Counting one table's buckets, on both sides."""

    def __init__(
        self,
        spec: TableSpec,
        settings: Settings,
        start: datetime,
        end: datetime,
        stride: timedelta,
        stored_before: datetime,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.start = start
        self.end = end
        self.stride = stride
        self.stride_us = stride // _MICROSECOND
        self.stored_before = stored_before

    def in_logfire(self, client: LogfireClient) -> dict[int, int]:
        """Rows per bucket number in Logfire, over pieces of the range."""
        counts: dict[int, int] = {}
        for piece in _pieces(self.start, self.end, self.stride):
            low, high = event_time_scan(piece)
            rows = client.query_ndjson(
                self._logfire_sql(piece),
                min_timestamp=low,
                max_timestamp=high,
                limit=MAX_LIMIT,
            )
            if len(rows) >= MAX_LIMIT:
                raise LogfireSyncError(
                    f"Counting {self.spec.name} in {piece} returned {len(rows)} "
                    "buckets, as many as one request gives, so some may be "
                    "missing. Choose a wider bucket."
                )
            for row in rows:
                number, count = self._bucket_row(row)
                counts[number] = counts.get(number, 0) + count
        return counts

    def in_destination(self, pipeline: dlt.Pipeline, index_sql: str) -> dict[int, int]:
        """Rows per bucket number in the destination's table."""
        try:
            with pipeline.sql_client() as client:
                table = client.make_qualified_table_name(self.spec.name)
                bound = client.escape_column_name(self.spec.bound)
                cursor = client.escape_column_name(self.spec.cursor)
                index = index_sql.format(column=bound, stride=self.stride_us)
                sql = (
                    f"SELECT {index} AS bucket_index, COUNT(*) AS row_count\n"
                    f"FROM {table}\n"
                    f"WHERE {bound} >= %s AND {bound} < %s AND {cursor} < %s\n"
                    "GROUP BY 1"
                )
                rows = client.execute_sql(sql, self.start, self.end, self.stored_before)
        except DestinationUndefinedEntity:
            # A database without the table, or files without the table's folder.
            logger.info("The destination has no %s table yet.", self.spec.name)
            return {}
        except ConfigFieldMissingException as error:
            raise _missing_credentials(pipeline, error) from None
        except Exception as error:
            raise _destination_error(pipeline, error) from error
        return {int(number): int(count) for number, count in rows or []}

    def audit(
        self, logfire: dict[int, int], destination: dict[int, int], watermark: bool
    ) -> TableAudit:
        """The comparison of both sides' counts."""
        differences = []
        for number in sorted(logfire.keys() | destination.keys()):
            theirs, ours = logfire.get(number, 0), destination.get(number, 0)
            if theirs != ours:
                bucket = self._window(number)
                differences.append(
                    BucketDifference(self.spec.name, bucket, theirs, ours)
                )
        return TableAudit(
            table=self.spec.name,
            stored_before=self.stored_before,
            from_watermark=watermark,
            buckets=self._number(self.end - _MICROSECOND)
            - self._number(self.start)
            + 1,
            logfire_rows=sum(logfire.values()),
            destination_rows=sum(destination.values()),
            differences=tuple(differences),
        )

    def _logfire_sql(self, piece: Window) -> str:
        """The query counting one piece's rows per bucket."""
        bound = quote_identifier(self.spec.bound)
        cursor = quote_identifier(self.spec.cursor)
        conditions = [
            f"{bound} >= {timestamp_literal(piece.lo)}",
            f"{bound} < {timestamp_literal(piece.hi)}",
            f"{cursor} < {timestamp_literal(self.stored_before)}",
            *table_filters(self.spec, self.settings),
        ]
        seconds = self.stride // timedelta(seconds=1)
        bucket = (
            f"date_bin(INTERVAL '{seconds} seconds', {bound}, "
            f"TIMESTAMP '{EPOCH_LITERAL}')"
        )
        return (
            f"SELECT {bucket} AS bucket, COUNT(*) AS row_count\n"
            f"FROM {self.spec.name}\n"
            f"WHERE {' AND '.join(conditions)}\n"
            "GROUP BY bucket\nORDER BY bucket"
        )

    def _bucket_row(self, row: dict[str, Any]) -> tuple[int, int]:
        """A result row's bucket number and count."""
        moment, count = row.get("bucket"), row.get("row_count")
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        instant = _instant(moment)
        if instant is None or isinstance(count, bool) or not isinstance(count, int):
            raise LogfireSyncError(
                f"A count query on {self.spec.name} returned the row {row!r}, "
                "not a bucket and a count. Check that base_url points at "
                "Logfire's query API."
            )
        return self._number(instant), count

    def _number(self, moment: datetime) -> int:
        """The bucket number of an instant: buckets count from the epoch."""
        return ((moment - _EPOCH) // _MICROSECOND) // self.stride_us

    def _window(self, number: int) -> Window:
        """The bucket numbered `number`, cut to the audited range."""
        lo = _EPOCH + number * self.stride
        return Window(max(lo, self.start), min(lo + self.stride, self.end))


def _range(start: datetime | str, end: datetime | str) -> tuple[datetime, datetime]:
    """The audited range, which must not be empty."""
    first, last = parse_instant(start, "start"), parse_instant(end, "end")
    if not first < last:
        raise ConfigurationError(
            f"The range starts at {first.isoformat()}, which is not before its "
            f"end {last.isoformat()}. Give the earlier instant as --start."
        )
    return first, last


def _bucket(value: timedelta | str | float) -> timedelta:
    """The bucket width: whole seconds, at least one."""
    width = parse_duration(value, "bucket")
    if width < timedelta(seconds=1) or width % timedelta(seconds=1):
        raise ConfigurationError(
            f"bucket = {value!r} is not a whole number of seconds of at least "
            "one. Give a duration such as '1h', '15m' or '1d'."
        )
    return width


def _settings(options: Mapping[str, Any]) -> Settings:
    """The sync's options, from the caller and dlt's config, checked."""
    resolved = dict(options)
    resolved.pop("progress", None)
    # The source's table_columns is build_settings' columns; verify ignores it.
    resolved["columns"] = resolved.pop("table_columns", None)
    if resolved.get("read_token") is None:
        resolved["read_token"] = configured_option("read_token", secret=True)
    for name in (*_LIST_OPTIONS, *_OTHER_OPTIONS):
        if resolved.get(name) is None:
            resolved[name] = configured_option(name, listed=name in _LIST_OPTIONS)
    if resolved["read_token"] is None:
        raise ConfigurationError(
            "No read token: set LOGFIRE_READ_TOKEN, or read_token in "
            ".dlt/secrets.toml under [sources.logfire] (or the "
            "SOURCES__LOGFIRE__READ_TOKEN environment variable)."
        )
    try:
        return build_settings(**resolved)
    except TypeError as error:
        raise ConfigurationError(
            f"verify was given an option the sync does not know ({error}). "
            "Pass only the options of logfire_source."
        ) from None


def _client(settings: Settings) -> LogfireClient:
    """A client with the settings' timeout and retry policy."""
    policy = RetryPolicy(
        max_attempts=settings.max_attempts, max_elapsed=settings.max_retry_seconds
    )
    return LogfireClient(
        settings.read_token,
        base_url=settings.base_url,
        timeout=settings.timeout,
        retry=policy,
    )


def _destination_name(pipeline: dlt.Pipeline) -> str:
    """The destination's short name, such as ``duckdb``."""
    if pipeline.destination is None:
        raise ConfigurationError(
            f"The pipeline {pipeline.pipeline_name!r} has no destination. Pass "
            "the destination the sync loads into."
        )
    return destination_kind(pipeline) or ""


def _index_sql(pipeline: dlt.Pipeline) -> str:
    """The destination's SQL for a bucket number, if verify knows its dialect."""
    name = _destination_name(pipeline)
    if name not in _BUCKET_INDEX:
        known = ", ".join(sorted(_BUCKET_INDEX))
        raise ConfigurationError(
            f"verify cannot count rows in a {name} destination yet: it knows "
            f"the SQL of {known}. Verify a copy in one of those instead."
        )
    return _BUCKET_INDEX[name]


def _missing_credentials(
    pipeline: dlt.Pipeline, error: ConfigFieldMissingException
) -> ConfigurationError:
    """The error for a destination whose credentials are not configured."""
    _destination_name(pipeline)
    return missing_destination_config(pipeline, error)


def _destination_error(pipeline: dlt.Pipeline, error: Exception) -> DestinationError:
    """The error for a destination that could not be queried."""
    detail = " ".join(str(error).split()) or type(error).__name__
    return DestinationError(
        f"Counting rows in the {_destination_name(pipeline)} destination "
        f"failed ({type(error).__name__}: {detail}). Check that it is "
        "reachable and that its credentials are right."
    )


def _check_merges(pipeline: dlt.Pipeline, options: Mapping[str, Any]) -> None:
    """Refuse to repair where re-read rows would be appended as copies."""
    disposition = with_disposition(pipeline, dict(options))["write_disposition"]
    if disposition == "append":
        raise ConfigurationError(
            "Rows are appended here (by write_disposition append, or as the "
            f"{_destination_name(pipeline)} destination only appends rows), so "
            "a repair would add copies of every row it reads again. "
            "Reload the differing range into a fresh dataset instead."
        )


def _ranges(
    differences: Sequence[BucketDifference],
) -> list[tuple[Window, tuple[TableName, ...]]]:
    """Differing buckets joined into ranges, and ranges shared by tables."""
    by_window: dict[Window, list[TableName]] = {}
    for table in TABLES:
        buckets = sorted(diff.bucket for diff in differences if diff.table == table)
        for window in _joined(buckets):
            by_window.setdefault(window, []).append(table)
    return [(window, tuple(tables)) for window, tables in sorted(by_window.items())]


def _joined(buckets: Sequence[Window]) -> Iterator[Window]:
    """Sorted buckets, each run of adjacent ones joined into one window."""
    current: Window | None = None
    for bucket in buckets:
        if current is not None and current.hi == bucket.lo:
            current = Window(current.lo, bucket.hi)
            continue
        if current is not None:
            yield current
        current = bucket
    if current is not None:
        yield current


def _pieces(start: datetime, end: datetime, stride: timedelta) -> Iterator[Window]:
    """``[start, end)`` in pieces one count query can cover."""
    width = min(max_event_time_width(), stride * _PIECE_BUCKETS)
    lo = start
    while lo < end:
        hi = min(lo + width, end)
        yield Window(lo, hi)
        lo = hi


def _instant(value: object) -> datetime | None:
    """A timestamp of a JSON result as an aware datetime, if it is one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        # Logfire's timestamps are UTC, with or without the offset written.
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _warn_if_beyond_retention(start: datetime, now: datetime) -> None:
    """Warn when the range starts further back than Logfire keeps data."""
    if now - start > _RETENTION:
        logger.warning(
            "verify starts at %s, more than 30 days before the service's now "
            "(%s): Logfire has probably dropped rows that old, so the "
            "destination's copies of them show as excess, which a repair "
            "cannot remove.",
            start.isoformat(),
            now.isoformat(),
        )


def _log_table(audit: TableAudit) -> None:
    """One INFO line per table audited."""
    logger.info(
        "%s: %s buckets, %s rows in Logfire and %s in the destination, %s differing.",
        audit.table,
        audit.buckets,
        audit.logfire_rows,
        audit.destination_rows,
        len(audit.differences),
    )
