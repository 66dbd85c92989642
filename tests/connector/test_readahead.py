"""Chunks of `chunk_rows` rows, and the reading parked between them."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from synchelp import (
    NOW,
    assert_same_rows,
    destination,
    expected_rows,
    make_records,
    sandbox,
)

from connector import TableSynced, WindowLoaded
from connector.client import LogfireClient
from connector.errors import TransientError
from connector.readahead import Item, ReadAhead, Reading
from connector.sync import run_backfill, run_sync
from connector.windows import Window, WindowPlanner
from sandbox.engine import QueryRequest, QueryResult
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

HORIZON = NOW - timedelta(minutes=5)
FROM = NOW - timedelta(hours=6)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# The parked reading, on its own.


class _Source:
    """Items of windows a minute wide, counting how many were taken."""

    def __init__(self, windows: int, *, fail_at: int | None = None) -> None:
        self.windows = windows
        self.fail_at = fail_at
        self.taken = 0
        self.closed = False

    def items(self) -> Iterator[Item]:
        try:
            for number in range(self.windows):
                window = _window(number)
                for part in range(2):
                    if self.fail_at == self.taken:
                        raise TransientError("the service went away")
                    self.taken += 1
                    yield window, pa.table({"n": [number], "part": [part]})
                self.taken += 1
                yield window, None
        finally:
            self.closed = True


def _window(number: int) -> Window:
    return Window(T0 + timedelta(minutes=number), T0 + timedelta(minutes=number + 1))


def _reading(source: _Source) -> Reading:
    planner = WindowPlanner(
        T0,
        _window(source.windows - 1).hi,
        width=timedelta(minutes=1),
        max_width=timedelta(hours=1),
        target_rows=10,
        page_rows=10,
    )
    client = LogfireClient("token", base_url="http://127.0.0.1:9")
    return Reading(source.items(), _window(source.windows - 1).hi, planner, client)


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the parked reading did not drain"
        time.sleep(0.01)


def _plain(items: Iterator[Item]) -> list[tuple[Window, Any]]:
    return [(w, None if b is None else b.to_pylist()) for w, b in items]


def _spooled_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("logfire-sync-*/*/*.arrow"))


@pytest.fixture
def spool_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where parked readings without a folder of their own write their rows."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    return tmp_path


def test_a_parked_reading_drains_to_disk_and_resumes_in_order(spool_root: Path) -> None:
    source = _Source(windows=4)
    expected = _plain(_Source(windows=4).items())[3:]
    reading = _reading(source)
    first = [next(reading.items) for _ in range(3)]
    assert first[-1] == (_window(0), None)

    read_ahead = ReadAhead(hold_seconds=2)
    read_ahead.park("records/watermark", _window(0).hi, reading, spool_rows=100)
    _wait_until(lambda: source.closed)
    # Held in memory first, as a quick load would take them over from there.
    assert _spooled_files(spool_root) == []
    _wait_until(lambda: len(_spooled_files(spool_root)) == 6)

    resumed = read_ahead.take("records/watermark", _window(0).hi)
    assert resumed is not None
    assert resumed.end == reading.end
    assert _plain(resumed.items) == expected
    resumed.close()
    read_ahead.close()
    assert list(spool_root.glob("logfire-sync-*")) == []


def test_after_quick_take_overs_a_parked_reading_keeps_its_rows_in_memory(
    spool_root: Path,
) -> None:
    read_ahead = ReadAhead(hold_seconds=30)
    for _ in range(2):
        source = _Source(windows=2)
        read_ahead.park("t/watermark", T0, _reading(source), spool_rows=100)
        _wait_until(lambda source=source: source.closed)
        assert _spooled_files(spool_root) == []
        resumed = read_ahead.take("t/watermark", T0)
        assert resumed is not None
        assert _plain(resumed.items) == _plain(_Source(windows=2).items())
    read_ahead.close()


def test_after_a_long_park_the_next_reading_goes_to_disk_at_once(
    spool_root: Path,
) -> None:
    read_ahead = ReadAhead(hold_seconds=0.2)
    first = _Source(windows=2)
    read_ahead.park("t/watermark", T0, _reading(first), spool_rows=100)
    _wait_until(lambda: len(_spooled_files(spool_root)) == 4)
    time.sleep(0.3)
    resumed = read_ahead.take("t/watermark", T0)
    assert resumed is not None
    resumed.close()

    # The load took longer than the hold: the next one may take as long.
    second = _Source(windows=2)
    read_ahead.park("t/watermark", T0, _reading(second), spool_rows=100)
    _wait_until(lambda: second.closed)
    assert len(_spooled_files(spool_root)) == 4
    read_ahead.close()


def test_a_reading_parked_at_every_chunk_of_a_long_sync_goes_on_in_order() -> None:
    # More chunks than Python's recursion limit, as a long backfill has.
    chunks = 1_200
    source = _Source(windows=chunks)
    read_ahead = ReadAhead(hold_seconds=60)
    reading = _reading(source)
    got = []
    for number in range(chunks):
        start = _window(number).lo
        read_ahead.park("t/watermark", start, reading, spool_rows=3)
        resumed = read_ahead.take("t/watermark", start)
        assert resumed is not None
        reading = resumed
        got += _plain(itertools.islice(reading.items, 3))

    assert got == _plain(_Source(windows=chunks).items())
    assert next(reading.items, None) is None
    read_ahead.close()


def test_a_parked_reading_stops_writing_at_its_row_bound() -> None:
    source = _Source(windows=10)
    read_ahead = ReadAhead()
    read_ahead.park("t/watermark", T0, _reading(source), spool_rows=3)
    time.sleep(0.3)
    assert source.taken == 4  # three rows, and the end of the first window
    assert not source.closed

    resumed = read_ahead.take("t/watermark", T0)
    assert resumed is not None
    assert _plain(resumed.items) == _plain(_Source(windows=10).items())
    assert source.closed
    read_ahead.close()


def test_a_failure_while_parked_is_raised_where_it_happened() -> None:
    source = _Source(windows=3, fail_at=4)
    read_ahead = ReadAhead()
    read_ahead.park("t/watermark", T0, _reading(source), spool_rows=100)
    _wait_until(lambda: source.closed)

    resumed = read_ahead.take("t/watermark", T0)
    assert resumed is not None
    got: list[Window] = []

    def consume() -> None:
        for window, _ in resumed.items:
            got.append(window)

    with pytest.raises(TransientError, match="went away"):
        consume()
    assert got == [_window(0)] * 3 + [_window(1)]
    read_ahead.close()


def test_a_reading_parked_elsewhere_is_closed_not_resumed() -> None:
    source = _Source(windows=50)
    read_ahead = ReadAhead()
    read_ahead.park("t/watermark", T0, _reading(source), spool_rows=10)

    assert read_ahead.take("t/watermark", T0 + timedelta(seconds=1)) is None
    assert source.closed
    assert read_ahead.take("t/watermark", T0) is None
    read_ahead.close()


def test_closing_stops_every_parked_reading() -> None:
    sources = [_Source(windows=1_000) for _ in range(2)]
    read_ahead = ReadAhead()
    for number, source in enumerate(sources):
        read_ahead.park(f"t{number}/watermark", T0, _reading(source), spool_rows=5)

    read_ahead.close()

    assert all(source.closed for source in sources)
    assert all(source.taken < 1_000 for source in sources)
    assert not [t for t in threading.enumerate() if t.name == "logfire-read-ahead"]


# Chunks of rows, end to end.


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(12_000, seed=31, start=NOW - timedelta(hours=6), end=NOW)
    with sandbox(records) as running:
        yield running


def _options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": FROM.isoformat(),
        "tables": ["records"],
        "page_size": 500,
        "target_pages": 2,
        "initial_window": "10m",
        **extra,
    }


def _visible(server: SandboxServer) -> pa.Table:
    return expected_rows(server.store.visible("records", server.clock.now()), HORIZON)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_row_chunks_load_every_row_once_and_read_no_page_twice(
    server: SandboxServer, tmp_path: Path, concurrency: int
) -> None:
    whole = destination(tmp_path, "whole")
    server.counters.reset()
    one = run_sync(whole.pipeline, **_options(server, concurrency=concurrency))
    served_once = server.counters.snapshot()["rows_served"]

    chunked = destination(tmp_path, "chunked")
    server.counters.reset()
    events: list[WindowLoaded | TableSynced] = []
    many = run_sync(
        chunked.pipeline,
        progress=events.append,
        **_options(server, concurrency=concurrency, chunk_rows=1_500),
    )

    assert one.chunks == 1
    assert many.chunks >= 6
    assert many.caught_up
    assert_same_rows(chunked.table("records"), _visible(server))
    assert many.rows == one.rows == _visible(server).num_rows
    # No page is read twice: beyond the rows loaded, only the few rows of tie
    # runs held back at page ends are served again; a chunk that takes a
    # parked reading over goes by its clock, so no chunk asks for it again.
    served = server.counters.snapshot()["rows_served"]
    assert served - many.rows < 100
    assert served_once - one.rows < 100
    chunks = _chunks(events)
    if concurrency == 1:
        # One reader: windows aim at 1,000 rows, or at what the chunk has room
        # for, and the chunk ends once less than a page (500 rows) is left.
        for chunk in chunks[:-1]:
            assert sum(chunk[:-1]) <= 1_000 < sum(chunk)
        assert many.requests > one.requests
    else:
        # Windows aim at a third of a chunk: a chunk ends at the first window
        # boundary where one more would take it past 1,500, and not before.
        for chunk in chunks[:-1]:
            assert sum(chunk[:-1]) + 500 <= 1_500 < sum(chunk) + 500
        assert max(len(chunk) for chunk in chunks) >= concurrency
    assert not [t for t in threading.enumerate() if t.name == "logfire-read-ahead"]


def _chunks(events: list[WindowLoaded | TableSynced]) -> list[list[int]]:
    """The rows of each window, chunk by chunk."""
    chunks: list[list[int]] = [[]]
    for event in events:
        if isinstance(event, WindowLoaded):
            chunks[-1].append(event.rows)
        else:
            chunks.append([])
    return [chunk for chunk in chunks if chunk]


def test_a_sync_cut_short_between_row_chunks_goes_on_exactly(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    first = run_sync(dest.pipeline, max_chunks=2, **_options(server, chunk_rows=2_000))
    assert not first.caught_up
    assert 0 < dest.count("records") < _visible(server).num_rows

    rest = run_sync(dest.pipeline, **_options(server, chunk_rows=2_000))

    assert rest.caught_up
    assert first.rows + rest.rows == _visible(server).num_rows
    assert_same_rows(dest.table("records"), _visible(server))


def test_a_backfill_in_row_chunks_merges_into_one_copy(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **_options(server))

    report = run_backfill(
        dest.pipeline, FROM, NOW, **_options(server, chunk_rows=2_500)
    )

    assert report.caught_up
    assert report.chunks >= 4
    assert_same_rows(dest.table("records"), _visible(server))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_row_chunks_stay_exact_while_the_service_fails_now_and_then(
    server: SandboxServer, tmp_path: Path, concurrency: int
) -> None:
    dest = destination(tmp_path)
    # Faults land on reads made while a chunk loads as well as during extract;
    # small batches let a cut stream fall in the middle of a page.
    server.faults = FaultPlan.parse(
        "rate=0.25,kinds=503+429+drop_during+truncate,seed=3,retry_after=0"
    )
    server.counters.reset()
    try:
        report = run_sync(
            dest.pipeline,
            **_options(
                server, concurrency=concurrency, chunk_rows=1_500, max_attempts=20
            ),
        )
    finally:
        server.faults = FaultPlan.none()

    assert sum(server.counters.snapshot()["faults"].values()) >= 5
    assert report.caught_up
    assert report.chunks >= 6
    assert_same_rows(dest.table("records"), _visible(server))


def test_chunk_rows_must_be_a_positive_whole_number(
    server: SandboxServer, tmp_path: Path
) -> None:
    from connector.errors import ConfigurationError

    dest = destination(tmp_path)
    with pytest.raises(ConfigurationError, match="chunk_rows"):
        run_sync(dest.pipeline, **_options(server, chunk_rows=0))


def test_a_killed_runs_spool_is_cleared_by_the_next_run(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path, "spooled")
    left = Path(dest.pipeline.working_dir) / "logfire-read-ahead" / "logfire-sync-x"
    left.mkdir(parents=True)
    (left / "0.arrow").write_bytes(b"rows a killed run read ahead")

    report = run_sync(dest.pipeline, **_options(server, chunk_rows=1_500))

    assert report.chunks >= 6
    assert not left.parent.exists() or not any(left.parent.iterdir())


def test_chunk_bytes_must_be_at_least_a_mebibyte(
    server: SandboxServer, tmp_path: Path
) -> None:
    from connector.errors import ConfigurationError

    dest = destination(tmp_path)
    with pytest.raises(ConfigurationError, match="chunk_bytes"):
        run_sync(dest.pipeline, **_options(server, chunk_bytes=2**20 - 1))


# Wide rows: chunks and pages bounded in bytes.


class _PageLimits:
    """The sandbox's engine, noting the `limit` each page of rows asked for."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.limits: list[int] = []

    def execute(self, request: QueryRequest) -> QueryResult:
        if "ORDER BY" in request.sql:
            self.limits.append(request.limit)
        result: QueryResult = self.engine.execute(request)
        return result


def _wide(records: pa.Table, size: int) -> pa.Table:
    """`records` whose attributes each hold a prompt of about `size` bytes."""
    prompts = [
        json.dumps({"i": i, "gen_ai.prompt": "p" * size}) for i in range(len(records))
    ]
    index = records.schema.get_field_index("attributes")
    return records.set_column(index, "attributes", pa.array(prompts, pa.string()))


def test_wide_rows_are_read_in_pages_and_chunks_bounded_in_bytes(
    tmp_path: Path,
) -> None:
    records = _wide(
        make_records(900, seed=33, start=NOW - timedelta(hours=6), end=NOW), 20_000
    )
    dest = destination(tmp_path, "wide")
    with sandbox(records) as wide:
        limits = _PageLimits(wide._service.engine)
        wide._service.engine = limits
        options = {
            "read_token": wide.token,
            "base_url": wide.url,
            "start": FROM.isoformat(),
            "tables": ["records"],
            "initial_window": "20m",
            "chunk_bytes": 2 * 2**20,
        }
        first = run_sync(dest.pipeline, **options)
        first_limits = list(limits.limits)
        wide.clock.advance(timedelta(hours=1))
        limits.limits.clear()
        later = run_sync(dest.pipeline, **options)

    # The first page asks for 10,000 rows; once 20 KB rows are seen, pages
    # and chunks fit in 2 MiB, about 100 rows, where rows alone (200,000)
    # would have made one chunk.
    assert first_limits[0] == 10_000
    assert max(first_limits[1:]) <= 110
    assert first.chunks >= 6
    assert 0 < first.rows < 900
    # The width is kept in the state: the next run's pages fit from the first.
    (state,) = _table_states(dest.pipeline)
    assert 20_000 < state["row_bytes"] < 22_000
    assert later.rows == 900 - first.rows
    assert limits.limits
    assert max(limits.limits) <= 110
    assert_same_rows(dest.table("records"), expected_rows(records, NOW))


def _table_states(pipeline: Any) -> list[dict[str, Any]]:
    sources = pipeline.state["sources"]
    return [
        resource
        for source in sources.values()
        for resource in source.get("resources", {}).values()
        if "row_bytes" in resource
    ]
