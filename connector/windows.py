"""Cutting time into the windows that a sync reads, one after another.

A window is a half-open interval ``[lo, hi)`` at microsecond precision.
Consecutive windows share their boundary, so they tile time with no gap and no
overlap. :class:`WindowPlanner` sizes each window from the density of rows the
previous ones held: quiet stretches are read in a few wide windows, busy ones
in narrow windows of about a target number of rows.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from connector.errors import ConfigurationError

__all__ = [
    "BOUND_MARGIN",
    "MAX_GROWTH",
    "MAX_SCAN",
    "MIN_WIDTH",
    "Window",
    "WindowPlanner",
    "created_at_scan",
    "event_time_scan",
    "max_created_at_width",
    "max_event_time_width",
]

MAX_SCAN: Final = timedelta(days=13)
"""The widest time range one query scans (`max_timestamp - min_timestamp`).

Logfire is reported to refuse a query that scans more than 14 days. Whether it
counts time or the calendar dates a scan touches is not known: 13 days touch
at most 14 dates, so scans keep within either reading.
"""

BOUND_MARGIN: Final = timedelta(seconds=1)
"""Slack on each side of a scan, as the bounds' inclusiveness is undocumented."""

MIN_WIDTH: Final = timedelta(seconds=1)
"""The narrowest window the planner cuts, except where time runs out."""

MAX_GROWTH: Final = 8
"""How many times wider than the last one the next window may be."""

_OVERSHOOT: Final = 1.5
"""How far past its aim a window may be expected to go before it is narrowed."""


@dataclass(frozen=True, order=True)
class Window:
    """The half-open interval ``[lo, hi)`` of a cursor or event-time column."""

    lo: datetime
    hi: datetime

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"A window needs lo < hi, not {self.lo} .. {self.hi}.")

    @property
    def width(self) -> timedelta:
        """How much time the window spans."""
        return self.hi - self.lo

    def __str__(self) -> str:
        return f"[{self.lo.isoformat()}, {self.hi.isoformat()})"


def max_created_at_width(
    lateness_back: timedelta, lateness_ahead: timedelta
) -> timedelta:
    """The widest `created_at` window whose scan stays within `MAX_SCAN`.

    Raises:
        ConfigurationError: If the lateness bounds leave no room for a window.
    """
    width = MAX_SCAN - lateness_back - lateness_ahead - 2 * BOUND_MARGIN
    if width < MIN_WIDTH:
        raise ConfigurationError(
            f"lateness_back ({lateness_back}) plus lateness_ahead "
            f"({lateness_ahead}) leave no room for a window within the 13 days "
            "one query scans (Logfire refuses more than 14 days, which it may "
            "count in calendar dates). Lower them so that they add up to less "
            "than 13 days."
        )
    return width


def max_event_time_width() -> timedelta:
    """The widest window on the event-time column itself, as in a backfill."""
    return MAX_SCAN - 2 * BOUND_MARGIN


def created_at_scan(
    window: Window, lateness_back: timedelta, lateness_ahead: timedelta
) -> tuple[datetime, datetime]:
    """The `min_timestamp` and `max_timestamp` that a `created_at` window needs.

    Every stored row has its event time within
    ``[created_at - lateness_back, created_at + lateness_ahead]``.
    """
    low = window.lo - lateness_back - BOUND_MARGIN
    high = window.hi + lateness_ahead + BOUND_MARGIN
    return low, high


def event_time_scan(window: Window) -> tuple[datetime, datetime]:
    """The `min_timestamp` and `max_timestamp` of a window on event time."""
    return window.lo - BOUND_MARGIN, window.hi + BOUND_MARGIN


class WindowPlanner:
    """Plans the windows that tile ``[start, end)``, adapting to the data.

    Each observed window gives a density of rows per second; the next window
    aims at ``target_rows`` at that density, growing at most eightfold per
    step and never wider than ``max_width``. With ``concurrency`` above one,
    the rest of the range is split so that that many windows can be read at
    once when it holds more than a page of rows.

    With ``chunk_rows`` and one reader, windows are observed in order, so the
    planner also cuts them into chunks of about that many rows: the window
    after a small one aims at what the chunk has room for, and
    :meth:`closes_chunk` says where each chunk ends.

    A window planned before its rows were known (a table's first, the one after
    a quiet stretch, an hour of an incident) may hold far more rows than it
    aims at. Its reader may :meth:`narrow` it once its first pages show how
    dense it is, and the rest of its range is planned again. With more than
    one reader, windows are planned one at a time until some rows have been
    seen (:attr:`ready`): the first ones are planned blind.

    Rows may be wide (a span can hold a whole prompt), so the row counts are
    also bounded in bytes: once :meth:`measure` has seen how wide the rows
    are, pages shrink to ``page_bytes`` and chunks to ``chunk_bytes``, and the
    windows' target with them. :attr:`page_rows`, :attr:`target_rows` and
    :attr:`chunk_limit` are the counts at the width :meth:`measure` saw last.

    Args:
        start: Where the first window begins.
        end: Where the last window ends.
        width: The first window's width.
        max_width: The widest window allowed.
        target_rows: How many rows a window should hold.
        page_rows: The rows in one page; below that, splitting gains nothing.
        concurrency: How many windows are read at once.
        chunk_rows: The rows of a chunk: the planner cuts chunks with one
            reader, and :attr:`chunk_limit` fits it to `chunk_bytes`.
        page_bytes: About the most bytes of Arrow data a page should hold.
        chunk_bytes: About the most a chunk should hold.
        row_bytes: The rows' width as an earlier run saw it, if known.
    """

    def __init__(
        self,
        start: datetime,
        end: datetime,
        *,
        width: timedelta,
        max_width: timedelta,
        target_rows: int,
        page_rows: int,
        concurrency: int = 1,
        chunk_rows: int | None = None,
        page_bytes: int | None = None,
        chunk_bytes: int | None = None,
        row_bytes: float | None = None,
    ) -> None:
        if max_width < MIN_WIDTH:
            raise ValueError(f"max_width must be at least {MIN_WIDTH}.")
        self.start = start
        self.end = end
        self.max_width = max_width
        self.concurrency = concurrency
        self.page_bytes = page_bytes
        self.chunk_bytes = chunk_bytes
        self.row_bytes = row_bytes

        self._target_rows = target_rows
        self._page_rows = page_rows
        self._chunk_rows = chunk_rows

        self._width = _clamp(width, MIN_WIDTH, max_width)
        self._next_lo = start
        self._in_flight = 0
        self._density: float | None = None
        self._chunk_held = 0
        self._chunk_ends: set[datetime] = set()
        self._last_chunk_from: datetime | None = None
        self._narrowed: dict[datetime, Window] = {}
        # What narrowed windows handed back while later ones were planned.
        self._returned: list[Window] = []
        # Readers narrow windows while others plan them.
        self._lock = threading.Lock()

    @property
    def width(self) -> timedelta:
        """The width the next window would get, before any split."""
        return self._width

    @property
    def page_rows(self) -> int:
        """The rows a page asks for: `page_rows`, fewer if they are wide."""
        return _fit(self._page_rows, self.page_bytes, self.row_bytes)

    @property
    def chunk_limit(self) -> int | None:
        """The rows a chunk holds at most (at least a page); None unchunked."""
        if self._chunk_rows is None:
            return None
        rows = _fit(self._chunk_rows, self.chunk_bytes, self.row_bytes)
        if rows == self._chunk_rows:
            return rows
        return max(rows, self.page_rows)

    @property
    def chunk_rows(self) -> int | None:
        """The chunk limit when this planner cuts the chunks (one reader)."""
        return self.chunk_limit if self.concurrency == 1 else None

    @property
    def target_rows(self) -> int:
        """The rows a window aims at, shrunk as its pages and chunk are."""
        shrink = self.page_rows / self._page_rows
        limit = self.chunk_limit
        if limit is not None and self._chunk_rows:
            shrink = min(shrink, limit / self._chunk_rows)
        least = min(self.page_rows, self._target_rows)
        return max(least, int(self._target_rows * shrink))

    @property
    def done(self) -> bool:
        """Whether every window to be read has been planned.

        That is every window up to `end`, or up to the end of the last chunk
        once :meth:`end_with_chunk` has said which chunk is the last.
        """
        if self._past_last_chunk(self._next_lo):
            return True
        return self._next_lo >= self.end and not self._returned

    @property
    def in_flight(self) -> int:
        """How many planned windows have not been observed yet."""
        return self._in_flight

    @property
    def ready(self) -> bool:
        """Whether another window may be planned while others are read.

        Until some rows have been seen, nothing tells how wide a window
        should be, so windows are read one at a time: each is narrowed by
        its own first pages before the next is planned, and an empty
        stretch gains nothing from more readers.
        """
        return self._in_flight == 0 or bool(self._density)

    def next_window(self) -> Window | None:
        """The next window, or None once the range is covered.

        A range that a narrowed window handed back comes first, whole: its
        reader narrows it in turn if it is dense.
        """
        with self._lock:
            if self._returned:
                self._in_flight += 1
                return self._returned.pop(0)
            lo = self._next_lo
            if lo >= self.end or self._past_last_chunk(lo):
                return None

            width = max(self._split(self.end - lo), MIN_WIDTH)
            hi = min(lo + width, self.end)
            self._next_lo = hi
            self._in_flight += 1
            return Window(lo, hi)

    def narrow(self, window: Window, rows: int, reached: datetime) -> Window | None:
        """A narrower window to finish `window` in, if it holds too many rows.

        Its reader has read `rows` rows so far, in order of the window's
        column, up to `reached`. If that many over that much of the window
        make it likely to hold more than half as much again as it aims at,
        it is cut where it would hold about its aim, and never before
        `reached`. The rest of its range is planned next: after the newest
        window, it is where the next one starts; otherwise it is handed out
        before any new window, and read after the narrowed one.
        """
        with self._lock:
            if not window.lo <= reached < window.hi:
                return None
            aim = self._aim()
            covered = (reached - window.lo) / window.width
            if rows <= aim * _OVERSHOOT * covered:
                return None

            share = (reached - window.lo) * (aim / rows)
            least = reached + timedelta(microseconds=1)
            hi = max(window.lo + _clamp(share, timedelta(0), window.width), least)
            if hi >= window.hi:
                return None
            narrower = Window(window.lo, hi)
            if window.hi == self._next_lo:
                self._next_lo = hi
            else:
                bisect.insort(self._returned, Window(hi, window.hi))
            self._narrowed[window.lo] = narrower
            return narrower

    def as_read(self, window: Window) -> Window:
        """`window` as its reader finished it: narrowed, or as planned."""
        with self._lock:
            return self._narrowed.pop(window.lo, window)

    def end_with_chunk(self, start: datetime) -> None:
        """Plan no window after the chunk that starts at `start` ends.

        A sync that stops after that chunk would read the windows after it
        only to throw their rows away. With one reader, the planner knows
        where the chunk ends once it has observed the window that fills it.
        """
        with self._lock:
            self._last_chunk_from = start

    def _past_last_chunk(self, lo: datetime) -> bool:
        """Whether a window from `lo` would start after the last chunk ends."""
        if self._last_chunk_from is None or self.chunk_rows is None:
            return False
        ends = [end for end in tuple(self._chunk_ends) if end > self._last_chunk_from]
        return bool(ends) and lo >= min(ends)

    def closes_chunk(self, window: Window) -> bool:
        """Whether a chunk ends with `window`, once it has been observed."""
        return window.hi in self._chunk_ends

    def measure(self, rows: int, nbytes: int) -> None:
        """Learn the rows' width from `rows` just read, `nbytes` of Arrow."""
        if rows and nbytes:
            self.row_bytes = nbytes / rows

    def observe(self, window: Window, rows: int) -> None:
        """Learn from a window that has been read whole (as :meth:`as_read`)."""
        with self._lock:
            self._observe(window, rows)

    def _observe(self, window: Window, rows: int) -> None:
        self._in_flight = max(self._in_flight - 1, 0)
        seconds = window.width.total_seconds()
        self._density = rows / seconds

        # Growth is from the window read, which the range's end may have cut
        # short: an empty hour read hourly must not widen the next run's first
        # window eightfold each time.
        ceiling = _clamp(MAX_GROWTH * window.width, MIN_WIDTH, self.max_width)
        room = self._room_after(window, rows)
        if rows == 0:
            self._width = ceiling
            return
        wanted = timedelta(seconds=self._aim_within(room) / self._density)
        self._width = _clamp(wanted, MIN_WIDTH, ceiling)

    def _aim(self) -> int:
        """The rows the window being read aims at.

        With one reader cutting chunks, that is what the chunk has room for.
        """
        if self.chunk_rows is None:
            return self.target_rows
        room = self.chunk_rows - self._chunk_held
        return max(self._aim_within(room), self.page_rows)

    def _aim_within(self, room: int) -> int:
        """What a window aims at with `room` rows left in its chunk.

        Its target, or all of the room where a window of its target would
        leave too little for another.
        """
        if room - self.target_rows < self._least_window():
            return room
        return self.target_rows

    def _least_window(self) -> int:
        """The fewest rows worth a window of their own: a quarter of the target.

        A window so small would cost a request of its own for little.
        """
        return max(self.page_rows, self.target_rows // 4)

    def _room_after(self, window: Window, rows: int) -> int:
        """The rows the chunk has room for after `window`, ending it if full.

        A chunk ends once the room left is less than a window is worth.
        """
        if self.chunk_rows is None:
            return self.target_rows
        self._chunk_held += rows
        room = self.chunk_rows - self._chunk_held
        if room < self._least_window():
            self._chunk_ends.add(window.hi)
            self._chunk_held = 0
            return self.target_rows
        return room

    def _split(self, remaining: timedelta) -> timedelta:
        """The width, narrowed so that idle readers get a share of the rest."""
        width = self._width
        free = self.concurrency - self._in_flight
        if self.concurrency == 1 or free < 1 or self._density is None:
            return width

        expected_rows = self._density * remaining.total_seconds()
        if expected_rows <= self.page_rows or width * free <= remaining:
            return width
        share = remaining / free
        return timedelta(microseconds=math.ceil(share / timedelta(microseconds=1)))


def _fit(rows: int, limit: int | None, row_bytes: float | None) -> int:
    """`rows`, or fewer (at least one) if that many would pass `limit` bytes."""
    if limit is None or not row_bytes:
        return rows
    return max(1, min(rows, int(limit // row_bytes)))


def _clamp(value: timedelta, low: timedelta, high: timedelta) -> timedelta:
    """``value`` within ``[low, high]``, rounded to whole microseconds."""
    micros = round(value / timedelta(microseconds=1))
    return min(max(timedelta(microseconds=micros), low), high)
