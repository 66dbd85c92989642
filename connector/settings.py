"""The options of a sync, checked and converted before any request is sent.

Options arrive the dlt way: as arguments, from ``[sources.logfire]`` in
``config.toml`` and ``secrets.toml``, or from environment variables such as
``SOURCES__LOGFIRE__SETTLE``. So they are plain numbers and strings, which
:func:`build_settings` turns into a frozen :class:`Settings`, raising a
:class:`ConfigurationError` that names the option and the fix for any bad one.

Durations are numbers of seconds (``300``, ``1.5``) or strings: seconds
(``"300"``), units (``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"1w"``) or ISO
8601 durations (``"PT5M"``, ``"P1DT12H"``). Instants are datetimes with a time
zone or ISO 8601 strings with an offset (``"2026-05-01T00:00:00Z"``).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, cast

from connector.errors import ConfigurationError
from connector.sql import check_condition, validate_column_name
from connector.tables import TABLES, TableName
from connector.windows import MIN_WIDTH, max_created_at_width

__all__ = [
    "DEFAULTS",
    "INGEST_AHEAD",
    "LEVELS",
    "Settings",
    "WriteDisposition",
    "build_settings",
    "parse_duration",
    "parse_instant",
    "unreadable_config",
]

logger = logging.getLogger(__name__)

WriteDisposition = Literal["merge", "append"]

LEVELS: Final[Mapping[str, int]] = {
    "trace": 1,
    "debug": 5,
    "info": 9,
    "notice": 10,
    "warn": 13,
    "warning": 13,
    "error": 17,
    "fatal": 21,
}
"""Logfire's level names and their numbers."""

DEFAULTS: Final[Mapping[str, object]] = {
    "initial_window": timedelta(hours=1),
    "settle": timedelta(minutes=5),
    "lateness_back": timedelta(hours=24),
    "lateness_ahead": timedelta(hours=1),
    "first_sync": timedelta(hours=24),
    "chunk": timedelta(days=1),
    "chunk_rows": 200_000,
    "chunk_bytes": 256 * 2**20,
    "page_size": 10_000,
    "target_pages": 10,
    "concurrency": 1,
    "timeout": 120.0,
    "max_attempts": 8,
    "max_retry_seconds": 300.0,
}
"""The default of every option that has one."""

PAGE_BYTES: Final = 64 * 2**20
"""About the most bytes of Arrow data a page asks for, once rows' width is known.

Pages of 10,000 rows hold about 10 MB of typical spans, but a span can hold a
whole prompt: at 30 KB a row, a page would take 300 MB, and a process several
times that while it decodes and shapes the page.
"""

_GUARANTEED_SETTLE: Final = timedelta(minutes=5)
_INGEST_BACK: Final = timedelta(hours=24)
INGEST_AHEAD: Final = timedelta(hours=1)
"""How far after it was stored Logfire keeps a row's event time (a clock ahead)."""
# Instants and durations far beyond any telemetry's would overflow Python's
# datetimes once the scan bounds are added to them.
_EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
_LONGEST: Final = timedelta(days=36_500)
_UNIT_SECONDS: Final = {
    "w": 604_800.0,
    "d": 86_400.0,
    "h": 3_600.0,
    "m": 60.0,
    "min": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_NUMBER: Final = r"\d+(?:\.\d*)?|\.\d+"
_UNIT_PART: Final = re.compile(rf"\s*({_NUMBER})\s*(ms|min|w|d|h|m|s)", re.IGNORECASE)
_ISO_DURATION: Final = re.compile(
    rf"P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Settings:
    """Every option of a sync, checked. See :func:`build_settings`."""

    read_token: str = field(repr=False)
    base_url: str | None
    tables: tuple[TableName, ...]
    columns: Mapping[TableName, tuple[str, ...]]
    service_names: tuple[str, ...] | None
    environments: tuple[str, ...] | None
    span_names: tuple[str, ...] | None
    min_level: int | None
    where: Mapping[TableName, str]
    start: datetime | None
    initial_window: timedelta
    settle: timedelta
    lateness_back: timedelta
    lateness_ahead: timedelta
    page_size: int
    target_pages: int
    concurrency: int
    timeout: float
    max_attempts: int
    max_retry_seconds: float
    chunk: timedelta | None
    chunk_rows: int
    chunk_bytes: int
    backfill: tuple[datetime, datetime] | None
    write_disposition: WriteDisposition
    require_end_marker: bool = True
    verify_counts: bool = False
    max_requests_per_minute: int | None = None
    accept_filter_change: bool = False
    replace_nul: bool = False
    warn_empty_text: bool = False
    parse_json: bool = True

    @property
    def page_bytes(self) -> int:
        """About the most bytes of Arrow data one page asks for."""
        return min(PAGE_BYTES, self.chunk_bytes)

    @property
    def max_width(self) -> timedelta:
        """The widest `created_at` window whose scan fits the 13 days allowed."""
        return max_created_at_width(self.lateness_back, self.lateness_ahead)

    def chunk_span(self, *, by_rows: bool) -> timedelta | None:
        """The most time one run of a resource reads; None for no limit.

        A `chunk` given is kept to. Left unset, a plain ``pipeline.run`` reads
        at most a day, and run_sync's chunks, which end by `chunk_rows`, by
        rows alone: a day's end would cut a chunk short, and the rows after
        it would then cost a load of their own.
        """
        if self.chunk is not None:
            return self.chunk
        return None if by_rows else cast(timedelta, DEFAULTS["chunk"])


def build_settings(
    *,
    read_token: object,
    base_url: object = None,
    tables: object = None,
    columns: object = None,
    service_names: object = None,
    environments: object = None,
    span_names: object = None,
    min_level: object = None,
    where: object = None,
    start: object = None,
    initial_window: object = None,
    settle: object = None,
    lateness_back: object = None,
    lateness_ahead: object = None,
    page_size: object = None,
    target_pages: object = None,
    concurrency: object = None,
    timeout: object = None,
    max_attempts: object = None,
    max_retry_seconds: object = None,
    chunk: object = None,
    chunk_rows: object = None,
    chunk_bytes: object = None,
    backfill: object = None,
    write_disposition: object = None,
    require_end_marker: object = None,
    verify_counts: object = None,
    max_requests_per_minute: object = None,
    accept_filter_change: object = None,
    replace_nul: object = None,
    warn_empty_text: object = None,
    parse_json: object = None,
) -> Settings:
    """Check and convert the options of a sync; None means the default.

    Raises:
        ConfigurationError: For the first bad option, naming it and the fix.
    """
    chosen_tables = _tables(tables)
    marker = _flag(require_end_marker, "require_end_marker", default=True)
    settings = Settings(
        read_token=_token(read_token),
        base_url=_optional_text(base_url, "base_url"),
        tables=chosen_tables,
        columns=_columns(columns, chosen_tables),
        service_names=_names(service_names, "service_names"),
        environments=_names(environments, "environments", allow_empty=True),
        span_names=_names(span_names, "span_names"),
        min_level=_level(min_level),
        where=_where(where, chosen_tables),
        start=None if start is None else parse_instant(start, "start"),
        initial_window=_duration(initial_window, "initial_window", positive=True),
        settle=_duration(settle, "settle"),
        lateness_back=_duration(lateness_back, "lateness_back"),
        lateness_ahead=_duration(lateness_ahead, "lateness_ahead"),
        page_size=_integer(page_size, "page_size", 1, 10_000),
        target_pages=_integer(target_pages, "target_pages", 1, 1_000),
        concurrency=_integer(concurrency, "concurrency", 1, 16),
        timeout=_seconds(timeout, "timeout"),
        max_attempts=_integer(max_attempts, "max_attempts", 1, 100),
        max_retry_seconds=_seconds(max_retry_seconds, "max_retry_seconds"),
        chunk=None if chunk is None else _duration(chunk, "chunk", positive=True),
        chunk_rows=_integer(chunk_rows, "chunk_rows", 1, 100_000_000),
        chunk_bytes=_integer(chunk_bytes, "chunk_bytes", 2**20, 2**40),
        backfill=_backfill(backfill),
        write_disposition=_write_disposition(write_disposition),
        require_end_marker=marker,
        # Without the marker, a stream cut between batches looks complete:
        # only a count can tell, so counting is on unless turned off.
        verify_counts=_flag(verify_counts, "verify_counts", default=not marker),
        max_requests_per_minute=_budget(max_requests_per_minute),
        accept_filter_change=_flag(
            accept_filter_change, "accept_filter_change", default=False
        ),
        replace_nul=_flag(replace_nul, "replace_nul", default=False),
        warn_empty_text=_flag(warn_empty_text, "warn_empty_text", default=False),
        parse_json=_flag(parse_json, "parse_json", default=True),
    )
    _check_together(settings)
    return settings


def parse_duration(value: object, option: str) -> timedelta:
    """A duration option as a timedelta, at microsecond precision.

    Raises:
        ConfigurationError: If `value` is not a non-negative duration.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise _bad_duration(option, value)
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_text(value.strip(), option)
    else:
        raise _bad_duration(option, value)

    if not math.isfinite(seconds) or seconds < 0:
        raise _bad_duration(option, value)
    if seconds > _LONGEST.total_seconds():
        raise ConfigurationError(
            f"{option} = {value!r} is longer than 100 years, more than any "
            "telemetry spans. Give a shorter duration, such as '1h' or '30d'."
        )
    return timedelta(microseconds=round(seconds * 1_000_000))


def parse_instant(value: object, option: str) -> datetime:
    """An instant option as a plain `datetime` in `datetime.UTC`.

    Subclasses such as pendulum's (what Airflow passes) come back as plain
    datetimes: pendulum 3 drops a `datetime.UTC` time zone on the first
    arithmetic, which would leave the sync with naive instants.

    Raises:
        ConfigurationError: If `value` is not a datetime or ISO 8601 text, or
            has no time zone.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigurationError(
                f"{option} = {value!r} is not an ISO 8601 time. Write it like "
                "'2026-05-01T00:00:00Z' or '2026-05-01T02:00:00+02:00'."
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ConfigurationError(
            f"{option} must be a datetime or an ISO 8601 string, not "
            f"{type(value).__name__} ({value!r})."
        )

    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ConfigurationError(
            f"{option} = {parsed.isoformat()} has no time zone, so the instant "
            "it means is unclear. Add an offset, such as "
            f"'{parsed.isoformat()}Z' for UTC."
        )
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:
        moment = _LATEST
    if not _EARLIEST <= moment < _LATEST:
        raise ConfigurationError(
            f"{option} = {parsed.isoformat()} is outside the years 1970 to 2199, "
            "where any telemetry lies. Check the year, and give a time such as "
            "'2026-05-01T00:00:00Z'."
        )
    return datetime.combine(moment.date(), moment.time(), UTC)


def _duration_text(text: str, option: str) -> float:
    """The seconds a duration string says."""
    try:
        return float(text)
    except ValueError:
        pass

    iso = _ISO_DURATION.fullmatch(text)
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        return sum(
            float(amount) * _UNIT_SECONDS[unit]
            for unit, amount in iso.groupdict().items()
            if amount is not None
        )

    parts = _UNIT_PART.findall(text)
    if parts and "".join(_UNIT_PART.sub("", text).split()) == "":
        return sum(
            float(amount) * _UNIT_SECONDS[unit.lower()] for amount, unit in parts
        )
    raise _bad_duration(option, text)


def _bad_duration(option: str, value: object) -> ConfigurationError:
    """The error for a value that is not a duration."""
    return ConfigurationError(
        f"{option} = {value!r} is not a duration. Give a number of seconds "
        "(300), a string with units ('5m', '1h30m', '2d') or an ISO 8601 "
        "duration ('PT5M')."
    )


def _duration(value: object, option: str, *, positive: bool = False) -> timedelta:
    """A duration option, or its default when None."""
    if value is None:
        return cast(timedelta, DEFAULTS[option])
    duration = parse_duration(value, option)
    if positive and duration <= timedelta(0):
        raise ConfigurationError(
            f"{option} must be longer than zero, not {value!r}. Give a positive "
            "duration such as '1h'."
        )
    return duration


def _seconds(value: object, option: str) -> float:
    """A positive number of seconds, or its default when None."""
    if value is None:
        return cast(float, DEFAULTS[option])
    seconds = parse_duration(value, option).total_seconds()
    if seconds <= 0:
        raise ConfigurationError(
            f"{option} must be a positive number of seconds, not {value!r}."
        )
    return seconds


def _integer(value: object, option: str, low: int, high: int) -> int:
    """An integer option within ``[low, high]``, or its default when None."""
    if value is None:
        return cast(int, DEFAULTS[option])
    number: object = value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise ConfigurationError(
            f"{option} must be a whole number from {low} to {high}, not {value!r}."
        )
    if not low <= number <= high:
        raise ConfigurationError(
            f"{option} = {number} is out of range. Choose a value from {low} to {high}."
        )
    return number


def _flag(value: object, option: str, *, default: bool) -> bool:
    """A yes-or-no option, or `default` when None."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigurationError(
        f"{option} must be true or false, not {value!r}. Leave it out for the "
        f"default ({str(default).lower()})."
    )


def _budget(value: object) -> int | None:
    """The most requests per minute, or None for no budget."""
    if value is None:
        return None
    return _integer(value, "max_requests_per_minute", 1, 1_000_000)


def _token(value: object) -> str:
    """The read token, which must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            "read_token is missing or empty. Set it in .dlt/secrets.toml under "
            "[sources.logfire], or in the SOURCES__LOGFIRE__READ_TOKEN "
            "environment variable."
        )
    return value.strip()


def _optional_text(value: object, option: str) -> str | None:
    """A text option that may be left out."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{option} must be a non-empty string, not {value!r}. Leave it out "
            "for the default."
        )
    return value.strip()


def _sequence(value: object, option: str) -> list[object]:
    """A list option; a single string is refused, as it is a common slip."""
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise ConfigurationError(
            f"{option} must be a list of strings, such as ['a', 'b'], not {value!r}."
        )
    return list(value)


def _tables(value: object) -> tuple[TableName, ...]:
    """The tables to sync; both when None."""
    if value is None:
        return ("records", "metrics")
    chosen: list[TableName] = []
    for item in _sequence(value, "tables"):
        if item not in TABLES:
            raise ConfigurationError(
                f"tables lists {item!r}, which is not a table the sync knows. "
                "Use 'records', 'metrics' or both."
            )
        name = cast(TableName, item)
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ConfigurationError(
            "tables is empty. List 'records', 'metrics' or both, or leave it out."
        )
    return tuple(chosen)


def _columns(
    value: object, tables: tuple[TableName, ...]
) -> Mapping[TableName, tuple[str, ...]]:
    """The chosen columns per table; a table left out gets every column."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "table_columns must map table names to lists of columns, such as "
            f"{{'records': ['span_name', 'duration']}}, not {value!r}."
        )

    chosen: dict[TableName, tuple[str, ...]] = {}
    for table, names in value.items():
        if table not in tables:
            raise ConfigurationError(
                f"table_columns names the table {table!r}, which is not synced. "
                "Sync it in tables, or remove it from table_columns (synced: "
                f"{list(tables)})."
            )
        spec = TABLES[cast(TableName, table)]
        picked = [
            _column(name, spec.columns, table) for name in _sequence(names, "columns")
        ]
        wanted = set(picked) | set(spec.required_columns)
        chosen[spec.name] = tuple(name for name in spec.columns if name in wanted)
    return chosen


def _column(name: object, known: tuple[str, ...], table: str) -> str:
    """One chosen column, which the table must have."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"table_columns for {table} must be strings, not {name!r}."
        )
    validate_column_name(name)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"table_columns for {table} lists {name!r}, which is not a {table} "
            f"column.{hint}"
        )
    return name


def _names(
    value: object, option: str, *, allow_empty: bool = False
) -> tuple[str, ...] | None:
    """A filter's list of names; None means no filter."""
    if value is None:
        return None
    names = _sequence(value, option)
    if not names:
        raise ConfigurationError(
            f"{option} is an empty list, which would match nothing. Leave it out "
            "to keep every row."
        )
    for name in names:
        if not isinstance(name, str) or (not name and not allow_empty):
            raise ConfigurationError(
                f"{option} must hold non-empty strings, not {name!r}."
            )
        if "\x00" in name:
            raise ConfigurationError(f"{option} holds a NUL character; remove it.")
    return tuple(cast(list[str], names))


def _level(value: object) -> int | None:
    """The lowest level kept, from a number or a level name."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in LEVELS:
            return LEVELS[text]
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        names = ", ".join(name for name in LEVELS if name != "warning")
        raise ConfigurationError(
            f"min_level = {value!r} is not a level. Give a number (9 is info) or "
            f"one of {names}."
        )
    return value


def _where(value: object, tables: tuple[TableName, ...]) -> Mapping[TableName, str]:
    """The raw SQL conditions per table, from one string or a mapping."""
    if value is None:
        return {}
    if isinstance(value, str) and value.lstrip().startswith("{"):
        # dlt's config hands a TOML table or JSON object over as its JSON text.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        return {table: _condition(value, "where") for table in tables}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "where must be an SQL condition, or map table names to conditions, "
            f"not {value!r}."
        )
    conditions: dict[TableName, str] = {}
    for table, condition in value.items():
        if table not in tables:
            raise ConfigurationError(
                f"where names the table {table!r}, which is not synced "
                f"(synced: {list(tables)})."
            )
        conditions[cast(TableName, table)] = _condition(condition, f"where[{table}]")
    return conditions


def _condition(value: object, option: str) -> str:
    """One raw SQL condition."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{option} must be a non-empty SQL condition, such as "
            f"\"service_name = 'api'\", not {value!r}."
        )
    if "\x00" in value:
        raise ConfigurationError(f"{option} holds a NUL character; remove it.")
    check_condition(value, option)
    return value.strip()


def _backfill(value: object) -> tuple[datetime, datetime] | None:
    """The event-time range a backfill re-reads, as ``[start, end)``."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigurationError(
            "backfill must be a pair (start, end) of instants, such as "
            f"['2026-05-01T00:00:00Z', '2026-05-02T00:00:00Z'], not {value!r}."
        )
    start = parse_instant(value[0], "backfill start")
    end = parse_instant(value[1], "backfill end")
    if not start < end:
        raise ConfigurationError(
            f"The backfill starts at {start.isoformat()}, which is not before its "
            f"end {end.isoformat()}. Give the earlier instant first."
        )
    return start, end


def _write_disposition(value: object) -> WriteDisposition:
    """How rows are written: merge (the default) or append."""
    if value is None:
        return "merge"
    if value not in ("merge", "append"):
        raise ConfigurationError(
            f"write_disposition = {value!r} is not supported. Use 'merge' (the "
            "default), or 'append' for destinations without merge, such as "
            "Parquet files."
        )
    return value


def _check_together(settings: Settings) -> None:
    """Checks that involve more than one option."""
    max_created_at_width(settings.lateness_back, settings.lateness_ahead)
    if settings.initial_window < MIN_WIDTH:
        raise ConfigurationError(
            f"initial_window = {settings.initial_window} is shorter than "
            f"{MIN_WIDTH}. Give at least one second."
        )
    if settings.initial_window > settings.max_width:
        raise ConfigurationError(
            f"initial_window = {settings.initial_window} (1h unless given) is "
            "wider than a window "
            "may be: one query scans at most 13 days (within Logfire's 14, "
            "counted in time or in calendar dates), and each window's scan "
            f"adds lateness_back ({settings.lateness_back}) and lateness_ahead "
            f"({settings.lateness_ahead}) to it. Choose at most "
            f"{settings.max_width}, or lower the lateness; later windows widen "
            "by themselves where the data is sparse."
        )
    if settings.lateness_back < _INGEST_BACK:
        logger.warning(
            "lateness_back is %s, less than the 24 hours by which Logfire keeps "
            "spans that started before they were stored: spans stored later "
            "than that after their start are never read. `verify` finds them.",
            settings.lateness_back,
        )
    if settings.lateness_ahead < INGEST_AHEAD:
        logger.warning(
            "lateness_ahead is %s, less than the hour by which Logfire keeps "
            "rows timestamped after they were stored: such rows are never "
            "read. `verify` finds them.",
            settings.lateness_ahead,
        )
    if settings.settle < _GUARANTEED_SETTLE:
        logger.warning(
            "settle is %s, shorter than the 5 minutes after which Logfire "
            "guarantees that no more rows are stored with a created_at: rows "
            "stored late may be missed.",
            settings.settle,
        )


def unreadable_config(name: str, value: object, hint: object) -> ConfigurationError:
    """The error for a value from dlt's config that is not of the option's type.

    dlt checks the source's options against their types when it reads them
    from config files and the environment, and its own message names neither
    the form it wants nor where to write it.
    """
    kind = str(hint).lower()
    variable = f"SOURCES__LOGFIRE__{name.upper()}"
    if "sequence" in kind or "list" in kind:
        form = (
            f'a list: {name} = ["a", "b"] under [sources.logfire] in '
            f'config.toml, or {variable}=\'["a", "b"]\' in the environment'
        )
    elif "bool" in kind:
        form = f"true or false, such as {variable}=true"
    elif "int" in kind:
        form = f"a whole number, such as {variable}=4"
    else:
        form = f"a value of type {hint}"
    return ConfigurationError(
        f"The option {name} is set to {value!r} in dlt's configuration, which "
        f"cannot be read as its type. Write {form}."
    )
