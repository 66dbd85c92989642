"""A run killed in the middle of a load job, at the two moments that matter.

The child process syncs one chunk with dlt patched to exit, as SIGKILL would,
the moment the `records` job has committed its rows to the destination:

- before dlt notes that the job committed. The next load would run the job
  again, into a staging table it does not empty a second time (a merge), or
  into the table itself (an append into an empty table), so its rows would
  arrive twice. The sync aborts such a package and reads its chunk again.
- after dlt notes it, and before the job is moved to the completed ones. The
  next load takes the job as done without running it again.

On the filesystem destination, whose tables are appended to, a chunk read
again would add new files beside the killed job's; that job runs again instead,
and writes its file again.

Either way the next run, in a new process as after a crash, must end with
every row exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.pipeline import PipelineOptions, make_pipeline
from connector.sync import run_sync
from reliability.compare import compare, expected_rows, read_table
from reliability.faultmatrix import NOW, SETTLE, fault_sandbox
from reliability.processes import quiet_dlt_environment

CHILD = """
import os, sys
from pathlib import Path
from dlt.common.storages.load_package import PackageStorage
from connector.pipeline import PipelineOptions, make_pipeline
from connector.sync import run_sync

moment, url, token, state_dir, start, destination = sys.argv[1:]
original = getattr(PackageStorage, moment)

def die_once_records_committed(self, load_id, file_name, *args, **kwargs):
    if file_name.startswith("records."):
        os._exit(9)
    return original(self, load_id, file_name, *args, **kwargs)

setattr(PackageStorage, moment, die_once_records_committed)
pipeline = make_pipeline(
    PipelineOptions(name="killed", destination=destination, state_dir=Path(state_dir))
)
run_sync(pipeline, read_token=token, base_url=url, tables=["records"],
         start=start, chunk="3h", max_chunks=1)
"""

BEFORE_NOTED = "save_pending_transition"
AFTER_NOTED = "complete_job"


@pytest.mark.parametrize(
    ("moment", "chunks_before", "destination"),
    [
        (BEFORE_NOTED, 0, "duckdb"),
        (BEFORE_NOTED, 1, "duckdb"),
        (AFTER_NOTED, 1, "duckdb"),
        (BEFORE_NOTED, 0, "filesystem"),
        (AFTER_NOTED, 1, "filesystem"),
    ],
    ids=[
        "append-before-noted",
        "merge-before-noted",
        "merge-after-noted",
        "files-before-noted",
        "files-after-noted",
    ],
)
def test_a_job_killed_as_it_committed_loads_its_rows_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
    chunks_before: int,
    destination: str,
) -> None:
    start = (NOW - timedelta(hours=7)).isoformat()
    files = tmp_path / "files"
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", files.as_uri())
    pipeline_options = PipelineOptions(
        name="killed", destination=destination, state_dir=tmp_path
    )
    with fault_sandbox(records=1_500, metrics=100) as server:
        options = {
            "read_token": server.token,
            "base_url": server.url,
            "tables": ["records"],
            "start": start,
            "chunk": "3h",
        }
        if chunks_before:
            first = make_pipeline(pipeline_options)
            run_sync(first, max_chunks=chunks_before, **options)

        arguments = [moment, server.url, server.token, str(tmp_path), start]
        arguments.append(destination)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *arguments],
            env={**os.environ, **quiet_dlt_environment()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == 9, child.stderr[-2_000:]

        pipeline = make_pipeline(pipeline_options)
        report = run_sync(pipeline, **options)
        stored = server.store.visible("records", server.clock.now())

    assert report.caught_up
    if destination == "duckdb":
        loaded = read_table(tmp_path / "killed.duckdb", "records")
    else:
        parts = sorted((files / "logfire" / "records").glob("*.parquet"))
        loaded = pa.concat_tables(pq.read_table(part) for part in parts)
    comparison = compare(
        "records", loaded, expected_rows(stored, created_before=NOW - SETTLE)
    )
    assert comparison.duplicated == 0, comparison
    comparison.check()
