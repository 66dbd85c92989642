"""Reading one window completely, page by page, and many windows in order.

A window's rows are read in the order of a total-order key, at most a page at a
time. A page that comes back full may have been cut short by the service's row
cap, so the next page continues from the last key seen (keyset paging).

The key need not be unique: span events can share every key column. So the
trailing run of rows equal to a page's last key is held back, and the next page
starts *at* that key (``key >= held``), reading the run again whole. A page that
is one run from end to end is re-read as exactly that key with the largest
limit the service allows; should even that come back full, the sync fails
rather than lose rows.

Rows are passed on as their batches arrive. When a stream breaks, reading
resumes at the held key after the retry policy's wait: rows already passed on
all sort before it, so none is passed on twice and none is missed.

A stream cut cleanly between two batches is told apart by its missing
end-of-stream marker. The Arrow format lets a writer end a stream by closing it
instead, and to a service that does, a cut page looks like a short last page.
So a short page that arrived without the marker (and, with `verify_counts`,
every short page) is checked by a ``COUNT(*)`` of the rows at or after its last
key: they must be exactly the page's own trailing run. A full page needs no
check, since a cut would have left it short. A mismatch is handled like a
broken stream.

:func:`read_windows` reads several windows at once in threads, each into a
buffer bounded in rows, and passes their rows on strictly in window order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import tenacity

from connector.arrow import TIMESTAMP, plain_columns
from connector.errors import (
    IncompleteResponseError,
    LogfireSyncError,
    RateLimitedError,
    RetryableError,
)
from connector.sql import (
    quote_identifier,
    quote_literal,
    text_value,
    timestamp_literal,
)
from connector.tables import KeyColumn
from connector.windows import Window, WindowPlanner

__all__ = [
    "MAX_LIMIT",
    "Cursor",
    "Narrow",
    "Reader",
    "WindowQuery",
    "WindowStats",
    "key_condition",
    "key_expression",
    "order_by",
    "read_window",
    "read_windows",
]

logger = logging.getLogger(__name__)

MAX_LIMIT: Final = 10_000
"""The most rows the service returns for one request."""

_GATHER_ROWS: Final = 1_000
"""Batches of fewer rows are put together up to this many before they are checked."""

_KEY_TYPES: Final = {"timestamp": TIMESTAMP, "text": pa.string()}
"""The type a key column of each kind is compared in."""

Operator = Literal[">=", ">", "="]


class Reader(Protocol):
    """The part of the client that the pager uses."""

    def stream_arrow(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = MAX_LIMIT,
        unmarked: Callable[[], None] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Run one query and yield its batches as they arrive.

        A stream that ends without its end-of-stream marker calls `unmarked`,
        or fails as incomplete when there is none.
        """
        ...

    def retrying(self) -> tenacity.Retrying:
        """The retry policy."""
        ...


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: the rows whose key compares to `values` so."""

    op: Operator
    values: tuple[pa.Scalar, ...]


@dataclass(frozen=True)
class WindowQuery:
    """Everything the pager needs to read one window.

    Attributes:
        build: Makes a page's SQL from an extra condition (the keyset
            condition, or None for the first page) and a row limit.
        key: The total order the SQL sorts by.
        window: The window, which every row's `window_column` must lie in.
        window_column: The column the window is on.
        min_timestamp: The request's lower bound on the table's time column.
        max_timestamp: The request's upper bound on the same column.
        label: Names the query in messages, such as ``records``.
        count: Makes the SQL counting the window's rows that meet an extra
            condition (None for all of them), for `verify_counts`.
    """

    build: Callable[[str | None, int], str]
    key: tuple[KeyColumn, ...]
    window: Window
    window_column: str
    min_timestamp: datetime
    max_timestamp: datetime | None
    label: str
    count: Callable[[str | None], str] | None = None


Narrow = Callable[[Window, int, datetime], WindowQuery | None]
"""Given a window, its rows read so far and how far they reached: a narrower one."""


@dataclass
class WindowStats:
    """What reading windows cost; safe to share between reader threads."""

    rows: int = 0
    pages: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, rows: int = 0, pages: int = 0, retries: int = 0) -> None:
        """Count more rows, pages or retries."""
        with self._lock:
            self.rows += rows
            self.pages += pages
            self.retries += retries


def key_expression(column: KeyColumn) -> str:
    """The SQL for one key column, with nulls replaced as the key says."""
    name = quote_identifier(column.name)
    if column.null_as is None:
        return name
    return f"COALESCE({name}, {_null_literal(column)})"


def order_by(key: Sequence[KeyColumn]) -> str:
    """The ORDER BY list that sorts rows by `key`."""
    return ", ".join(f"{key_expression(column)} ASC" for column in key)


def key_condition(key: Sequence[KeyColumn], cursor: Cursor) -> str:
    """The SQL condition ``key <op> cursor``, spelled out with AND and OR.

    DataFusion accepts only plain literals in row-value comparisons, so
    ``(a, b) > (x, y)`` becomes ``a > x OR (a = x AND b > y)``, nested.
    """
    parts = [
        (key_expression(column), _literal(value, column))
        for column, value in zip(key, cursor.values, strict=True)
    ]
    if cursor.op == "=":
        return " AND ".join(f"{expr} = {literal}" for expr, literal in parts)

    last_expr, last_literal = parts[-1]
    condition = f"{last_expr} {cursor.op} {last_literal}"
    for expr, literal in reversed(parts[:-1]):
        condition = f"{expr} > {literal} OR ({expr} = {literal} AND ({condition}))"

    # The leading term alone lets the engine prune by the first key column.
    first_expr, first_literal = parts[0]
    return f"{first_expr} >= {first_literal} AND ({condition})"


def read_window(
    reader: Reader,
    query: WindowQuery,
    *,
    page_size: int | Callable[[], int],
    stats: WindowStats | None = None,
    verify_counts: bool = False,
    narrow: Narrow | None = None,
    marker_required: bool | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield every row of a window exactly once, in key order.

    `page_size` may be a callable, asked before each page: the rows a page
    asks for may shrink once the window's first pages show how wide they are.

    With `narrow`, and a key that starts with the window's column, each full
    page asks it whether to finish in a narrower window: it is given the
    window, the rows read so far and the last one's value of the window's
    column, and returns the query of a window with the same start that ends
    after that value, or None. Every row read so far lies in the narrower
    window, so the pages go on from the same cursor within it.

    A short page whose stream ends without its end-of-stream marker is
    confirmed by a count query, if `query.count` is set, and with
    `verify_counts` every short page is (see the module's docstring; it needs
    `query.count`). Where the count finds more rows after a page whose stream
    ended on its marker, the service returned fewer rows than asked, and the
    reading goes on after that page as after a full one. Only a reader that
    requires the marker tells such a page from a cut one: `marker_required`,
    unless given, is what the reader's own `require_end_marker` says (a
    reader without one is taken to require it).

    Raises:
        LogfireSyncError: If the service breaks the protocol (too many rows,
            rows outside the window or out of order), or if more than 10,000
            rows share one whole key.
        RetryableError: When the retries are used up.
    """
    if verify_counts and query.count is None:
        raise LogfireSyncError(
            f"Cannot verify the row counts of {query.label}: its window query "
            "has no count query. Give WindowQuery a count."
        )
    pager = _Pager(
        reader,
        query,
        page_size,
        stats or WindowStats(),
        verify_counts,
        narrow,
        marker_required=(
            getattr(reader, "require_end_marker", True)
            if marker_required is None
            else marker_required
        ),
    )
    yield from pager.run()


class _Retrier:
    """Applies a tenacity policy to a loop that is not a single call."""

    def __init__(self, retrying: tenacity.Retrying) -> None:
        self._retrying = retrying
        self._state = tenacity.RetryCallState(retrying, None, (), {})

    def failed(self, error: RetryableError) -> None:
        """Wait before the next attempt, or raise `error` if none is left."""
        policy, state = self._retrying, self._state
        state.set_exception((type(error), error, error.__traceback__))
        if not policy.retry(state):
            raise error

        wait = float(policy.wait(state))
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        state.upcoming_sleep = wait

        if policy.stop(state):
            if policy.retry_error_callback is not None:
                policy.retry_error_callback(state)
            raise error

        if policy.before_sleep is not None:
            policy.before_sleep(state)
        policy.sleep(wait)
        state.idle_for += wait
        state.prepare_for_next_attempt()


@dataclass
class _Page:
    """One request's worth of a window: what arrived, what was passed on."""

    cursor: Cursor | None
    limit: int
    rows: int = 0
    emitted: int = 0
    held: list[pa.RecordBatch] = field(default_factory=list)
    held_key: tuple[pa.Scalar, ...] | None = None
    last_key: tuple[pa.Scalar, ...] | None = None
    unmarked: bool = False

    def mark_unmarked(self) -> None:
        """Note that the page's stream ended without its end-of-stream marker."""
        self.unmarked = True

    def resume_cursor(self) -> Cursor | None:
        """Where to start again if this page's stream breaks now."""
        if self.emitted and self.held_key is not None:
            return Cursor(">=", self.held_key)
        return self.cursor


class _CappedPageError(Exception):
    """A whole page held fewer rows than asked, though more remain."""


class _Pager:
    """The state machine behind :func:`read_window`."""

    def __init__(
        self,
        reader: Reader,
        query: WindowQuery,
        page_size: int | Callable[[], int],
        stats: WindowStats,
        verify_counts: bool = False,
        narrow: Narrow | None = None,
        *,
        marker_required: bool = True,
    ) -> None:
        self._reader = reader
        self._query = query
        self._rows = 0
        self._marker_required = marker_required
        self._said_short = False
        # A narrower window's query keeps the column and key: fixed per window.
        self._timed = {query.window_column, *(c.name for c in query.key)}
        ordered_by_window = query.key[0].name == query.window_column
        self._narrow = narrow if ordered_by_window else None
        if callable(page_size):
            self._page_size = page_size
        else:
            fixed = page_size
            self._page_size = lambda: fixed
        self._stats = stats
        self._verify_counts = verify_counts

    def run(self) -> Iterator[pa.RecordBatch]:
        """Read pages until the window is complete."""
        cursor: Cursor | None = None
        limit = self._page_size()
        retrier = _Retrier(self._reader.retrying())

        while True:
            page = _Page(cursor, limit)
            try:
                yield from self._read(page)
                if self._counts(page) and page.rows < page.limit:
                    self._verify_tail(page)
            except _CappedPageError:
                # Rows remain after a whole stream: go on as after a full page.
                page.limit = page.rows
            except RetryableError as error:
                self._stats.add(retries=1)
                if page.emitted:
                    retrier = _Retrier(self._reader.retrying())
                cursor = page.resume_cursor()
                retrier.failed(error)
                continue
            retrier = _Retrier(self._reader.retrying())

            next_cursor = self._after(page)
            if page.rows < page.limit:
                yield from self._release(page)
            if next_cursor is None:
                return
            cursor, limit = next_cursor
            self._rows += page.rows
            self._narrow_after(page)

    def _narrow_after(self, page: _Page) -> None:
        """Go on in a narrower window if `narrow` says so after a full page."""
        if self._narrow is None or page.last_key is None:
            return
        reached = _utc(page.last_key[0].as_py())
        assert reached is not None
        window = self._query.window
        query = self._narrow(window, self._rows, reached)
        if query is None:
            return
        narrower = query.window
        if narrower.lo != window.lo or not reached < narrower.hi <= window.hi:
            raise ValueError(
                f"The window {window} cannot narrow to {narrower} after rows up "
                f"to {reached.isoformat()}."
            )
        logger.debug("%s: narrowing the window %s to %s", query.label, window, narrower)
        self._query = query

    def _counts(self, page: _Page) -> bool:
        """Whether a short `page` must be confirmed by a count."""
        return self._verify_counts or page.unmarked

    def _after(self, page: _Page) -> tuple[Cursor, int] | None:
        """The cursor and limit of the page that follows `page`, if any."""
        equal_reread = page.cursor is not None and page.cursor.op == "="
        if page.rows < page.limit:
            if equal_reread and page.held_key is not None:
                return Cursor(">", page.held_key), self._page_size()
            return None

        if equal_reread or (not page.emitted and page.limit >= MAX_LIMIT):
            raise self._tie_overflow(page)
        if page.emitted and page.held_key is not None:
            return Cursor(">=", page.held_key), self._page_size()

        # The whole page is one run of equal keys: read exactly that key.
        assert page.held_key is not None
        return Cursor("=", page.held_key), MAX_LIMIT

    def _read(self, page: _Page) -> Iterator[pa.RecordBatch]:
        """Send one page's request and pass its rows on as they arrive."""
        query = self._query
        extra = None if page.cursor is None else key_condition(query.key, page.cursor)
        sql = query.build(extra, page.limit)
        self._stats.add(pages=1)

        stream = self._reader.stream_arrow(
            sql,
            min_timestamp=query.min_timestamp,
            max_timestamp=query.max_timestamp,
            limit=page.limit,
            # Without a count to confirm it, a page needs the marker.
            unmarked=None if query.count is None else page.mark_unmarked,
        )
        with _closing(stream):
            for batch in _gathered(map(self._check_precision, stream)):
                yield from self._take(page, plain_columns(batch))
        self._check_end(page)

    def _check_precision(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Refuse key timestamps finer than the microseconds pages are cut at.

        A cursor written in microseconds would fall before such a value, and
        the next page would repeat rows already passed on.
        """
        for entry, column in zip(batch.schema, batch.columns, strict=True):
            kind = entry.type
            if entry.name not in self._timed or not pa.types.is_timestamp(kind):
                continue
            if kind.unit != "ns":
                continue
            try:
                # A safe cast refuses to drop digits.
                column.cast(pa.timestamp("us", tz=kind.tz))
            except pa.ArrowInvalid:
                raise LogfireSyncError(
                    f"The service sent {entry.name} of {self._query.label} with "
                    "nanoseconds, but Logfire's timestamps are microseconds, and "
                    "pages are cut at a key written in microseconds: the next "
                    "page would repeat rows already read. Report this to the "
                    "service's maintainers."
                ) from None
        return batch

    def _take(self, page: _Page, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Check a batch, pass on what precedes its last key, hold the rest."""
        keys = self._key_arrays(batch)
        self._check(page, batch, keys)
        page.rows += batch.num_rows

        last = tuple(array[-1] for array in keys)
        page.last_key = last
        if page.held_key is not None and _same(page.held_key, last):
            page.held.append(batch)
            return

        yield from self._release(page)
        run = _run_length(keys, last)
        head = batch.num_rows - run
        if head:
            page.emitted += head
            self._stats.add(rows=head)
            yield batch.slice(0, head)
        page.held = [batch.slice(head)]
        page.held_key = last

    def _release(self, page: _Page) -> Iterator[pa.RecordBatch]:
        """Pass on the held rows."""
        held, page.held = page.held, []
        for batch in held:
            page.emitted += batch.num_rows
            self._stats.add(rows=batch.num_rows)
            yield batch

    def _key_arrays(self, batch: pa.RecordBatch) -> list[pa.Array]:
        """The key's columns of `batch`, nulls replaced as in the SQL."""
        names = batch.schema.names
        if len(set(names)) < len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise self._violation(
                f"the result holds more than one column named {', '.join(twice)}"
            )
        arrays = []
        for column in self._query.key:
            index = batch.schema.get_field_index(column.name)
            if index < 0:
                raise self._violation(
                    f"the result has no {column.name!r} column, which the pages "
                    "are ordered by"
                )
            array = batch.column(index)
            if pa.types.is_null(array.type):
                # A service may type a column by its values, all null here.
                array = pa.nulls(len(array), _KEY_TYPES[column.kind])
            if column.null_as is not None:
                array = pc.fill_null(array, _null_scalar(column, array.type))
            elif array.null_count:
                raise self._violation(
                    f"the key column {column.name!r} holds nulls, so the rows "
                    "cannot be paged through"
                )
            if column.kind == "text":
                self._check_text(column.name, array)
            arrays.append(array)
        return arrays

    def _check_text(self, name: str, array: pa.Array) -> None:
        """Refuse key text that is not UTF-8, which no cursor can be written of.

        Arrow's readers take text as it comes; a service that cuts a value in
        the middle of a character would fail the cursor with a decoding error.
        """
        try:
            array.validate(full=True)
        except pa.ArrowInvalid:
            raise self._violation(
                f"the key column {name!r} holds text that is not valid UTF-8"
            ) from None

    def _check(self, page: _Page, batch: pa.RecordBatch, keys: list[pa.Array]) -> None:
        """Refuse a batch that breaks the protocol."""
        if page.rows + batch.num_rows > page.limit:
            raise self._violation(
                f"a page asked for at most {page.limit} rows returned more"
            )
        self._check_window(batch)

        previous = page.last_key or (page.cursor.values if page.cursor else None)
        if previous is None:
            # The first batch of a window still has its own rows to order.
            previous = tuple(array[0] for array in keys)
        if not _ordered(previous, keys):
            raise self._violation(
                "the rows did not come back in the order the query asked for"
            )
        if page.last_key is None and page.cursor is not None:
            first = tuple(array[0] for array in keys)
            if page.cursor.op == ">" and _same(first, page.cursor.values):
                raise self._violation("a page repeated the key it had to start after")
            if page.cursor.op == "=" and not _same(
                tuple(array[-1] for array in keys), page.cursor.values
            ):
                raise self._violation("a page returned rows of another key")

    def _check_window(self, batch: pa.RecordBatch) -> None:
        """Refuse rows outside the window."""
        query = self._query
        index = batch.schema.get_field_index(query.window_column)
        if index < 0:
            raise self._violation(f"the result has no {query.window_column!r} column")
        column = batch.column(index)
        if not pa.types.is_timestamp(column.type):
            raise LogfireSyncError(
                f"The column {query.window_column!r} of {query.label}, which the "
                f"windows are cut on, is of type {column.type}, not a timestamp. "
                "Choose a timestamp column as the cursor, or cast it in the query."
            )
        bounds = pc.min_max(column).as_py()
        low, high = _utc(bounds["min"]), _utc(bounds["max"])
        if low is None or high is None:
            raise self._violation(f"the column {query.window_column!r} holds nulls")
        if low < query.window.lo or high >= query.window.hi:
            raise self._violation(
                f"rows with {query.window_column} from {low.isoformat()} to "
                f"{high.isoformat()} came back for the window {query.window}"
            )

    def _verify_tail(self, page: _Page) -> None:
        """Confirm by a count that a short page held the whole rest of its range.

        Rows at or after the page's last key were never passed on by an
        earlier page, so they must be exactly the run the page holds back (for
        an `=` re-read, the whole page; for an empty page, nothing). The count
        has retries of its own, so that a failed count does not cost the page.

        Raises:
            IncompleteResponseError: If the service counts other than the page
                had, or the count's own retries run out.
        """
        cursor, received = page.cursor, page.rows
        if page.last_key is not None and (cursor is None or cursor.op != "="):
            cursor = Cursor(">=", page.last_key)
            received = sum(batch.num_rows for batch in page.held)

        counted: int = self._reader.retrying()(self._count, cursor)
        whole = self._marker_required and not page.unmarked
        if counted > received and page.rows and whole:
            self._say_short(page, counted - received)
            raise _CappedPageError
        if counted != received:
            raise IncompleteResponseError(
                f"A page of {self._query.label} in the window {self._query.window} "
                f"ended after {page.rows} rows, but the service counts {counted} "
                f"rows where the page had {received}: its stream was cut short "
                "without an end-of-stream marker. Reading again from the last key."
            )

    def _say_short(self, page: _Page, more: int) -> None:
        """Warn, once a window, of a service that returns fewer rows than asked."""
        if self._said_short:
            return
        self._said_short = True
        logger.warning(
            "A page of %s in the window %s asked for %s rows and ended on its "
            "marker after %s, but the service counts %s more: it returns fewer "
            "rows than asked. Each such page is followed by another from its "
            "last key.",
            self._query.label,
            self._query.window,
            page.limit,
            page.rows,
            more,
        )

    def _count(self, cursor: Cursor | None) -> int:
        """How many of the window's rows the service counts from `cursor` on."""
        query = self._query
        assert query.count is not None
        extra = None if cursor is None else key_condition(query.key, cursor)
        stream = self._reader.stream_arrow(
            query.count(extra),
            min_timestamp=query.min_timestamp,
            max_timestamp=query.max_timestamp,
            limit=1,
            # One row or none: a cut can only leave none, which fails below.
            unmarked=_accept,
        )
        with _closing(stream):
            values = [batch.column(0)[0] for batch in stream if batch.num_rows]
        if not values:
            raise IncompleteResponseError(
                f"Counting the rows of {query.label} in the window {query.window} "
                "returned no row; its stream was cut short. Counting again."
            )
        counted = values[0].as_py()
        if isinstance(counted, bool) or not isinstance(counted, int):
            raise self._violation(f"a row count came back as {counted!r}")
        return counted

    def _check_end(self, page: _Page) -> None:
        """Refuse an `=` re-read whose rows were not all of its key."""
        if page.cursor is not None and page.cursor.op == "=" and page.rows == 0:
            if self._counts(page):
                # Without the marker, a stream cut before its first batch is
                # also empty: worth reading again.
                raise IncompleteResponseError(
                    f"Re-reading a run of equal keys of {self._query.label} in "
                    f"the window {self._query.window} returned no rows. Reading "
                    "it again."
                )
            raise self._violation("re-reading a run of equal keys returned no rows")

    def _tie_overflow(self, page: _Page) -> LogfireSyncError:
        """The error for a run of equal keys too long to read in one request."""
        names = ", ".join(column.name for column in self._query.key)
        values = ", ".join(str(value) for value in page.held_key or ())
        return LogfireSyncError(
            f"At least {page.rows} {self._query.label} rows share one whole key "
            f"({names} = {values}) in the window {self._query.window}, more than "
            "one request can return, so they cannot be read without losing "
            "some. Narrow the sync with filters (service_names, where) so that "
            "fewer rows share a key; rows that are copies of one another can "
            "only be left out, with a where."
        )

    def _violation(self, what: str) -> LogfireSyncError:
        """The error for a response that breaks the query protocol."""
        return LogfireSyncError(
            f"The service broke the query protocol while reading "
            f"{self._query.label} in the window {self._query.window}: {what}. "
            "Nothing from this window was committed; report this to the "
            "service's maintainers."
        )


def _gathered(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The non-empty batches of a stream, small ones put together.

    A service may stream a page in batches of a few rows each (one per file
    or partition it scanned), and every batch costs the checks, the shaping
    and dlt about the same whatever its size.
    """
    small: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        if not small and batch.num_rows >= _GATHER_ROWS:
            yield batch
            continue
        small.append(plain_columns(batch))
        rows += batch.num_rows
        if rows >= _GATHER_ROWS:
            yield _joined(small)
            small, rows = [], 0
    if small:
        yield _joined(small)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of `batches`, which share a stream's schema."""
    if len(batches) == 1:
        return batches[0]
    return pa.concat_batches(batches)


@contextlib.contextmanager
def _closing(iterator: Iterator[object]) -> Iterator[None]:
    """Close a generator when the block ends, however it ends."""
    try:
        yield
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()


def _same(left: Sequence[pa.Scalar], right: Sequence[pa.Scalar]) -> bool:
    """Whether two keys are equal, column by column."""
    return all(a.equals(b) for a, b in zip(left, right, strict=True))


def _run_length(keys: list[pa.Array], last: tuple[pa.Scalar, ...]) -> int:
    """How many rows of a sorted batch are equal to its last key."""
    mask = None
    for array, value in zip(keys, last, strict=True):
        equal = pc.equal(array, value)
        mask = equal if mask is None else pc.and_(mask, equal)
    assert mask is not None
    return int(pc.sum(mask).as_py() or 0)


def _ordered(previous: Sequence[pa.Scalar], keys: list[pa.Array]) -> bool:
    """Whether `previous`, then the rows of `keys`, never decrease."""
    ok: pa.Array | None = None
    for value, array in reversed(list(zip(previous, keys, strict=True))):
        full = pa.concat_arrays([pa.array([value.as_py()], array.type), array])
        before, after = full.slice(0, len(full) - 1), full.slice(1)
        if ok is None:
            ok = pc.greater_equal(after, before)
        else:
            ok = pc.or_(pc.greater(after, before), pc.and_(pc.equal(after, before), ok))
    assert ok is not None
    return bool(pc.all(ok).as_py())


def _utc(value: object) -> datetime | None:
    """A timestamp from Arrow as an aware UTC datetime."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _null_literal(column: KeyColumn) -> str:
    """The SQL literal a null in `column` compares as."""
    assert column.null_as is not None
    if column.kind == "timestamp":
        return timestamp_literal(datetime.fromisoformat(column.null_as))
    return quote_literal(column.null_as)


def _null_scalar(column: KeyColumn, arrow_type: pa.DataType) -> pa.Scalar:
    """The Arrow value a null in `column` compares as."""
    assert column.null_as is not None
    if column.kind == "timestamp":
        return pa.scalar(datetime.fromisoformat(column.null_as), arrow_type)
    return pa.scalar(column.null_as, arrow_type)


def _literal(value: pa.Scalar, column: KeyColumn) -> str:
    """A key value as an SQL literal of its own type."""
    arrow_type = value.type
    python = value.as_py()
    if pa.types.is_timestamp(arrow_type):
        stamp = _utc(python)
        assert stamp is not None
        return timestamp_literal(stamp)
    # Pages reach here as plain_columns leaves them: text is a plain string.
    if pa.types.is_string(arrow_type):
        return text_value(python)
    if pa.types.is_boolean(arrow_type):
        return "TRUE" if python else "FALSE"
    if pa.types.is_integer(arrow_type):
        return str(int(python))
    if pa.types.is_floating(arrow_type) and _finite(python):
        return repr(float(python))
    if pa.types.is_date(arrow_type):
        return f"CAST({quote_literal(python.isoformat())} AS DATE)"
    raise LogfireSyncError(
        f"Cannot page by the column {column.name!r} of type {arrow_type}: use a "
        "timestamp, text, integer, boolean or date column as the key."
    )


def _finite(value: object) -> bool:
    """Whether `value` is a finite float, fit for a literal."""
    return isinstance(value, float) and value == value and abs(value) != float("inf")


# Reading many windows at once.

_AHEAD_PAGES: Final = 4
"""Pages one reader may hold unconsumed, when it reads alone."""

_POLL_SECONDS: Final = 0.1

_Item = (
    tuple[Literal["batch"], pa.RecordBatch]
    | tuple[Literal["end"], int]
    | tuple[Literal["error"], BaseException]
)


class _ConsumerGoneError(Exception):
    """The consumer went away: a worker drops its window."""


class _WindowBuffer:
    """A window's items between its reader and the consumer, bounded in rows.

    The reader waits while the buffer holds `limit()` rows or more, so a batch
    always fits into a buffer below the limit, however many rows it has. The
    limit is asked each time, as it shrinks once the rows turn out wide.
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self._items: deque[_Item] = deque()
        self._rows = 0
        self._limit = limit
        self._changed = threading.Condition()

    def put(self, item: _Item, timeout: float) -> bool:
        """Add `item` once there is room; False if `timeout` passed first."""
        with self._changed:
            if not self._changed.wait_for(self._has_room, timeout):
                return False
            self._items.append(item)
            self._rows += _item_rows(item)
            self._changed.notify_all()
            return True

    def get(self) -> _Item:
        """Take the oldest item, waiting for one."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._rows -= _item_rows(item)
            self._changed.notify_all()
            return item

    def _has_room(self) -> bool:
        return self._rows < self._limit()


def _item_rows(item: _Item) -> int:
    return int(item[1].num_rows) if item[0] == "batch" else 0


def _buffer_rows(planner: WindowPlanner, concurrency: int) -> int:
    """How many rows each window's reader may hold unconsumed.

    One reader needs only a few pages ahead of the consumer. With more, the
    consumer takes windows in order, so the readers of the later windows must
    be able to hold all of theirs: otherwise they wait for the window being
    consumed, and reading goes no faster than with one reader. Windows aim at
    `target_rows`, so together they hold about a chunk at most.
    """
    ahead = _AHEAD_PAGES * planner.page_rows
    if concurrency == 1:
        return ahead
    return max(ahead, planner.target_rows)


@dataclass
class _Slot:
    """One planned window and the buffer its reader fills."""

    window: Window
    items: _WindowBuffer


class _Fetcher:
    """Threads that read planned windows ahead of the consumer."""

    def __init__(
        self,
        planner: WindowPlanner,
        read: Callable[[Window], Iterator[pa.RecordBatch]],
        concurrency: int,
    ) -> None:
        self._planner = planner
        self._read = read
        self._concurrency = concurrency
        self._lock = threading.Condition()
        # By where each window starts: one that narrows hands the rest of its
        # range back, to be read after windows planned before it.
        self._slots: dict[datetime, _Slot] = {}
        self._finished_planning = False
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._window_failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"logfire-fetch-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def __iter__(self) -> Iterator[tuple[Window, pa.RecordBatch | None]]:
        for thread in self._threads:
            thread.start()
        try:
            yield from self._consume()
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()

    def _consume(self) -> Iterator[tuple[Window, pa.RecordBatch | None]]:
        """Yield each window's batches, then (window, None), in window order."""
        lo = self._planner.start
        while True:
            slot = self._wait_for(lo)
            if slot is None:
                return
            while True:
                item = slot.items.get()
                if item[0] == "batch":
                    yield slot.window, item[1]
                elif item[0] == "end":
                    # As read: a narrowed window ends where the next begins.
                    yield slot.window, None
                    lo = slot.window.hi
                    break
                else:
                    raise item[1]

    def _wait_for(self, lo: datetime) -> _Slot | None:
        """The slot of the window that starts at `lo`, once it is planned.

        Raises:
            LogfireSyncError: If planning stopped short of `lo`, which only a
                failed window can make it do; its error, if known.
        """
        with self._lock:
            while lo not in self._slots:
                if self._failure is not None:
                    raise self._failure
                if self._finished_planning:
                    if lo >= self._planner.end:
                        return None
                    raise self._window_failure or LogfireSyncError(
                        f"No window was planned from {lo.isoformat()} on, before "
                        f"{self._planner.end.isoformat()}. Nothing after it was "
                        "committed; report this to the connector's maintainers."
                    )
                self._lock.wait()
            return self._slots.pop(lo)

    def _work(self) -> None:
        """Plan the next window, read it into its slot, and repeat."""
        try:
            self._work_until_done()
        except BaseException as error:
            # A failure outside any window's reading: the consumer must hear
            # of it rather than wait for a window that never comes.
            with self._lock:
                self._failure = error
                self._finished_planning = True
                self._lock.notify_all()

    def _work_until_done(self) -> None:
        """The loop of :meth:`_work`."""
        while not self._stop.is_set():
            slot = self._plan()
            if slot is None:
                return
            try:
                self._fill(slot)
            except _ConsumerGoneError:
                return
            except BaseException as error:
                with self._lock:
                    self._window_failure = self._window_failure or error
                self._finish_planning()
                self._put(slot, ("error", error), final=True)
                return

    def _plan(self) -> _Slot | None:
        """Take the next window from the planner and give it a slot.

        A window being read may still narrow, handing the rest of its range
        back, so planning ends only once the range is covered and no window
        is in flight; until then, and until the planner is ready for another
        window, an idle reader waits.
        """
        with self._lock:
            window = None
            while not self._finished_planning and not self._stop.is_set():
                if self._planner.ready:
                    window = self._planner.next_window()
                if window is not None or (
                    self._planner.done and not self._planner.in_flight
                ):
                    break
                self._lock.wait(_POLL_SECONDS)
            if window is None:
                self._finished_planning = True
                self._lock.notify_all()
                return None
            slot = _Slot(window, _WindowBuffer(self._buffer_limit))
            self._slots[window.lo] = slot
            self._lock.notify_all()
            return slot

    def _buffer_limit(self) -> int:
        return _buffer_rows(self._planner, self._concurrency)

    def _finish_planning(self) -> None:
        """Plan no more windows: one has failed."""
        with self._lock:
            self._finished_planning = True
            self._lock.notify_all()

    def _fill(self, slot: _Slot) -> None:
        """Read a window into its slot, and tell the planner its rows."""
        rows = 0
        batches = self._read(slot.window)
        with _closing(batches):
            for batch in batches:
                rows += batch.num_rows
                # One float's assignment: no lock needed, even among readers.
                self._planner.measure(batch.num_rows, batch.nbytes)
                self._put(slot, ("batch", batch))
        # Before the end reaches the consumer, which asks the planner whether
        # the window closes a chunk.
        slot.window = self._planner.as_read(slot.window)
        with self._lock:
            self._planner.observe(slot.window, rows)
            self._lock.notify_all()
        self._put(slot, ("end", rows))

    def _put(self, slot: _Slot, item: _Item, *, final: bool = False) -> None:
        """Queue an item, giving up if the consumer has gone away."""
        while not slot.items.put(item, timeout=_POLL_SECONDS):
            if self._stop.is_set():
                if final:
                    return
                raise _ConsumerGoneError()


def read_windows(
    planner: WindowPlanner,
    read: Callable[[Window], Iterator[pa.RecordBatch]],
    *,
    concurrency: int = 1,
) -> Iterator[tuple[Window, pa.RecordBatch | None]]:
    """Read the planner's windows in threads and yield them in window order.

    Yields ``(window, batch)`` for each batch, then ``(window, None)`` once the
    window is complete. Reading runs ahead of the consumer in ``concurrency``
    threads (one thread still overlaps fetching with whatever the consumer
    does). Alone, a reader holds at most a few pages unconsumed; with others,
    up to its window's planned rows, so that the readers of later windows need
    not wait for the one being consumed. A window that fails raises its error
    when the consumer reaches it.
    """
    yield from _Fetcher(planner, read, concurrency)


def _accept() -> None:
    """Take a stream without its end-of-stream marker as it is."""
