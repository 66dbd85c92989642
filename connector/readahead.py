"""Reading on between chunks, while dlt normalizes and loads the last one.

:func:`connector.run_sync` commits a large backlog chunk by chunk, each one a
``pipeline.run``: extract, then normalize, then load. During the extract the
reader threads run ahead of dlt, but during the normalize and the load nothing
would read, and a destination such as DuckDB takes about as long to load a
chunk as the service took to serve it. So when a chunk stops at its row limit
with windows of its reading still to come, the reading is parked here: a
thread goes on taking its windows, and the next chunk of the same table,
starting exactly where the parked reading stops, takes the reading over
instead of asking for those rows again. While the readings have been taken
over within moments, as they are after loads into files, what a parked
reading takes is held in memory; once one was parked longer, as during a
load into DuckDB, it is written to disk, so that a long load does not hold a
chunk of rows in memory beside its own.

Nothing parked is state. The watermark moves only with what dlt extracts, so
a crash loses no more than what was read ahead, which the next run reads
again.
"""

from __future__ import annotations

import collections
import itertools
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TypeAlias

import pyarrow as pa

from connector.client import LogfireClient
from connector.windows import Window, WindowPlanner

__all__ = ["Item", "ReadAhead", "Reading"]

logger = logging.getLogger(__name__)

Item = tuple[Window, pa.RecordBatch | pa.Table | None]
"""Rows of a window, or ``(window, None)`` once the window is complete."""


@dataclass
class Reading:
    """The windows of one table being read, in order, up to `end`.

    Attributes:
        items: The windows' batches, as :func:`connector.pager.read_windows`
            yields them.
        end: Where the last window stops.
        planner: The planner of its windows, whose width the state keeps.
        client: The client the reading sends its requests with; it lives as
            long as the reading.
        counted: How many of the client's requests a chunk has reported.
        now: The service's clock when the reading began. A chunk that takes
            the reading over goes by it rather than asking for the clock again:
            its rows were all stored before that clock's horizon.
    """

    items: Iterator[Item]
    end: datetime
    planner: WindowPlanner
    client: LogfireClient
    counted: int = 0
    now: datetime | None = None

    def uncounted_requests(self) -> int:
        """The requests sent since this was last asked, read ahead included."""
        made = self.client.requests_made
        new, self.counted = made - self.counted, made
        return new

    def close(self) -> None:
        """Stop the reader threads and close the client."""
        _close_items(self.items)
        self.client.close()


HOLD_SECONDS: Final = 1.0
"""How long a parked reading holds what it takes in memory before it spools.

Between two chunks into files a reading is parked for 0.2 to 0.9 s here; into
DuckDB, for 1.5 s and more.
"""


class ReadAhead:
    """Readings parked between the chunks of one sync, one per key.

    Args:
        root: A folder of the sync's own to write them in, emptied first of
            what a killed run left there; a temporary folder without one.
        hold_seconds: How long a parked reading keeps its rows in memory
            before it writes them to disk; not at all once a reading was
            parked for longer.
    """

    def __init__(
        self, root: Path | None = None, *, hold_seconds: float = HOLD_SECONDS
    ) -> None:
        self._parked: dict[str, _Parked] = {}
        self._hold_seconds = hold_seconds
        self._last_parked: float | None = None
        self._parking = True
        self._root = root
        self._folder: Path | None = None
        self._numbers = itertools.count()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def park(
        self, key: str, start: datetime, reading: Reading, *, spool_rows: int
    ) -> None:
        """Keep reading on, for the next chunk that starts at `start`.

        Args:
            key: What the next chunk asks for it by.
            start: Where the reading goes on from.
            reading: The reading, whose items up to `start` are consumed.
            spool_rows: The most rows to write to disk before waiting for
                the next chunk; it bounds the disk a sync uses.
        """
        self.discard(key)
        if not self._parking:
            reading.close()
            return
        if self._folder is None:
            if self._root is not None:
                self._root.mkdir(parents=True, exist_ok=True)
            self._folder = Path(
                tempfile.mkdtemp(prefix="logfire-sync-", dir=self._root)
            )
        spool = self._folder / str(next(self._numbers))
        self._parked[key] = _Parked(start, reading, spool, spool_rows, self._hold())

    @property
    def parking(self) -> bool:
        """Whether readings are parked at a chunk's end, for the next chunk."""
        return self._parking

    def _hold(self) -> float:
        """How long the next parked reading holds its rows in memory.

        A load that kept the last reading parked longer than the hold would
        keep the next one as long, holding all it reads meanwhile. Before any
        reading was taken over, how long loads take is not known, and the
        first holds for a quarter of the time.
        """
        if self._last_parked is None:
            return self._hold_seconds / 4
        if self._last_parked > self._hold_seconds:
            return 0.0
        return self._hold_seconds

    def stop_parking(self) -> None:
        """Close readings where their chunk ends, as no chunk takes them over.

        A sync stopped by its chunk limit would otherwise go on reading the
        next chunk's rows during the last load, only to throw them away.
        """
        self._parking = False

    def parked_now(self, key: str) -> datetime | None:
        """The service's clock when the reading parked under `key` began."""
        parked = self._parked.get(key)
        return None if parked is None else parked.now

    def take(self, key: str, start: datetime) -> Reading | None:
        """The reading parked under `key`, if it starts exactly at `start`.

        A parked reading that starts elsewhere is closed: the state moved some
        other way, and its rows would be the wrong ones.
        """
        parked = self._parked.pop(key, None)
        if parked is None:
            return None
        if parked.start != start:
            logger.warning(
                "%s: the rows read ahead start at %s, not at %s where this chunk "
                "starts; reading again instead.",
                key,
                parked.start.isoformat(),
                start.isoformat(),
            )
            parked.close()
            return None
        self._last_parked = parked.seconds_parked()
        return parked.resume()

    def discard(self, key: str) -> None:
        """Close the reading parked under `key`, if any."""
        parked = self._parked.pop(key, None)
        if parked is not None:
            parked.close()

    def close(self) -> None:
        """Close every parked reading and delete what they wrote to disk."""
        for key in list(self._parked):
            self.discard(key)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


_Taken: TypeAlias = pa.RecordBatch | pa.Table | Path | None
"""An item's rows as a parked reading keeps them: in memory, on disk, or none."""


class _Parked:
    """A reading whose items a thread takes until it is resumed.

    The items are held in memory until `hold_seconds` have passed, then
    written to disk, those held first.
    """

    def __init__(
        self,
        start: datetime,
        reading: Reading,
        folder: Path,
        spool_rows: int,
        hold_seconds: float,
    ) -> None:
        self.start = start
        self.now = reading.now
        self._reading = reading
        self._folder = folder
        self._folder.mkdir()
        self._spool_rows = spool_rows
        self._parked_at = time.monotonic()
        self._spool_after = self._parked_at + hold_seconds
        self._taken: list[tuple[Window, _Taken]] = []
        self._spooled = 0
        self._numbers = itertools.count()
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._drain, name="logfire-read-ahead", daemon=True
        )
        self._thread.start()

    def _drain(self) -> None:
        """Take the reading's items until told to stop, spooling once held long."""
        rows = 0
        try:
            while not self._stop.is_set() and rows < self._spool_rows:
                item = next(self._reading.items, None)
                if item is None:
                    break
                batch = item[1]
                self._taken.append(item)
                rows += 0 if batch is None else batch.num_rows
                self._spool_if_held_long()

            # Nothing more to take: what is held is written once the hold ends.
            wait = self._spool_after - time.monotonic()
            if not self._stop.wait(max(0.0, wait)):
                self._spool_if_held_long()
        except BaseException as error:
            # The chunk that takes the reading over raises it where it happened.
            self._failure = error

    def _spool_if_held_long(self) -> None:
        """Write every item held in memory to disk, once the hold is over."""
        if time.monotonic() < self._spool_after:
            return
        while self._spooled < len(self._taken) and not self._stop.is_set():
            window, taken = self._taken[self._spooled]
            if isinstance(taken, pa.RecordBatch | pa.Table):
                self._taken[self._spooled] = (window, self._write(taken))
            self._spooled += 1

    def _write(self, batch: pa.RecordBatch | pa.Table) -> Path:
        """One batch (or table of batches) as an Arrow IPC file."""
        path = self._folder / f"{next(self._numbers)}.arrow"
        with (
            pa.OSFile(str(path), "wb") as sink,
            pa.ipc.new_stream(sink, batch.schema) as writer,
        ):
            writer.write(batch)
        return path

    def seconds_parked(self) -> float:
        """How long ago the reading was parked."""
        return time.monotonic() - self._parked_at

    def resume(self) -> Reading:
        """The reading again: what was taken first, then the rest."""
        self._stop.set()
        self._thread.join()
        reading = self._reading
        return Reading(
            _Replay.after(self._taken, self._failure, self._folder, reading.items),
            reading.end,
            reading.planner,
            reading.client,
            reading.counted,
            reading.now,
        )

    def close(self) -> None:
        """Stop draining, close the reading and delete its files."""
        self._stop.set()
        self._thread.join()
        self._taken.clear()
        self._reading.close()
        shutil.rmtree(self._folder, ignore_errors=True)


class _Replay:
    """The items a parked reading took, then the failure it met or the live rest.

    A reading parked at every chunk's end is resumed as many times as a sync
    has chunks. Each replay goes on with the live items of the one before
    rather than wrapping it, so that a sync of thousands of chunks does not
    nest as many iterators, which Python refuses past its recursion limit.
    """

    def __init__(
        self,
        taken: Iterable[tuple[Window, _Taken]],
        failure: BaseException | None,
        folders: list[Path],
        live: Iterator[Item],
    ) -> None:
        self._taken = collections.deque(taken)
        self._failure = failure
        self._folders = folders
        self._live = live

    @classmethod
    def after(
        cls,
        taken: list[tuple[Window, _Taken]],
        failure: BaseException | None,
        folder: Path,
        items: Iterator[Item],
    ) -> _Replay:
        """The replay of `taken`, taken from `items` until `failure`, if any."""
        if not isinstance(items, _Replay):
            return cls(taken, failure, [folder], items)
        # What the last replay had not yet passed on comes after what was
        # taken from it, and only if taking it met no failure.
        rest = list(items._taken) if failure is None else []
        failure = failure or items._failure
        return cls([*taken, *rest], failure, [*items._folders, folder], items._live)

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> Item:
        if self._taken:
            window, taken = self._taken.popleft()
            return window, _read(taken) if isinstance(taken, Path) else taken
        self._remove_folders()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            self.close()
            raise failure
        try:
            return next(self._live)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the live items' reader threads and delete the spooled files."""
        self._taken.clear()
        _close_items(self._live)
        self._remove_folders()

    def _remove_folders(self) -> None:
        """Delete the folders the taken items were spooled to."""
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._folders.clear()


def _close_items(items: Iterator[Item]) -> None:
    """Close a generator of items, which stops the threads that feed it."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _read(path: Path) -> pa.Table:
    """What :meth:`_Parked._write` wrote, mapped rather than copied.

    The table's buffers point into the mapped file, so reading allocates
    nothing that the allocator would keep after dlt has written the rows;
    the mapping outlives the file's name, which goes at once.
    """
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_stream(source).read_all()
    path.unlink()
    return table
