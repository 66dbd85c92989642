"""The window planner: windows tile time, respect the 14-day scan, adapt."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigurationError
from connector.windows import (
    MAX_SCAN,
    MIN_WIDTH,
    Window,
    WindowPlanner,
    created_at_scan,
    event_time_scan,
    max_created_at_width,
)

START = datetime(2026, 5, 1, tzinfo=UTC)
BACK = timedelta(hours=24)
AHEAD = timedelta(hours=1)


def plan_all(planner: WindowPlanner, rows_per_window: list[int]) -> list[Window]:
    windows = []
    index = 0
    while (window := planner.next_window()) is not None:
        windows.append(window)
        rows = rows_per_window[index % len(rows_per_window)]
        planner.observe(window, rows)
        index += 1
    return windows


def planner(end: datetime, **overrides: object) -> WindowPlanner:
    options: dict[str, object] = {
        "width": timedelta(hours=1),
        "max_width": max_created_at_width(BACK, AHEAD),
        "target_rows": 200_000,
        "page_rows": 10_000,
    }
    options.update(overrides)
    return WindowPlanner(START, end, **options)  # type: ignore[arg-type]


def assert_tiles(windows: list[Window], start: datetime, end: datetime) -> None:
    assert windows[0].lo == start
    assert windows[-1].hi == end
    for before, after in itertools.pairwise(windows):
        assert before.hi == after.lo


@settings(max_examples=60, deadline=None)
@given(
    span_us=st.integers(min_value=1, max_value=60 * 86_400 * 1_000_000),
    rows=st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=1),
    width_s=st.floats(min_value=0.5, max_value=30 * 86_400),
    concurrency=st.integers(min_value=1, max_value=16),
)
def test_windows_tile_the_range_with_no_gap_or_overlap(
    span_us: int, rows: list[int], width_s: float, concurrency: int
) -> None:
    end = START + timedelta(microseconds=span_us)
    windows = plan_all(
        planner(end, width=timedelta(seconds=width_s), concurrency=concurrency), rows
    )
    assert_tiles(windows, START, end)
    for window in windows:
        low, high = created_at_scan(window, BACK, AHEAD)
        assert high - low <= MAX_SCAN


def test_quiet_data_grows_windows_eightfold_up_to_the_cap() -> None:
    end = START + timedelta(days=60)
    windows = plan_all(planner(end), [0])
    widths = [window.width for window in windows]
    assert widths[:3] == [timedelta(hours=1), timedelta(hours=8), timedelta(hours=64)]
    assert max(widths) == max_created_at_width(BACK, AHEAD)
    assert len(windows) < 12


def test_dense_data_narrows_windows_to_the_target() -> None:
    end = START + timedelta(days=1)
    # 1,000,000 rows an hour: the target of 200,000 rows is 12 minutes.
    plan = planner(end)
    first = plan.next_window()
    assert first is not None
    plan.observe(first, 1_000_000)
    assert plan.width == timedelta(minutes=12)


def test_one_reader_fills_each_chunk_after_a_small_first_window() -> None:
    # 10,000 rows an hour; the first window, an hour wide, holds a twentieth
    # of a chunk, so the next aims at the rest of it.
    cutter = planner(START + timedelta(days=3), chunk_rows=200_000)
    chunks: list[int] = [0]
    while (window := cutter.next_window()) is not None:
        rows = round(window.width / timedelta(hours=1) * 10_000)
        cutter.observe(window, rows)
        chunks[-1] += rows
        if cutter.closes_chunk(window):
            chunks.append(0)

    assert chunks[:3] == [200_000, 200_000, 200_000]
    assert sum(chunks) == 720_000


def test_a_chunk_ends_with_the_window_that_leaves_too_little_for_another() -> None:
    # Windows aim at 100,000 rows: after a first hour of 90,000, a window of
    # 100,000 would leave 10,000 of the chunk, so the second takes all 110,000.
    cutter = planner(START + timedelta(days=3), chunk_rows=200_000, target_rows=100_000)
    chunks: list[list[int]] = [[]]
    while (window := cutter.next_window()) is not None:
        rows = round(window.width / timedelta(hours=1) * 90_000)
        cutter.observe(window, rows)
        chunks[-1].append(rows)
        if cutter.closes_chunk(window):
            chunks.append([])

    assert chunks[:3] == [[90_000, 110_000], [100_000, 100_000], [100_000, 100_000]]


def test_the_last_chunk_of_a_sync_plans_no_window_after_its_end() -> None:
    cutter = planner(START + timedelta(days=3), chunk_rows=200_000, target_rows=100_000)
    cutter.end_with_chunk(START)
    windows = plan_all(cutter, [90_000, 110_000, 100_000])

    assert windows[0].lo == START
    assert len(windows) == 2
    assert cutter.closes_chunk(windows[-1])
    assert cutter.done


def test_more_readers_leave_chunks_to_the_consumer() -> None:
    cutter = planner(START + timedelta(days=3), chunk_rows=200_000, concurrency=2)
    windows = plan_all(cutter, [250_000])
    assert cutter.chunk_rows is None
    assert not any(cutter.closes_chunk(window) for window in windows)


def test_a_window_far_denser_than_planned_narrows_to_about_its_aim() -> None:
    # An hour planned blind: its first 10,000 rows took 30 seconds, so the
    # whole hour would hold 1.2 million rows, six times the 200,000 aimed at.
    plan = planner(START + timedelta(days=1))
    window = plan.next_window()
    assert window == Window(START, START + timedelta(hours=1))

    reached = START + timedelta(seconds=30)
    narrower = plan.narrow(window, 10_000, reached)

    assert narrower == Window(START, START + timedelta(minutes=10))
    assert plan.as_read(window) == narrower
    assert plan.as_read(window) == window
    plan.observe(narrower, 200_000)
    following = plan.next_window()
    assert following is not None
    assert following.lo == narrower.hi


def test_a_window_near_its_aim_is_not_narrowed() -> None:
    plan = planner(START + timedelta(days=1))
    window = plan.next_window()
    assert window is not None
    # On course for 280,000 rows: within half as much again as its aim.
    assert plan.narrow(window, 70_000, START + timedelta(minutes=15)) is None
    assert plan.as_read(window) == window


def test_a_window_narrows_no_earlier_than_the_rows_it_read() -> None:
    # All of a page at one instant: the window ends just after it.
    plan = planner(START + timedelta(days=1))
    window = plan.next_window()
    assert window is not None
    reached = START + timedelta(seconds=1)
    narrower = plan.narrow(window, 300_000, reached)
    assert narrower == Window(START, reached + timedelta(microseconds=1))


def test_with_one_reader_a_window_aims_at_the_room_left_in_its_chunk() -> None:
    cutter = planner(START + timedelta(days=3), chunk_rows=200_000)
    first = cutter.next_window()
    assert first is not None
    cutter.observe(first, 150_000)
    window = cutter.next_window()
    assert window is not None
    # 50,000 rows of room; at this pace the window holds 150,000.
    quarter = window.lo + window.width / 4
    narrower = cutter.narrow(window, 37_500, quarter)
    assert narrower is not None
    assert narrower.width == pytest.approx(window.width / 3, abs=MIN_WIDTH)


def test_a_window_planned_before_others_narrows_and_hands_its_rest_back() -> None:
    plan = planner(START + timedelta(days=1), concurrency=2)
    first = plan.next_window()
    second = plan.next_window()
    assert first is not None
    assert second is not None

    narrower = plan.narrow(first, 10_000, START + timedelta(seconds=30))

    assert narrower == Window(START, START + timedelta(minutes=10))
    # The rest comes before any new window, and ends where the second begins.
    assert plan.next_window() == Window(narrower.hi, second.lo)
    following = plan.next_window()
    assert following is not None
    assert following.lo == second.hi


def test_wide_rows_shrink_pages_windows_and_chunks_to_their_bytes() -> None:
    cutter = planner(
        START + timedelta(days=3),
        chunk_rows=200_000,
        page_bytes=64 * 2**20,
        chunk_bytes=256 * 2**20,
    )
    cutter.measure(10_000, 10_000 * 1_000)
    assert (cutter.page_rows, cutter.target_rows) == (10_000, 200_000)
    assert cutter.chunk_limit == 200_000

    # Spans holding 32 KiB prompts: pages of 64 MiB, chunks of 256 MiB.
    cutter.measure(2_000, 2_000 * 32 * 2**10)
    assert cutter.page_rows == 2_048
    assert cutter.chunk_limit == cutter.chunk_rows == 8_192
    assert cutter.target_rows == 8_192


def test_a_chunk_of_wide_rows_ends_by_bytes() -> None:
    cutter = planner(
        START + timedelta(days=3), chunk_rows=200_000, chunk_bytes=100 * 2**20
    )
    chunks: list[int] = [0]
    while (window := cutter.next_window()) is not None:
        rows = round(window.width / timedelta(hours=1) * 10_000)
        cutter.measure(rows, rows * 10_000)
        cutter.observe(window, rows)
        chunks[-1] += rows
        if cutter.closes_chunk(window):
            chunks.append(0)

    loaded = [chunk for chunk in chunks if chunk]
    assert sum(loaded) == 720_000
    # 10,000 bytes a row: 10,485 rows in 100 MiB. The first chunk is a window
    # read before the width was known, the last what is left.
    assert set(loaded[1:-1]) == {10_485}
    assert loaded[-1] <= 10_485


def test_more_readers_get_windows_of_a_share_of_a_chunk_of_bytes() -> None:
    cutter = planner(
        START + timedelta(days=3),
        target_rows=50_000,
        chunk_rows=200_000,
        page_bytes=16 * 2**20,
        chunk_bytes=100 * 2**20,
        concurrency=4,
    )
    cutter.measure(100, 100 * 10_000)
    assert cutter.chunk_rows is None
    assert cutter.chunk_limit == 10_485
    assert cutter.target_rows == 2_621


def test_a_width_stored_by_an_earlier_run_fits_the_first_pages() -> None:
    resumed = planner(START + timedelta(days=1), page_bytes=2**20, row_bytes=2**14)
    fresh = planner(START + timedelta(days=1), page_bytes=2**20)
    assert resumed.page_rows == 64
    assert fresh.page_rows == 10_000


def test_a_window_cut_short_by_the_end_grows_from_its_own_width() -> None:
    # An hourly run of a quiet hour, starting from the last run's 8 hours.
    hourly = planner(START + timedelta(hours=1), width=timedelta(hours=8))
    window = hourly.next_window()
    assert window == Window(START, START + timedelta(hours=1))

    hourly.observe(window, 0)

    assert hourly.width == timedelta(hours=8)


def test_growth_is_at_most_eightfold_even_when_nearly_empty() -> None:
    plan = planner(START + timedelta(days=30))
    first = plan.next_window()
    assert first is not None
    plan.observe(first, 1)
    assert plan.width == timedelta(hours=8)


def test_width_never_drops_below_the_minimum() -> None:
    plan = planner(START + timedelta(days=1))
    first = plan.next_window()
    assert first is not None
    plan.observe(first, 10**12)
    assert plan.width == MIN_WIDTH


def test_concurrency_splits_the_rest_when_it_holds_more_than_a_page() -> None:
    end = START + timedelta(hours=4)
    plan = planner(end, concurrency=4, width=timedelta(hours=1))
    first = plan.next_window()
    assert first is not None
    plan.observe(first, 100_000)
    # 3 hours left, 300,000 rows expected: four readers get 45 minutes each.
    windows = [plan.next_window() for _ in range(4)]
    assert [w.width for w in windows if w] == [timedelta(minutes=45)] * 4
    assert plan.next_window() is None


def test_concurrency_does_not_split_a_quiet_rest() -> None:
    end = START + timedelta(hours=4)
    plan = planner(end, concurrency=4)
    first = plan.next_window()
    assert first is not None
    plan.observe(first, 10)
    rest = plan.next_window()
    assert rest == Window(first.hi, end)


def test_lateness_that_leaves_no_room_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="lateness_back"):
        max_created_at_width(timedelta(days=10), timedelta(days=4))


def test_scan_bounds_cover_lateness_with_a_margin() -> None:
    window = Window(START, START + timedelta(hours=1))
    low, high = created_at_scan(window, BACK, AHEAD)
    assert low == START - BACK - timedelta(seconds=1)
    assert high == window.hi + AHEAD + timedelta(seconds=1)
    assert event_time_scan(window) == (
        START - timedelta(seconds=1),
        window.hi + timedelta(seconds=1),
    )


def test_a_window_needs_lo_before_hi() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        Window(START, START)
