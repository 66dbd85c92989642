"""Reading windows at once: how far each reader may run ahead of the consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from connector.pager import read_windows
from connector.windows import Window, WindowPlanner

START = datetime(2026, 3, 1, tzinfo=UTC)
PAGE_ROWS = 100
BATCHES = 12
"""Batches of a page each in every window: more than one reader holds alone."""


def _planner(windows: int, concurrency: int) -> WindowPlanner:
    return WindowPlanner(
        START,
        START + timedelta(hours=windows),
        width=timedelta(hours=1),
        max_width=timedelta(hours=1),
        target_rows=BATCHES * PAGE_ROWS,
        page_rows=PAGE_ROWS,
        concurrency=concurrency,
    )


def _batch() -> pa.RecordBatch:
    return pa.record_batch({"n": list(range(PAGE_ROWS))})


def test_later_windows_are_read_whole_while_the_first_is_consumed() -> None:
    # Once a first window has shown that there are rows, the second does not
    # end until the third is read to its end, which its reader can only do if
    # it may hold the whole window unconsumed.
    third_read = threading.Event()
    second = START + timedelta(hours=1)

    def read(window: Window) -> Iterator[pa.RecordBatch]:
        yield _batch()
        if window.lo == START:
            return
        if window.lo == second:
            assert third_read.wait(timeout=20), "the third window stalled"
            return
        for _ in range(BATCHES - 1):
            yield _batch()
        third_read.set()

    items = list(read_windows(_planner(3, 2), read, concurrency=2))

    rows = [batch.num_rows for _, batch in items if batch is not None]
    assert rows == [PAGE_ROWS] * (2 + BATCHES)
    assert [window.lo for window, batch in items if batch is None] == [
        START,
        second,
        START + timedelta(hours=2),
    ]


def test_no_second_window_is_planned_before_rows_are_seen() -> None:
    # Until a window holds rows, nothing tells how wide the next should be,
    # and only the newest window can narrow: readers take one at a time.
    reading: list[Window] = []
    others_at_start: dict[datetime, int] = {}

    def read(window: Window) -> Iterator[pa.RecordBatch]:
        others_at_start[window.lo] = len(reading)
        reading.append(window)
        time.sleep(0.05)
        if window.lo >= START + timedelta(hours=2):
            yield _batch()
        reading.remove(window)

    items = list(read_windows(_planner(6, 3), read, concurrency=3))

    assert len([window for window, batch in items if batch is None]) == 6
    starts = [others_at_start[lo] for lo in sorted(others_at_start)]
    # Two empty windows, then the first with rows, each read alone; after it,
    # the readers share the rest.
    assert starts[:3] == [0, 0, 0]
    assert max(starts[3:]) > 0


def test_one_reader_stays_a_few_pages_ahead() -> None:
    held: list[int] = []
    produced = 0

    def read(window: Window) -> Iterator[pa.RecordBatch]:
        nonlocal produced
        for _ in range(BATCHES):
            produced += 1
            yield _batch()

    consumed = 0
    for _, batch in read_windows(_planner(1, 1), read, concurrency=1):
        if batch is not None:
            consumed += 1
            time.sleep(0.05)  # a slow consumer, so the reader runs ahead
            held.append(produced - consumed)

    assert consumed == BATCHES
    # Four pages in the buffer, one in the reader's hands, and no more.
    assert max(held) <= 5
