"""The store: how the rows it is given are kept as batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import store
from sandbox.store import Store

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def records(first: int, n: int) -> pa.Table:
    """`n` spans a second apart, numbered from `first`."""
    times = [BASE + timedelta(seconds=first + i) for i in range(n)]
    return pa.table(
        {
            "start_timestamp": times,
            "end_timestamp": times,
            "created_at": times,
            "day": [moment.date() for moment in times],
            "trace_id": [f"{first + i:032x}" for i in range(n)],
            "span_id": [f"{first + i:016x}" for i in range(n)],
            "kind": ["span"] * n,
            "span_name": ["work"] * n,
            "message": [f"row {first + i}" for i in range(n)],
            "level": [9] * n,
            "service_name": ["api"] * n,
            "project_id": ["sandbox"] * n,
        }
    )


def chunked(*sizes: int) -> pa.Table:
    """Records in chunks of these sizes, as a multi-file Parquet read gives."""
    tables, first = [], 0
    for size in sizes:
        tables.append(records(first, size))
        first += size
    return pa.concat_tables(tables)


def stored(rows: pa.Table) -> list[pa.RecordBatch]:
    metrics = store.stored_schema("metrics").empty_table()
    return Store(records=rows, metrics=metrics).snapshot("records")


def test_batches_start_every_batch_rows_across_chunk_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "BATCH_ROWS", 4)
    rows = chunked(5, 7, 3, 10)

    batches = stored(rows)

    assert [batch.num_rows for batch in batches] == [4, 4, 4, 4, 4, 4, 1]
    kept = pa.Table.from_batches(batches).column("message").to_pylist()
    assert kept == rows.column("message").to_pylist()


def test_batches_inside_one_chunk_share_its_buffers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "BATCH_ROWS", 4)
    rows = chunked(8)

    batches = stored(rows)

    source = rows.column("message").chunk(0).buffers()[2]
    assert source is not None
    for batch in batches:
        data = batch.column("message").buffers()[2]
        assert data is not None
        assert data.address == source.address


def test_no_rows_are_no_batches() -> None:
    assert stored(records(0, 0)) == []


def test_a_parquet_file_is_stored_in_batches_of_batch_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(store, "BATCH_ROWS", 4)
    rows = records(0, 10)
    pq.write_table(rows, tmp_path / "records.parquet", row_group_size=3)

    batches = Store.from_parquet_dir(tmp_path).snapshot("records")

    assert [batch.num_rows for batch in batches] == [4, 4, 2]
    kept = pa.Table.from_batches(batches).column("message").to_pylist()
    assert kept == rows.column("message").to_pylist()
