"""A backfill killed with SIGKILL again and again still loads every row once.

The short version of ``python -m reliability crash --kills 20``: the sync runs
as the command line in a child process against a sandbox in another, and is
killed at random points of a 7-day backfill. After each kill the work redone is
at most the chunk that was in flight. And the package a killed run leaves is
loaded by the next run, which then goes on syncing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dlt
import pytest

from connector import logfire_source
from connector.sync import run_sync
from reliability.compare import compare, expected_rows, read_table
from reliability.crash import CrashOptions, run_crash
from reliability.faultmatrix import NOW, SETTLE, fault_sandbox


@pytest.mark.slow
def test_a_backfill_killed_at_random_points_ends_exact(tmp_path: Path) -> None:
    options = CrashOptions(
        kills=3, seed=7, records=3_000, metrics=600, chunk=timedelta(hours=12)
    )
    lines: list[str] = []
    result = run_crash(options, tmp_path, say=lines.append)

    assert len(result.kills) == 3
    for comparison in result.comparisons:
        comparison.check()
        assert comparison.duplicated == 0
    for kill in result.kills:
        assert kill.within_one_chunk, kill
    assert result.final_runs == 1
    assert result.rows_served >= result.rows_expected


def test_a_package_left_by_an_interrupted_run_is_loaded_and_the_sync_goes_on(
    tmp_path: Path,
) -> None:
    database = tmp_path / "pending.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="pending",
        destination=dlt.destinations.duckdb(str(database)),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="logfire",
    )
    with fault_sandbox(records=1_000, metrics=200) as server:
        options = {
            "read_token": server.token,
            "base_url": server.url,
            "tables": ["records"],
            "start": (NOW - timedelta(hours=7)).isoformat(),
            "chunk": "3h",
        }
        # As a run killed after its extract leaves it: a package, not loaded.
        pipeline.extract(logfire_source(**options))
        assert pipeline.has_pending_data

        report = run_sync(pipeline, **options)

        stored = server.store.visible("records", server.clock.now())
    assert not pipeline.has_pending_data
    assert report.caught_up
    assert [table.table for table in report.tables] == ["records"]
    expected = expected_rows(stored, created_before=NOW - SETTLE)
    compare("records", read_table(database, "records"), expected).check()
