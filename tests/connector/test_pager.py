"""Reading one window page by page from the sandbox: ties, bursts, broken streams."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
import tenacity
from synchelp import NOW, TS, make_records, sandbox

from connector.client import LogfireClient
from connector.errors import IncompleteResponseError, LogfireSyncError
from connector.pager import (
    WindowQuery,
    WindowStats,
    key_condition,
    order_by,
    read_window,
)
from connector.retry import RetryPolicy
from connector.sql import timestamp_literal
from connector.tables import RECORDS
from connector.windows import Window, created_at_scan
from sandbox.server import SandboxServer

WINDOW = Window(NOW - timedelta(hours=6), NOW - timedelta(minutes=5))
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0)


def tied_rows(n: int, *, created_offset: timedelta, same_key: bool) -> pa.Table:
    """`n` rows stored at one instant; with `same_key`, equal on the whole key."""
    base = make_records(n, seed=7, start=NOW, end=NOW + timedelta(seconds=1))
    created = NOW - timedelta(hours=3) + created_offset
    columns = {name: base[name] for name in base.column_names}
    columns["created_at"] = pa.array([created] * n, TS)
    columns["_visible_at"] = pa.array([created] * n, TS)
    columns["start_timestamp"] = pa.array([created] * n, TS)
    columns["attributes"] = pa.array([json.dumps({"row": i}) for i in range(n)])
    if same_key:
        for name in ("trace_id", "span_id", "kind", "span_name", "message"):
            columns[name] = pa.array([base[name][0].as_py()] * n)
    return pa.table(columns)


def window_query(window: Window = WINDOW) -> WindowQuery:
    low, high = created_at_scan(window, timedelta(hours=24), timedelta(hours=1))

    def build(extra: str | None, limit: int) -> str:
        conditions = [
            f"created_at >= {timestamp_literal(window.lo)}",
            f"created_at < {timestamp_literal(window.hi)}",
        ]
        if extra:
            conditions.append(f"({extra})")
        return (
            f"SELECT * FROM records WHERE {' AND '.join(conditions)} "
            f"ORDER BY {order_by(RECORDS.key)} LIMIT {limit}"
        )

    return WindowQuery(build, RECORDS.key, window, "created_at", low, high, "records")


def read_all(
    server: SandboxServer, page_size: int, stats: WindowStats | None = None
) -> pa.Table:
    with LogfireClient(server.token, base_url=server.url, retry=FAST) as client:
        batches = list(
            read_window(client, window_query(), page_size=page_size, stats=stats)
        )
    return pa.Table.from_batches(batches)


def expected(server: SandboxServer) -> pa.Table:
    table = server.store.visible("records", server.clock.now())
    mask = pa.compute.and_(
        pa.compute.greater_equal(table["created_at"], pa.scalar(WINDOW.lo, TS)),
        pa.compute.less(table["created_at"], pa.scalar(WINDOW.hi, TS)),
    )
    return table.filter(mask)


def attribute_multiset(table: pa.Table) -> list[str]:
    return sorted(table["attributes"].to_pylist())


@pytest.fixture
def mixed() -> Iterator[SandboxServer]:
    """Ordinary rows, a burst of 12,000 at one instant, 250 with one whole key."""
    ordinary = make_records(3_000, seed=1, start=WINDOW.lo, end=WINDOW.hi)
    burst = tied_rows(12_000, created_offset=timedelta(0), same_key=False)
    ties = tied_rows(250, created_offset=timedelta(seconds=1), same_key=True)
    rows = pa.concat_tables([ordinary, burst, ties])
    with sandbox(rows) as server:
        yield server


def test_a_burst_sharing_one_created_at_arrives_whole(mixed: SandboxServer) -> None:
    stats = WindowStats()
    table = read_all(mixed, 10_000, stats)
    assert table.num_rows == expected(mixed).num_rows == 15_250
    assert attribute_multiset(table) == attribute_multiset(expected(mixed))
    assert stats.pages == 2


def test_small_pages_with_heavy_ties_lose_and_repeat_nothing() -> None:
    rows = pa.concat_tables(
        [
            make_records(1_000, seed=2, start=WINDOW.lo, end=WINDOW.hi),
            tied_rows(700, created_offset=timedelta(0), same_key=False),
            tied_rows(250, created_offset=timedelta(seconds=1), same_key=True),
            tied_rows(99, created_offset=timedelta(seconds=2), same_key=True),
            tied_rows(100, created_offset=timedelta(seconds=3), same_key=True),
        ]
    )
    with sandbox(rows) as server:
        table = read_all(server, 100)
        assert attribute_multiset(table) == attribute_multiset(expected(server))


def test_a_window_narrowed_after_a_page_reads_the_narrower_one_once(
    mixed: SandboxServer,
) -> None:
    calls: list[tuple[Window, int, datetime]] = []
    cut: list[Window] = []

    def narrow(window: Window, rows: int, reached: datetime) -> WindowQuery | None:
        calls.append((window, rows, reached))
        if cut:
            return None
        cut.append(Window(window.lo, reached + timedelta(minutes=30)))
        return window_query(cut[0])

    with LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client:
        pages = read_window(client, window_query(), page_size=1_000, narrow=narrow)
        table = pa.Table.from_batches(list(pages))

    (narrower,) = cut
    wanted = expected(mixed).filter(
        pa.compute.less(expected(mixed)["created_at"], pa.scalar(narrower.hi, TS))
    )
    assert 1_000 < table.num_rows < expected(mixed).num_rows
    assert attribute_multiset(table) == attribute_multiset(wanted)
    assert calls[0][:2] == (WINDOW, 1_000)
    assert all(window == narrower for window, _, _ in calls[1:])
    assert [rows for _, rows, _ in calls] == sorted({rows for _, rows, _ in calls})


def test_a_narrower_window_that_drops_rows_already_read_is_refused(
    mixed: SandboxServer,
) -> None:
    def narrow(window: Window, rows: int, reached: datetime) -> WindowQuery:
        return window_query(Window(window.lo, reached))

    with (
        LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client,
        pytest.raises(ValueError, match="cannot narrow"),
    ):
        list(read_window(client, window_query(), page_size=1_000, narrow=narrow))


class RewritingReader:
    """A client whose streamed batches pass through `rewrite` on their way."""

    def __init__(self, client: LogfireClient) -> None:
        self.client = client

    def stream_arrow(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = 10_000,
        unmarked: Callable[[], None] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        stream = self.client.stream_arrow(
            sql,
            min_timestamp=min_timestamp,
            max_timestamp=max_timestamp,
            limit=limit,
            unmarked=unmarked,
        )
        for batch in stream:
            yield from self.rewrite(batch)

    def rewrite(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        yield batch

    def retrying(self) -> tenacity.Retrying:
        return FAST.retrying()


class RowByRowReader(RewritingReader):
    """Streams that come one row a batch, with empty batches between."""

    def rewrite(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        for row in range(batch.num_rows):
            yield batch.slice(row, 1)
            yield batch.slice(row, 0)


def test_rows_streamed_one_a_batch_are_passed_on_in_few_batches() -> None:
    rows = pa.concat_tables(
        [
            make_records(2_500, seed=4, start=WINDOW.lo, end=WINDOW.hi),
            tied_rows(300, created_offset=timedelta(0), same_key=False),
            tied_rows(40, created_offset=timedelta(seconds=1), same_key=True),
        ]
    )
    with (
        sandbox(rows) as server,
        LogfireClient(server.token, base_url=server.url, retry=FAST) as client,
    ):
        batches = list(
            read_window(RowByRowReader(client), window_query(), page_size=1_000)
        )
        wanted = expected(server)

    table = pa.Table.from_batches(batches)
    assert attribute_multiset(table) == attribute_multiset(wanted)
    # Three pages of 1,000 rows and the rest: a few batches each, held runs
    # included, rather than one for every row.
    assert len(batches) <= 12


class NanosecondReader(RewritingReader):
    """Streams that carry `created_at` in nanoseconds, plus `extra`."""

    def __init__(self, client: LogfireClient, extra: int) -> None:
        super().__init__(client)
        self.extra = pa.scalar(extra, pa.duration("ns"))

    def rewrite(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        index = batch.schema.get_field_index("created_at")
        nanos = batch.column(index).cast(pa.timestamp("ns", tz="UTC"))
        shifted = pa.compute.add(nanos, self.extra)
        yield batch.set_column(index, "created_at", shifted)


@pytest.mark.parametrize("extra", [0, 789])
def test_created_at_in_nanoseconds_pages_or_is_refused_plainly(
    mixed: SandboxServer, extra: int
) -> None:
    # A cursor in microseconds falls before a finer value: the next page
    # would repeat rows, which only plain microseconds avoid.
    with LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client:
        reader = NanosecondReader(client, extra)
        pages = read_window(reader, window_query(), page_size=1_000)
        if extra:
            with pytest.raises(LogfireSyncError, match="nanoseconds"):
                list(pages)
            return
        table = pa.Table.from_batches(list(pages))
    assert attribute_multiset(table) == attribute_multiset(expected(mixed))


class CutTextReader(RewritingReader):
    """Streams that carry `message` cut in the middle of a character."""

    def rewrite(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        cut = pa.array(["\u00e9".encode()[:1]] * batch.num_rows, pa.binary())
        text = pa.Array.from_buffers(pa.string(), batch.num_rows, cut.buffers())
        index = batch.schema.get_field_index("message")
        yield batch.set_column(index, "message", text)


def test_key_text_that_is_not_utf8_is_refused_naming_the_column(
    mixed: SandboxServer,
) -> None:
    with (
        LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client,
        pytest.raises(LogfireSyncError, match="'message' holds text that is not"),
    ):
        list(read_window(CutTextReader(client), window_query(), page_size=1_000))


def test_rows_come_in_key_order(mixed: SandboxServer) -> None:
    table = read_all(mixed, 1_000)
    names = [column.name for column in RECORDS.key]
    keys = [tuple(row[n] for n in names) for row in table.select(names).to_pylist()]
    assert keys == sorted(keys)


def test_ten_thousand_rows_with_one_whole_key_fail_loudly() -> None:
    rows = tied_rows(10_000, created_offset=timedelta(0), same_key=True)
    with sandbox(rows) as server, pytest.raises(LogfireSyncError, match="share one"):
        read_all(server, 500)


def test_a_truncated_stream_resumes_without_loss_or_repeats(
    mixed: SandboxServer,
) -> None:
    mixed.faults.force("truncate", 3)
    stats = WindowStats()
    table = read_all(mixed, 10_000, stats)
    assert attribute_multiset(table) == attribute_multiset(expected(mixed))
    assert stats.retries == 3


def test_when_retries_run_out_the_error_propagates(mixed: SandboxServer) -> None:
    mixed.faults.force("truncate", 10)
    with pytest.raises(IncompleteResponseError):
        read_all(mixed, 10_000)


def test_keyset_conditions_are_spelled_out() -> None:
    batch = pa.record_batch(
        {
            "created_at": pa.array([NOW], TS),
            "trace_id": ["t"],
            "span_id": ["s"],
            "kind": ["span"],
            "start_timestamp": pa.array([NOW], TS),
            "span_name": ["n"],
            "message": ["it's"],
        }
    )
    from connector.pager import Cursor

    values = tuple(batch.column(i)[0] for i in range(batch.num_columns))
    after = key_condition(RECORDS.key, Cursor(">", values))
    assert "(" in after
    assert " OR " in after
    assert "'it''s'" in after
    assert key_condition(RECORDS.key, Cursor("=", values)).count(" AND ") == 6


def test_rows_outside_the_window_fail_loudly(mixed: SandboxServer) -> None:
    honest = window_query()
    narrower = Window(NOW - timedelta(hours=1), WINDOW.hi)
    lying = WindowQuery(
        honest.build,
        honest.key,
        narrower,
        "created_at",
        honest.min_timestamp,
        honest.max_timestamp,
        "records",
    )
    with (
        LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client,
        pytest.raises(LogfireSyncError, match="came back for the window"),
    ):
        list(read_window(client, lying, page_size=10_000))


def test_rows_out_of_key_order_fail_loudly(mixed: SandboxServer) -> None:
    honest = window_query()
    descending = WindowQuery(
        lambda extra, limit: honest.build(extra, limit).replace(" ASC", " DESC"),
        honest.key,
        honest.window,
        "created_at",
        honest.min_timestamp,
        honest.max_timestamp,
        "records",
    )
    with (
        LogfireClient(mixed.token, base_url=mixed.url, retry=FAST) as client,
        pytest.raises(LogfireSyncError, match="order"),
    ):
        list(read_window(client, descending, page_size=10_000))


def test_a_window_read_in_one_batch_out_of_key_order_fails_loudly() -> None:
    # Nothing precedes the first batch of a window to compare it with: its
    # rows are checked against each other.
    honest = window_query()
    descending = WindowQuery(
        lambda extra, limit: honest.build(extra, limit).replace(" ASC", " DESC"),
        honest.key,
        honest.window,
        "created_at",
        honest.min_timestamp,
        honest.max_timestamp,
        "records",
    )
    rows = make_records(50, seed=9, start=WINDOW.lo, end=WINDOW.hi)
    with (
        sandbox(rows) as server,
        LogfireClient(server.token, base_url=server.url, retry=FAST) as client,
        pytest.raises(LogfireSyncError, match="order"),
    ):
        list(read_window(client, descending, page_size=10_000))


def test_a_key_holding_nul_characters_pages_on_without_loss() -> None:
    # Data may hold NUL, which no SQL literal can: the page boundary's message
    # has to be written as an expression the service compares equal to it.
    rows = make_records(60, seed=3, start=WINDOW.lo, end=WINDOW.hi)
    messages = [f"payload\x00{i}\x00" for i in range(rows.num_rows)]
    index = rows.schema.get_field_index("message")
    rows = rows.set_column(index, "message", pa.array(messages))
    with sandbox(rows) as server:
        table = read_all(server, 7)
        assert attribute_multiset(table) == attribute_multiset(expected(server))
        assert sorted(table["message"].to_pylist()) == sorted(messages)
