"""What building either table shares: its arguments and its parallel build."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pyarrow as pa

from sandbox.generator.timing import micros

_CHUNK_ROWS = 250_000
"""Rows per record batch: bounds string buffers and lets chunks build in parallel."""


def check_arguments(
    n: int, seed: int, start: datetime, end: datetime
) -> tuple[int, int]:
    """Refuse bad arguments; return the time range in microseconds."""
    if n < 0:
        raise ValueError(f"The row count must be zero or more, not {n}.")
    if seed < 0:
        raise ValueError(f"The seed must be zero or more, not {seed}.")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(
            f"The time range {start} to {end} must be time-zone aware; "
            "pass datetimes with a tzinfo such as UTC."
        )
    lo, hi = micros(start), micros(end)
    if hi <= lo:
        raise ValueError(f"The time range must end after it starts: {start} to {end}.")
    return lo, hi


def build_table(
    n: int, target: pa.Schema, batch: Callable[[int, int], pa.RecordBatch]
) -> pa.Table:
    """Build the table chunk by chunk, on every core; chunks draw no randomness."""
    bounds = [(a, min(a + _CHUNK_ROWS, n)) for a in range(0, n, _CHUNK_ROWS)]
    if len(bounds) == 1:
        return pa.Table.from_batches([batch(0, n)], schema=target)

    workers = min(len(bounds), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = list(pool.map(lambda ab: batch(*ab), bounds))
    return pa.Table.from_batches(batches, schema=target)
