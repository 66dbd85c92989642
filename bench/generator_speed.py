"""How fast the sandbox generates data: 5 million records and 1 million metrics.

Run with `uv run python bench/generator_speed.py`. The first large allocation of a
fresh machine or process is slow on some virtual machines, so the script reports
each table's time on its own; run it twice to see both a cold and a warm figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from sandbox.generator import generate_metrics, generate_records

RECORDS = 5_000_000
METRICS = 1_000_000


def measure(name: str, generate: Callable[..., pa.Table], rows: int) -> None:
    """Generate `rows` rows over the last two days and print the rate."""
    end = datetime.now(UTC)
    started = time.perf_counter()
    table = generate(rows, seed=1, start=end - timedelta(days=2), end=end)
    elapsed = time.perf_counter() - started
    size = table.nbytes / 1e9
    print(
        f"{name}: {table.num_rows:,} rows in {elapsed:.1f} s = "
        f"{table.num_rows / elapsed:,.0f} rows/s ({size:.2f} GB in memory)"
    )


def main() -> None:
    """Warm the vocabularies up, then time both tables."""
    warm_up = datetime.now(UTC)
    generate_records(100, seed=0, start=warm_up - timedelta(hours=1), end=warm_up)
    generate_metrics(100, seed=0, start=warm_up - timedelta(hours=1), end=warm_up)
    measure("records", generate_records, RECORDS)
    measure("metrics", generate_metrics, METRICS)


if __name__ == "__main__":
    main()
