from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox.clock import Clock
from sandbox.live import LiveFeed
from sandbox.store import Store

ORIGIN = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
STILL = 1e-9
"""A clock speed slow enough that the clock only moves when a test advances it."""


def still_clock() -> Clock:
    return Clock(start=ORIGIN, speed=STILL)


def feed_on(
    clock: Clock, *, seed: int = 3, records: int = 6_000, metrics: int = 1_200
) -> tuple[LiveFeed, Store]:
    store = Store.empty()
    feed = LiveFeed(
        store, clock, seed=seed, records_per_hour=records, metrics_per_hour=metrics
    )
    return feed, store


def table(store: Store, name: str) -> pa.Table:
    return pa.Table.from_batches(store.snapshot(name))


def test_catch_up_appends_nothing_before_a_tick_has_passed() -> None:
    clock = still_clock()
    feed, store = feed_on(clock)
    clock.advance(timedelta(seconds=59))
    feed.catch_up()
    assert store.row_count("records") == 0
    assert store.row_count("metrics") == 0


def test_catch_up_appends_rows_as_the_clock_advances() -> None:
    clock = still_clock()
    feed, store = feed_on(clock)
    counts = []
    for _ in range(3):
        clock.advance(timedelta(minutes=1))
        feed.catch_up()
        counts.append((store.row_count("records"), store.row_count("metrics")))
    assert counts[0][0] > 0
    assert counts[0][1] > 0
    assert counts[0] < counts[1] < counts[2]


def test_each_tick_holds_its_share_of_the_hourly_rates() -> None:
    clock = still_clock()
    feed, store = feed_on(clock, records=6_000, metrics=1_200)
    clock.advance(timedelta(minutes=1))
    feed.catch_up()
    assert store.row_count("records") == 100
    assert store.row_count("metrics") == 20


def test_an_hour_of_ticks_adds_up_to_the_hourly_rates() -> None:
    clock = still_clock()
    feed, store = feed_on(clock, records=1_000, metrics=70)
    clock.advance(timedelta(hours=1))
    feed.catch_up()
    assert store.row_count("records") == 1_000
    assert store.row_count("metrics") == 70


def test_a_tick_generates_traces_that_start_in_it() -> None:
    clock = still_clock()
    feed, store = feed_on(clock)
    clock.advance(timedelta(minutes=1))
    feed.catch_up()
    records = table(store, "records")
    roots = records.filter(pc.is_null(records.column("parent_span_id")))
    roots = roots.filter(pc.not_equal(roots.column("service_name"), "frontend"))
    starts = roots.column("start_timestamp")
    assert pc.min(starts).as_py() >= ORIGIN
    assert pc.max(starts).as_py() < ORIGIN + timedelta(minutes=1)


def test_the_same_seed_gives_the_same_rows_however_catch_up_is_timed() -> None:
    steady_clock, jumping_clock = still_clock(), still_clock()
    steady, steady_store = feed_on(steady_clock, seed=9)
    jumping, jumping_store = feed_on(jumping_clock, seed=9)
    for _ in range(5):
        steady_clock.advance(timedelta(minutes=1))
        steady.catch_up()
    jumping_clock.advance(timedelta(minutes=5))
    jumping.catch_up()
    for name in ("records", "metrics"):
        assert table(steady_store, name).equals(table(jumping_store, name))


def test_different_seeds_give_different_rows() -> None:
    first_clock, second_clock = still_clock(), still_clock()
    first, first_store = feed_on(first_clock, seed=1)
    second, second_store = feed_on(second_clock, seed=2)
    for clock, feed in ((first_clock, first), (second_clock, second)):
        clock.advance(timedelta(minutes=2))
        feed.catch_up()
    assert not table(first_store, "records").equals(table(second_store, "records"))


def test_late_rows_stay_hidden_until_they_are_due() -> None:
    clock = still_clock()
    feed, store = feed_on(clock)
    clock.advance(timedelta(minutes=1))
    feed.catch_up()
    now = clock.now()
    hidden = store.row_count("records") - store.visible("records", now).num_rows
    later = store.visible("records", now + timedelta(minutes=30)).num_rows
    assert hidden > 0
    assert later > store.visible("records", now).num_rows


def test_the_background_thread_follows_a_fast_clock() -> None:
    clock = Clock(start=ORIGIN, speed=600.0)
    feed, store = feed_on(clock, records=60_000, metrics=6_000)
    feed.start()
    try:
        deadline = time.monotonic() + 10
        while store.row_count("records") < 3_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        feed.stop()
    assert store.row_count("records") >= 3_000


def test_stop_ends_the_background_thread_and_can_be_repeated() -> None:
    clock = Clock(start=ORIGIN, speed=600.0)
    feed, store = feed_on(clock)
    feed.start()
    time.sleep(0.2)
    feed.stop()
    stopped_at = store.row_count("records")
    time.sleep(0.3)
    feed.stop()
    assert store.row_count("records") == stopped_at


def test_stop_before_start_does_nothing() -> None:
    feed, store = feed_on(still_clock())
    feed.stop()
    assert store.row_count("records") == 0


@pytest.mark.parametrize(
    "tick", [timedelta(0), timedelta(seconds=-1), timedelta(minutes=5)]
)
def test_a_tick_outside_the_settle_window_is_refused(tick: timedelta) -> None:
    with pytest.raises(ValueError, match="tick"):
        LiveFeed(
            Store.empty(),
            still_clock(),
            seed=1,
            records_per_hour=10,
            metrics_per_hour=10,
            tick=tick,
        )


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rates"):
        LiveFeed(
            Store.empty(),
            still_clock(),
            seed=1,
            records_per_hour=-1,
            metrics_per_hour=10,
        )
