"""verify_counts: a page cut cleanly between batches, with no marker to show it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
import tenacity
from synchelp import NOW, TS, empty_metrics, make_records

from connector.client import LogfireClient
from connector.errors import LogfireSyncError
from connector.pager import WindowQuery, WindowStats, order_by, read_window
from connector.retry import RetryPolicy
from connector.sql import timestamp_literal
from connector.tables import RECORDS
from connector.windows import Window, created_at_scan
from sandbox.clock import Clock
from sandbox.server import SandboxServer
from sandbox.store import Store

WINDOW = Window(NOW - timedelta(hours=6), NOW - timedelta(minutes=5))
RUN_AT = NOW - timedelta(hours=3)
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0)


class CuttingReader:
    """A client whose chosen streams stop cleanly after their first batch.

    That is what a service without end-of-stream markers sends when a query
    stream is cut between two batches: to the client, a shorter result.
    """

    def __init__(
        self,
        client: LogfireClient,
        cut: set[int],
        empty: set[int] | None = None,
        *,
        says_unmarked: bool = True,
    ) -> None:
        self.client = client
        self.cut = cut
        self.empty = empty or set()
        self.says_unmarked = says_unmarked
        self.calls: list[str] = []

    def stream_arrow(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = 10_000,
        unmarked: Callable[[], None] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        number = len(self.calls)
        self.calls.append(sql)
        stream = self.client.stream_arrow(
            sql,
            min_timestamp=min_timestamp,
            max_timestamp=max_timestamp,
            limit=self.served(sql, limit),
            unmarked=unmarked,
        )
        if number in self.empty:
            stream.close()
            self._unmarked(unmarked)
            return
        for batch in stream:
            yield batch
            if number in self.cut:
                stream.close()
                self._unmarked(unmarked)
                return

    def served(self, sql: str, limit: int) -> int:
        """How many rows the service returns for a request of `limit`."""
        return limit

    def _unmarked(self, unmarked: Callable[[], None] | None) -> None:
        """Tell the caller what the client would: the marker did not come."""
        if unmarked is not None and self.says_unmarked:
            unmarked()

    def retrying(self) -> tenacity.Retrying:
        return FAST.retrying()


def equal_key_run(n: int) -> pa.Table:
    """`n` rows equal on the whole key, told apart by their attributes."""
    base = make_records(1, seed=7, start=RUN_AT, end=RUN_AT + timedelta(seconds=1))
    columns = {
        name: pa.array([base[name][0].as_py()] * n, base[name].type)
        for name in base.column_names
    }
    for name in ("created_at", "_visible_at", "start_timestamp"):
        columns[name] = pa.array([RUN_AT] * n, TS)
    columns["attributes"] = pa.array([json.dumps({"run": i}) for i in range(n)])
    return pa.table(columns)


def window_query() -> WindowQuery:
    low, high = created_at_scan(WINDOW, timedelta(hours=24), timedelta(hours=1))
    conditions = [
        f"created_at >= {timestamp_literal(WINDOW.lo)}",
        f"created_at < {timestamp_literal(WINDOW.hi)}",
    ]

    def where(extra: str | None) -> str:
        return " AND ".join([*conditions, f"({extra})"] if extra else conditions)

    def build(extra: str | None, limit: int) -> str:
        return (
            f"SELECT * FROM records WHERE {where(extra)} "
            f"ORDER BY {order_by(RECORDS.key)} LIMIT {limit}"
        )

    def count(extra: str | None) -> str:
        return f"SELECT COUNT(*) AS row_count FROM records WHERE {where(extra)}"

    return WindowQuery(
        build, RECORDS.key, WINDOW, "created_at", low, high, "records", count
    )


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    """A run of 40 equal keys amid 300 other rows, streamed 10 rows a batch."""
    others = make_records(300, seed=1, start=RUN_AT, end=WINDOW.hi)
    rows = pa.concat_tables([equal_key_run(40), others], promote_options="default")
    store = Store(rows, empty_metrics())
    clock = Clock(start=NOW, speed=1e-9)
    with SandboxServer(store, clock=clock, batch_rows=10) as running:
        yield running


def expected(server: SandboxServer) -> list[str]:
    table = server.store.visible("records", server.clock.now())
    return sorted(table["attributes"].to_pylist())


def read(
    server: SandboxServer,
    *,
    cut: set[int],
    page_size: int,
    verify: bool = True,
    empty: set[int] | None = None,
    says_unmarked: bool = True,
) -> tuple[list[str], CuttingReader, WindowStats]:
    stats = WindowStats()
    with LogfireClient(server.token, base_url=server.url, retry=FAST) as client:
        reader = CuttingReader(client, cut, empty, says_unmarked=says_unmarked)
        batches = list(
            read_window(
                reader,
                window_query(),
                page_size=page_size,
                stats=stats,
                verify_counts=verify,
            )
        )
    rows = pa.Table.from_batches(batches)
    return sorted(rows["attributes"].to_pylist()), reader, stats


def test_without_counts_a_clean_cut_loses_rows_silently(
    server: SandboxServer,
) -> None:
    # As if the stream had ended on its marker: nothing tells the cut.
    rows, _, _ = read(
        server, cut={0}, page_size=1_000, verify=False, says_unmarked=False
    )

    assert len(rows) == 10 < len(expected(server))


def test_a_cut_inside_a_run_of_equal_keys_is_read_again(
    server: SandboxServer,
) -> None:
    rows, reader, stats = read(server, cut={0}, page_size=1_000)

    assert rows == expected(server)
    assert stats.retries == 1
    # The cut page, its count, the page again, its count.
    assert [sql.startswith("SELECT COUNT") for sql in reader.calls] == [
        False,
        True,
        False,
        True,
    ]


def test_a_cut_re_read_of_one_whole_key_is_read_again(
    server: SandboxServer,
) -> None:
    # A page of 20 is all the run, so the run is re-read as one key (call 1).
    rows, reader, stats = read(server, cut={1}, page_size=20)

    assert rows == expected(server)
    assert stats.retries == 1
    assert "COUNT" not in reader.calls[0]
    assert "COUNT" in reader.calls[2]


def test_a_re_read_of_one_whole_key_cut_before_its_first_batch_is_read_again(
    server: SandboxServer,
) -> None:
    rows, _, stats = read(server, cut=set(), empty={1}, page_size=20)

    assert rows == expected(server)
    assert stats.retries == 1


def test_every_short_page_costs_one_count_and_full_pages_none(
    server: SandboxServer,
) -> None:
    rows, reader, stats = read(server, cut=set(), page_size=100)
    pages = [sql for sql in reader.calls if not sql.startswith("SELECT COUNT")]

    assert rows == expected(server)
    assert stats.retries == 0
    assert len(pages) == 4
    assert len(reader.calls) == len(pages) + 1


def test_a_count_without_a_count_query_is_refused(server: SandboxServer) -> None:
    query = window_query()
    bare = WindowQuery(
        query.build,
        query.key,
        query.window,
        query.window_column,
        query.min_timestamp,
        query.max_timestamp,
        query.label,
    )
    with (
        LogfireClient(server.token, base_url=server.url, retry=FAST) as client,
        pytest.raises(LogfireSyncError, match="no count query"),
    ):
        list(read_window(client, bare, page_size=100, verify_counts=True))


class CappingReader(CuttingReader):
    """A service that returns at most so many rows a page, whatever is asked.

    The n-th page is capped at ``caps[n]``, and the pages after the last at
    the last cap; counts are not capped.
    """

    def __init__(self, client: LogfireClient, caps: list[int]) -> None:
        super().__init__(client, cut=set())
        self.caps = caps
        self.pages = 0

    def served(self, sql: str, limit: int) -> int:
        if sql.startswith("SELECT COUNT"):
            return limit
        self.pages += 1
        return min(limit, self.caps[min(self.pages, len(self.caps)) - 1])


@pytest.mark.parametrize("caps", [[50], [40], [100, 1, 100], [50, 3, 50]])
def test_a_service_that_returns_fewer_rows_than_asked_is_read_whole(
    server: SandboxServer, caplog: pytest.LogCaptureFixture, caps: list[int]
) -> None:
    # The window holds a run of 40 rows equal on the whole key.
    stats = WindowStats()
    with LogfireClient(server.token, base_url=server.url, retry=FAST) as client:
        reader = CappingReader(client, caps)
        batches = list(
            read_window(
                reader, window_query(), page_size=100, stats=stats, verify_counts=True
            )
        )

    rows = pa.Table.from_batches(batches)
    assert sorted(rows["attributes"].to_pylist()) == expected(server)
    assert stats.retries == 0
    # At most one count a page: only short pages are counted.
    pages = [sql for sql in reader.calls if not sql.startswith("SELECT COUNT")]
    assert len(pages) < len(reader.calls) <= 2 * len(pages)
    assert caplog.text.count("it returns fewer rows than asked") == 1


def test_without_the_marker_a_short_page_is_read_again_not_taken_as_capped(
    server: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    stats = WindowStats()
    with LogfireClient(
        server.token, base_url=server.url, retry=FAST, require_end_marker=False
    ) as client:
        reader = CuttingReader(client, cut={0}, says_unmarked=False)
        batches = list(
            read_window(
                reader,
                window_query(),
                page_size=1_000,
                stats=stats,
                verify_counts=True,
                marker_required=False,
            )
        )

    rows = pa.Table.from_batches(batches)
    assert sorted(rows["attributes"].to_pylist()) == expected(server)
    assert stats.retries == 1
    assert "fewer rows than asked" not in caplog.text


def test_a_run_of_ties_longer_than_a_capped_service_returns_fails_naming_it(
    server: SandboxServer,
) -> None:
    # The run of 40 equal keys, from a service that returns 30 rows at most.
    with LogfireClient(server.token, base_url=server.url, retry=FAST) as client:
        pages = read_window(
            CappingReader(client, [30]),
            window_query(),
            page_size=100,
            verify_counts=True,
        )
        with pytest.raises(LogfireSyncError, match="At least 30 records rows share"):
            list(pages)
