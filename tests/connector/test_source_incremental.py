"""Incremental syncs into DuckDB against the sandbox: exactly the visible rows, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from synchelp import (
    NOW,
    TS,
    Destination,
    assert_same_rows,
    captured_logs,
    destination,
    expected_rows,
    make_metrics,
    make_records,
    sandbox,
)

from connector import logfire_source
from connector.errors import LogfireSyncError, TransientError
from connector.sync import read_status, run_sync
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

SETTLE = timedelta(minutes=5)
START = (NOW - timedelta(hours=30)).isoformat()


def rows() -> tuple[pa.Table, pa.Table]:
    """Six hours of records (10% late spans, some stored near now) and metrics."""
    records = pa.concat_tables(
        [
            make_records(6_000, seed=1, start=NOW - timedelta(hours=6), end=NOW),
            # Stored just before now: not settled yet at the first sync.
            make_records(
                300,
                seed=2,
                start=NOW - timedelta(minutes=4),
                end=NOW,
                visible_delay=timedelta(seconds=30),
            ),
            # Not visible yet: stored later, with a created_at in the past.
            make_records(
                200,
                seed=3,
                start=NOW - timedelta(minutes=3),
                end=NOW - timedelta(minutes=1),
                visible_delay=timedelta(minutes=3),
            ),
        ]
    )
    metrics = make_metrics(2_000, seed=4, start=NOW - timedelta(hours=6), end=NOW)
    return records, metrics


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    records, metrics = rows()
    with sandbox(records, metrics) as running:
        yield running


def options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": START,
        "max_attempts": 2,
        **extra,
    }


def assert_synced(dest: Destination, server: SandboxServer, table: str) -> None:
    now = server.clock.now()
    visible = server.store.visible(table, now)
    assert_same_rows(dest.table(table), expected_rows(visible, now - SETTLE))


def test_a_full_sync_holds_exactly_the_visible_rows_up_to_the_horizon(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    report = run_sync(dest.pipeline, **options(server))

    assert report.caught_up
    assert_synced(dest, server, "records")
    assert_synced(dest, server, "metrics")
    assert report.rows == dest.count("records") + dest.count("metrics")


def test_late_spans_stored_hours_after_they_started_arrive(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))

    loaded = dest.table("records")
    lateness = pc.subtract(loaded["created_at"], loaded["start_timestamp"])
    late = pc.sum(pc.greater(lateness, pa.scalar(timedelta(hours=12)))).as_py()
    assert late > 100


def test_a_second_run_with_nothing_new_costs_two_requests_a_table(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server, tables=["records"]))
    before = dest.count("records")

    again = run_sync(dest.pipeline, **options(server, tables=["records"]))

    assert again.rows == 0
    assert [table.requests for table in again.tables] == [1]
    assert dest.count("records") == before


def test_quiet_time_is_read_in_one_request_a_table(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    server.clock.advance(timedelta(hours=2))
    # The rows that became visible and settled since are the only new ones.
    again = run_sync(dest.pipeline, **options(server))

    assert all(table.requests <= 2 for table in again.tables)
    assert_synced(dest, server, "records")


def test_rows_not_yet_settled_are_picked_up_by_the_next_run(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    horizon = server.clock.now() - SETTLE
    loaded = dest.table("records")
    newest = pc.max(loaded["created_at"]).as_py()
    assert newest < horizon

    server.clock.advance(timedelta(minutes=10))
    report = run_sync(dest.pipeline, **options(server))

    assert report.rows >= 300
    assert_synced(dest, server, "records")


def test_concurrency_four_loads_what_concurrency_one_loads(
    server: SandboxServer, tmp_path: Path
) -> None:
    small = {"page_size": 500, "target_pages": 2, "initial_window": "10m"}
    one = destination(tmp_path, "one")
    four = destination(tmp_path, "four")
    run_sync(one.pipeline, **options(server, concurrency=1, **small))
    report = run_sync(four.pipeline, **options(server, concurrency=4, **small))

    assert sum(table.windows for table in report.tables) > 8
    for table in ("records", "metrics"):
        assert_same_rows(four.table(table), one.table(table))
    assert_synced(four, server, "records")


def test_a_truncated_stream_mid_window_loses_and_repeats_nothing(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    server.faults.force("truncate", 3)
    run_sync(dest.pipeline, **options(server, page_size=2_000, max_attempts=5))

    assert server.counters.snapshot()["faults"].get("truncate") == 3
    assert_synced(dest, server, "records")
    assert_synced(dest, server, "metrics")


def test_when_retries_run_out_the_run_fails_and_the_watermark_stays(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    before = {status.table: status.watermark for status in read_status(dest.pipeline)}
    server.clock.advance(timedelta(hours=1))
    server.store.append(
        "records",
        make_records(500, seed=9, start=NOW, end=NOW + timedelta(minutes=50)),
    )

    server.faults.force("503", 10)
    with pytest.raises(TransientError):
        run_sync(dest.pipeline, **options(server))
    after = {status.table: status.watermark for status in read_status(dest.pipeline)}
    assert after["records"] == before["records"]

    server.faults = FaultPlan.none()
    run_sync(dest.pipeline, **options(server))
    assert_synced(dest, server, "records")


def test_a_failed_pipeline_run_keeps_the_old_state(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    server.faults.force("500", 10)
    with pytest.raises(PipelineStepFailed):
        dest.pipeline.run(logfire_source(**options(server)))
    assert read_status(dest.pipeline) == []


def test_the_state_survives_a_wiped_pipelines_folder(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    dest.pipeline.drop()

    again = destination(tmp_path)
    report = run_sync(again.pipeline, **options(server))

    assert report.rows == 0
    assert_synced(again, server, "records")


def test_a_long_history_is_committed_in_chunks(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    report = run_sync(dest.pipeline, **options(server, chunk="8h"))

    assert report.chunks >= 3
    assert_synced(dest, server, "records")


def test_the_token_never_reaches_the_logs(tmp_path: Path) -> None:
    secret = "pylf_v1_us_Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
    records, metrics = rows()
    with sandbox(records, metrics, token=secret) as server, captured_logs() as lines:
        server.faults.force("429", 1)
        dest = destination(tmp_path)
        run_sync(dest.pipeline, **options(server, read_token=secret))
        with pytest.raises(LogfireSyncError) as failure:
            run_sync(dest.pipeline, **options(server, read_token=secret + "x"))

    text = "\n".join(lines)
    assert "window" in text
    assert "HTTP 401" in str(failure.value)
    assert secret not in text
    assert secret not in str(failure.value)
    assert secret not in repr(failure.value)


def test_lists_and_json_load_as_json_columns(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    types = dict(
        dest.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'logfire' AND table_name IN ('records', 'metrics')"
        )
    )
    [(first_tag,)] = dest.query(
        "SELECT count(*) FROM logfire.records WHERE tags->>'$[0]' = 'a'"
    )
    assert types["tags"] == "JSON"
    assert types["attributes"] == "JSON"
    assert types["histogram_bucket_counts"] == "JSON"
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert first_tag > 0


def test_timestamps_keep_their_microseconds(
    server: SandboxServer, tmp_path: Path
) -> None:
    extra = make_records(1, seed=5, start=NOW - timedelta(hours=1), end=NOW)
    stamp = NOW - timedelta(hours=1, microseconds=-123_457)
    extra = extra.set_column(2, "created_at", pa.array([stamp], TS))
    extra = extra.set_column(
        extra.schema.get_field_index("_visible_at"),
        "_visible_at",
        pa.array([stamp], TS),
    )
    server.store.append("records", extra)
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server, tables=["records"]))
    loaded = dest.table("records")["created_at"].to_pylist()
    assert stamp in loaded
