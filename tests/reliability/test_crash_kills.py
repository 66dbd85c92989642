"""A backfill killed with SIGKILL again and again still loads every row once.

The short version of ``python -m reliability crash --kills 20``: the sync runs
as the command line in a child process against a sandbox in another, and is
killed at random points of a 7-day backfill. After each kill the work redone is
at most the chunk that was in flight. And what a killed run leaves behind is
dealt with by the next run, which then goes on syncing.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from connector import logfire_source
from connector.pipeline import PipelineOptions, make_pipeline
from connector.sync import run_sync
from reliability.compare import compare, expected_rows, read_table
from reliability.crash import CrashOptions, run_crash
from reliability.faultmatrix import NOW, SETTLE, fault_sandbox
from reliability.processes import SyncProcess
from sandbox.server import SandboxServer


@pytest.mark.slow
def test_a_backfill_killed_at_random_points_ends_exact(tmp_path: Path) -> None:
    options = CrashOptions(
        kills=3, seed=7, records=3_000, metrics=600, chunk=timedelta(hours=12)
    )
    result = run_crash(options, tmp_path, say=lambda line: None)

    assert len(result.kills) == 3
    for comparison in result.comparisons:
        comparison.check()
        assert comparison.duplicated == 0
    for kill in result.kills:
        assert kill.within_one_chunk, kill
    assert result.final_redone <= 0
    assert result.rows_served >= result.rows_expected


LEFT_BEHIND = {"failed_jobs", "started_jobs", "completed_jobs", "schema.json"}
"""What a crash test's kill left of an extracted package it had normalized."""


def pending_pipeline(folder: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="pending",
        destination=dlt.destinations.duckdb(str(folder / "pending.duckdb")),
        pipelines_dir=str(folder / "pipelines"),
        dataset_name="logfire",
    )


def pending_options(server: SandboxServer) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "tables": ["records"],
        "start": (NOW - timedelta(hours=7)).isoformat(),
        "chunk": "3h",
    }


def test_a_package_left_by_an_interrupted_run_is_loaded_and_the_sync_goes_on(
    tmp_path: Path,
) -> None:
    database = tmp_path / "pending.duckdb"
    pipeline = pending_pipeline(tmp_path)
    with fault_sandbox(records=1_000, metrics=200) as server:
        options = pending_options(server)
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


def test_the_rest_of_a_package_killed_while_normalize_deleted_it_is_dropped(
    tmp_path: Path,
) -> None:
    pipeline = make_pipeline(PipelineOptions(name="pending", state_dir=tmp_path))
    with fault_sandbox(records=1_000, metrics=200) as server:
        options = pending_options(server)
        pipeline.extract(logfire_source(**options))
        [load_id] = pipeline.list_extracted_load_packages()
        extracted = Path(pipeline.working_dir) / "normalize" / "extracted"
        shutil.copytree(extracted / load_id, tmp_path / "copy")
        pipeline.normalize()
        # What a kill halfway through normalize's deleting the package left.
        shutil.copytree(tmp_path / "copy", extracted / load_id)
        for part in (extracted / load_id).iterdir():
            if part.name in LEFT_BEHIND:
                continue
            if part.is_dir():
                shutil.rmtree(part)
            else:
                part.unlink()

        # A new process, as after a crash: one that reused the pipeline object
        # would not trip over the leftover.
        child = SyncProcess(
            [
                "run",
                "--base-url",
                server.url,
                "--state-dir",
                str(tmp_path),
                "--pipeline",
                "pending",
                "--tables",
                "records",
                "--start",
                options["start"],
            ],
            {"LOGFIRE_READ_TOKEN": server.token, "SOURCES__LOGFIRE__CHUNK": "3h"},
        )
        code = child.wait(300)
        stored = server.store.visible("records", server.clock.now())

    assert code == 0, "".join(child.lines[-5:])
    assert any(
        "Deleting the rest of the extracted package" in line for line in child.lines
    )
    expected = expected_rows(stored, created_before=NOW - SETTLE)
    loaded = read_table(tmp_path / "pending.duckdb", "records")
    compare("records", loaded, expected).check()
