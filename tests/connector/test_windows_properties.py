"""Properties of the window planner, for any range, density and concurrency.

A simulated reader drives the planner the way `read_windows` does: up to
`concurrency` windows in flight, each observed when its read finishes, in any
order. The rows a window holds come from a density of rows per second that
changes along the range, from none at all to a million a second.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.windows import (
    MAX_GROWTH,
    MAX_SCAN,
    MIN_WIDTH,
    Window,
    WindowPlanner,
    created_at_scan,
    event_time_scan,
    max_created_at_width,
    max_event_time_width,
)

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
MICROSECOND = timedelta(microseconds=1)
MAX_WINDOWS = 5_000
"""Where a simulation stops; a range left unfinished is checked as a prefix."""


@dataclass(frozen=True)
class Density:
    """Rows per second, constant on each of a few stretches of the range."""

    start: datetime
    bounds: tuple[datetime, ...]
    rates: tuple[float, ...]

    def rows(self, window: Window) -> int:
        """The rows a window holds: the density's integral over it."""
        total = 0.0
        lo = self.start
        for hi, rate in zip(self.bounds, self.rates, strict=True):
            overlap = min(hi, window.hi) - max(lo, window.lo)
            if overlap > timedelta(0):
                total += rate * overlap.total_seconds()
            lo = hi
        return round(total)


def log_uniform(low: int, high: int) -> st.SearchStrategy[float]:
    """Numbers from 10**low to 10**high, every order of magnitude alike.

    (Plain float strategies favour their bounds, here the smallest ranges.)
    """
    powers = st.sampled_from(range(low, high))
    mantissas = st.floats(min_value=1, max_value=10, exclude_max=True)
    return st.builds(lambda power, mantissa: mantissa * 10**power, powers, mantissas)


@st.composite
def ranges(draw: st.DrawFn, max_days: int = 90) -> tuple[datetime, datetime]:
    """A range ``[start, end)`` at microsecond precision, 1 us to 90 days long."""
    offset = draw(st.integers(min_value=0, max_value=3_000 * DAY_US))
    # Below a second the planner has one window to give; most ranges are longer.
    lengths = st.one_of(log_uniform(0, 6), log_uniform(6, 13), log_uniform(9, 13))
    span = min(round(draw(lengths)), max_days * DAY_US)
    start = EPOCH + timedelta(microseconds=offset)
    return start, start + timedelta(microseconds=span)


@st.composite
def densities(draw: st.DrawFn, start: datetime, end: datetime) -> Density:
    """Stretches of constant density, from empty to a million rows a second."""
    stretches = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=1, max_value=100),
                st.one_of(st.just(0.0), log_uniform(-4, 6)),
            ),
            min_size=1,
            max_size=6,
        )
    )
    weights = [weight for weight, _ in stretches]
    span = end - start
    bounds = []
    for done in itertools.accumulate(weights):
        bounds.append(start + span * done / sum(weights))
    bounds[-1] = end
    rates = tuple(rate for _, rate in stretches)
    return Density(start, tuple(bounds), rates)


def simulate(
    planner: WindowPlanner, density: Density, data: st.DataObject, concurrency: int
) -> list[Window]:
    """Plan windows as concurrent readers would; returns them in plan order.

    A drawn schedule, used round and round, says at each step whether to plan
    another window (while a reader is free) or which read in flight ends next.
    """
    schedule = data.draw(
        st.lists(st.integers(min_value=0, max_value=2**16), min_size=1, max_size=32)
    )
    planned: list[Window] = []
    in_flight: list[Window] = []
    for step in itertools.cycle(schedule):
        if len(planned) >= MAX_WINDOWS:
            break
        can_plan = len(in_flight) < concurrency and not planner.done
        if can_plan and (not in_flight or step % 2 == 0):
            window = planner.next_window()
            assert window is not None
            planned.append(window)
            in_flight.append(window)
            continue
        if not in_flight:
            break
        finished = in_flight.pop(step // 2 % len(in_flight))
        planner.observe(finished, density.rows(finished))
        assert MIN_WIDTH <= planner.width <= planner.max_width
    return planned


def make_planner(
    start: datetime,
    end: datetime,
    data: st.DataObject,
    max_width: timedelta,
    concurrency: int,
) -> WindowPlanner:
    # The first width: from a ten-thousandth of the range to ten times it.
    scale = data.draw(log_uniform(-4, 1))
    width = timedelta(microseconds=max(round((end - start) / MICROSECOND * scale), 1))
    page_rows = min(round(data.draw(log_uniform(0, 4))), 10_000)
    pages = min(round(data.draw(log_uniform(0, 3))), 1_000)
    return WindowPlanner(
        start,
        end,
        width=width,
        max_width=max_width,
        target_rows=page_rows * pages,
        page_rows=page_rows,
        concurrency=concurrency,
    )


def assert_tiles(windows: list[Window], start: datetime, end: datetime) -> None:
    """The windows cover `[start, end)` exactly, or a prefix of it if cut off."""
    assert windows[0].lo == start
    for before, after in itertools.pairwise(windows):
        assert before.hi == after.lo
    if len(windows) < MAX_WINDOWS:
        assert windows[-1].hi == end
    else:
        assert windows[-1].hi <= end


@settings(max_examples=150, deadline=None)
@given(
    bounds=ranges(),
    concurrency=st.integers(min_value=1, max_value=16),
    data=st.data(),
)
def test_windows_tile_any_range_with_no_gap_and_no_overlap(
    bounds: tuple[datetime, datetime], concurrency: int, data: st.DataObject
) -> None:
    start, end = bounds
    density = data.draw(densities(start, end))
    max_width = max_created_at_width(timedelta(hours=24), timedelta(hours=1))
    planner = make_planner(start, end, data, max_width, concurrency)

    windows = simulate(planner, density, data, concurrency)

    assert_tiles(windows, start, end)
    assert planner.done == (windows[-1].hi == end)


@settings(max_examples=150, deadline=None)
@given(
    bounds=ranges(),
    back_s=st.integers(min_value=0, max_value=13 * 86_400),
    ahead_s=st.integers(min_value=0, max_value=13 * 86_400),
    concurrency=st.integers(min_value=1, max_value=16),
    data=st.data(),
)
def test_every_created_at_window_scans_at_most_14_days(
    bounds: tuple[datetime, datetime],
    back_s: int,
    ahead_s: int,
    concurrency: int,
    data: st.DataObject,
) -> None:
    back, ahead = timedelta(seconds=back_s), timedelta(seconds=ahead_s)
    room = MAX_SCAN - back - ahead - 2 * timedelta(seconds=1)
    if room < MIN_WIDTH:
        return  # refused as a configuration error; tested in test_windows
    start, end = bounds
    max_width = max_created_at_width(back, ahead)
    planner = make_planner(start, end, data, max_width, concurrency)

    windows = simulate(planner, data.draw(densities(start, end)), data, concurrency)

    for window in windows:
        low, high = created_at_scan(window, back, ahead)
        assert high - low <= MAX_SCAN
        assert low <= window.lo - back
        assert high >= window.hi + ahead


@settings(max_examples=100, deadline=None)
@given(
    bounds=ranges(),
    concurrency=st.integers(min_value=1, max_value=16),
    data=st.data(),
)
def test_every_event_time_window_scans_at_most_14_days(
    bounds: tuple[datetime, datetime], concurrency: int, data: st.DataObject
) -> None:
    start, end = bounds
    planner = make_planner(start, end, data, max_event_time_width(), concurrency)

    windows = simulate(planner, data.draw(densities(start, end)), data, concurrency)

    for window in windows:
        low, high = event_time_scan(window)
        assert high - low <= MAX_SCAN
        assert low < window.lo
        assert high > window.hi


@settings(max_examples=150, deadline=None)
@given(
    bounds=ranges(max_days=30),
    concurrency=st.integers(min_value=1, max_value=16),
    data=st.data(),
)
def test_widths_stay_within_bounds_at_any_density(
    bounds: tuple[datetime, datetime], concurrency: int, data: st.DataObject
) -> None:
    start, end = bounds
    max_width = max_created_at_width(timedelta(hours=24), timedelta(hours=1))
    planner = make_planner(start, end, data, max_width, concurrency)

    windows = simulate(planner, data.draw(densities(start, end)), data, concurrency)

    for window in windows:
        assert window.width <= max_width
        # Only where the range runs out may a window be narrower than 1 s.
        assert window.width >= MIN_WIDTH or window.hi == end


@settings(max_examples=100, deadline=None)
@given(bounds=ranges(max_days=30), data=st.data())
def test_one_reader_aims_each_window_at_the_target(
    bounds: tuple[datetime, datetime], data: st.DataObject
) -> None:
    start, end = bounds
    density = data.draw(densities(start, end))
    max_width = max_created_at_width(timedelta(hours=24), timedelta(hours=1))
    planner = make_planner(start, end, data, max_width, 1)

    windows = simulate(planner, density, data, 1)

    # Each window follows the density its predecessor showed: no wider than
    # the target's width at that density (or 1 s), nor eight times wider.
    rounding = timedelta(microseconds=1)
    for before, after in itertools.pairwise(windows):
        assert after.width <= MAX_GROWTH * before.width + rounding
        rows = density.rows(before)
        if rows:
            wanted = before.width * planner.target_rows / rows
            assert after.width <= max(wanted, MIN_WIDTH) + rounding
