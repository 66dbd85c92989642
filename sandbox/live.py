"""A feed that keeps adding telemetry to a store as the sandbox clock moves."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import numpy as np

from sandbox import generator
from sandbox.clock import Clock
from sandbox.store import Store

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
"""How often, in real seconds, the background thread looks at the clock."""

_LONGEST_TICK = timedelta(minutes=4)
"""Rows of a tick may be stored during it, yet reach the store only once it has
passed. Logfire never adds rows whose `created_at` is over 5 minutes old, so a
tick must stay well under that, leaving a minute for the feed to keep up."""

_HOUR_MICROS = 3_600_000_000
_RECORDS_STREAM, _METRICS_STREAM = 0, 1


class LiveFeed:
    """Keeps producing telemetry into a store as the clock moves.

    Clock time is cut into ticks from the moment the feed is created. Once a tick
    has fully passed, the feed generates the traces and metric exports that began
    in it and appends them to the store. Their rows are stored (`created_at`) and
    become visible (`_visible_at`) later, some hours later for long spans, and
    the store's visibility filter releases them as Logfire would. A tick's rows
    depend only on the seed and the tick's index, never on when it runs.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        seed: int,
        records_per_hour: int,
        metrics_per_hour: int,
        tick: timedelta = timedelta(minutes=1),
    ) -> None:
        _check_settings(seed, records_per_hour, metrics_per_hour, tick)
        self._store = store
        self._clock = clock
        self._seed = seed
        self._records_per_hour = records_per_hour
        self._metrics_per_hour = metrics_per_hour
        self._tick = tick
        self._origin = clock.now()
        self._next_tick = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Generate each tick in a background thread as soon as it has passed."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="sandbox-live-feed", daemon=True
        )
        self._thread.start()
        logger.info(
            "The live feed started: %s records and %s metric points an hour, "
            "in ticks of %s.",
            self._records_per_hour,
            self._metrics_per_hour,
            self._tick,
        )

    def stop(self) -> None:
        """Stop the background thread and wait for it; safe to call repeatedly."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def catch_up(self) -> None:
        """Generate, here and now, every tick that has passed on the clock."""
        self._catch_up(None)

    def _run(self) -> None:
        while not self._stopping.wait(_POLL_SECONDS):
            try:
                self._catch_up(self._stopping)
            except Exception:
                logger.exception(
                    "The live feed stopped: generating tick %s failed.",
                    self._next_tick,
                )
                return

    def _catch_up(self, stopping: threading.Event | None) -> None:
        with self._lock:
            now = self._clock.now()
            while self._tick_start(self._next_tick + 1) <= now:
                if stopping is not None and stopping.is_set():
                    return
                self._generate(self._next_tick)
                self._next_tick += 1

    def _tick_start(self, index: int) -> datetime:
        return self._origin + self._tick * index

    def _generate(self, index: int) -> None:
        start, end = self._tick_start(index), self._tick_start(index + 1)
        records = self._share(self._records_per_hour, index)
        metrics = self._share(self._metrics_per_hour, index)
        if records:
            seed = _tick_seed(self._seed, index, _RECORDS_STREAM)
            rows = generator.generate_records(records, seed=seed, start=start, end=end)
            self._store.append("records", rows)
        if metrics:
            seed = _tick_seed(self._seed, index, _METRICS_STREAM)
            points = generator.generate_metrics(
                metrics, seed=seed, start=start, end=end
            )
            self._store.append("metrics", points)
        logger.debug(
            "Live tick %s (%s): %s records, %s metric points.",
            index,
            start.isoformat(),
            records,
            metrics,
        )

    def _share(self, per_hour: int, index: int) -> int:
        """Rows for one tick, so that ticks add up to exactly `per_hour` an hour."""
        tick = _micros(self._tick)
        before = per_hour * tick * index // _HOUR_MICROS
        return per_hour * tick * (index + 1) // _HOUR_MICROS - before


def _check_settings(
    seed: int, records_per_hour: int, metrics_per_hour: int, tick: timedelta
) -> None:
    if seed < 0:
        raise ValueError(f"The live feed's seed must be zero or more, not {seed}.")
    if records_per_hour < 0 or metrics_per_hour < 0:
        raise ValueError(
            "The live feed's rates must be zero or more, not "
            f"{records_per_hour} records and {metrics_per_hour} metric points "
            "an hour."
        )
    if not timedelta(0) < tick <= _LONGEST_TICK:
        raise ValueError(
            f"The live feed's tick must be positive and at most {_LONGEST_TICK}, "
            f"not {tick}: rows must reach the store within Logfire's 5-minute "
            "settle window."
        )


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _tick_seed(seed: int, index: int, stream: int) -> int:
    """A seed for one tick's table, drawn from the feed's seed and the tick."""
    sequence = np.random.SeedSequence((seed, index, stream))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])
