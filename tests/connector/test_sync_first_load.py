"""A first load into an empty table appends; any table holding rows merges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from synchelp import (
    NOW,
    assert_same_rows,
    destination,
    expected_rows,
    make_metrics,
    make_records,
    sandbox,
)

from connector import TableSynced
from connector.sync import run_backfill, run_sync
from sandbox.server import SandboxServer

HORIZON = NOW - timedelta(minutes=5)
FROM = NOW - timedelta(hours=30)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(3_000, seed=31, start=NOW - timedelta(hours=4), end=NOW)
    metrics = make_metrics(300, seed=32, start=NOW - timedelta(hours=4), end=NOW)
    with sandbox(records, metrics) as running:
        yield running


def options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": FROM.isoformat(),
        "tables": ["records"],
        **extra,
    }


def disposition(pipeline: dlt.Pipeline) -> Any:
    return pipeline.default_schema.tables["records"]["write_disposition"]


def test_the_first_load_appends_and_the_next_one_merges(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    assert disposition(dest.pipeline) == "append"

    run_backfill(dest.pipeline, FROM, NOW, **options(server))

    assert disposition(dest.pipeline) == "merge"
    rows = server.store.visible("records", server.clock.now())
    assert_same_rows(dest.table("records"), expected_rows(rows, HORIZON))


def test_a_new_pipeline_merges_into_a_table_another_one_filled(
    server: SandboxServer, tmp_path: Path
) -> None:
    first = destination(tmp_path, "first")
    run_sync(first.pipeline, **options(server))
    second = dlt.pipeline(
        pipeline_name="second",
        destination=dlt.destinations.duckdb(str(first.path)),
        pipelines_dir=str(tmp_path / "other-pipelines"),
        dataset_name="logfire",
    )

    run_backfill(second, FROM, NOW, **options(server))

    assert disposition(second) == "merge"
    rows = server.store.visible("records", server.clock.now())
    assert_same_rows(first.table("records"), expected_rows(rows, HORIZON))


def chunks_of_small_syncs(
    tmp_path: Path, records: pa.Table, start: datetime, concurrency: int
) -> tuple[list[int], bool]:
    """Sync `records` in chunks of about 1,000 rows: each chunk's rows, caught up.

    Also checks that every row arrived exactly once.
    """
    chunks: list[int] = []

    def note(event: object) -> None:
        if isinstance(event, TableSynced):
            chunks.append(event.rows)

    with sandbox(records) as server:
        dest = destination(tmp_path)
        report = run_sync(
            dest.pipeline,
            progress=note,
            **options(
                server,
                start=start.isoformat(),
                chunk_rows=1_000,
                page_size=250,
                target_pages=4,
                concurrency=concurrency,
            ),
        )
        wanted = expected_rows(server.store.visible("records", NOW), HORIZON)
    assert sum(chunks) == wanted.num_rows
    assert_same_rows(dest.table("records"), wanted)
    return chunks, report.caught_up


@pytest.mark.parametrize(("concurrency", "most"), [(1, 1_750), (2, 2_000)])
def test_a_burst_after_a_quiet_stretch_is_loaded_in_bounded_chunks(
    tmp_path: Path, concurrency: int, most: int
) -> None:
    # An empty first hour grows the next window eightfold, over all 6,000
    # rows of a ten-minute burst: one chunk of them all, unless the window
    # narrows once its first page shows how dense it is.
    burst = NOW - timedelta(hours=3)
    records = make_records(
        6_000, seed=33, start=burst, end=burst + timedelta(minutes=10)
    )

    chunks, caught_up = chunks_of_small_syncs(
        tmp_path, records, burst - timedelta(hours=1), concurrency
    )

    assert caught_up
    assert len(chunks) >= 4
    assert max(chunks) <= most


@pytest.mark.parametrize("concurrency", [2, 3])
def test_bursts_inside_windows_read_at_once_are_loaded_in_bounded_chunks(
    tmp_path: Path, concurrency: int
) -> None:
    # After the first rows, the readers share the rest of the range: a burst
    # then lands in a window planned before the newest, which narrows too.
    burst = NOW - timedelta(hours=3)
    later = burst + timedelta(hours=1)
    records = pa.concat_tables(
        [
            make_records(1_500, seed=11, start=NOW - timedelta(hours=6), end=NOW),
            make_records(
                4_000, seed=12, start=burst, end=burst + timedelta(minutes=10)
            ),
            make_records(3_000, seed=13, start=later, end=later + timedelta(seconds=2)),
        ]
    )

    chunks, caught_up = chunks_of_small_syncs(
        tmp_path, records, NOW - timedelta(hours=7), concurrency
    )

    assert caught_up
    assert max(chunks) <= 2_000
