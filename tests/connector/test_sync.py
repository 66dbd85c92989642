"""run_sync, run_backfill and read_status, end to end against the sandbox."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from synchelp import (
    NOW,
    TS,
    assert_same_rows,
    destination,
    expected_rows,
    files_pipeline,
    make_metrics,
    make_records,
    sandbox,
)

from connector import TableSynced, WindowLoaded, logfire_source
from connector.errors import (
    ConfigurationError,
    LogfireSyncError,
    PipelineBusyError,
    causes,
)
from connector.pipeline import PipelineOptions, make_pipeline
from connector.sync import read_status, run_backfill, run_sync
from connector.verify import run_verify
from sandbox.server import SandboxServer

HORIZON = NOW - timedelta(minutes=5)
HOUR = timedelta(hours=1)
FROM = NOW - timedelta(hours=30)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(4_000, seed=21, start=NOW - timedelta(hours=5), end=NOW)
    metrics = make_metrics(800, seed=22, start=NOW - timedelta(hours=5), end=NOW)
    with sandbox(records, metrics) as running:
        yield running


def options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": FROM.isoformat(),
        **extra,
    }


def visible(server: SandboxServer, table: str) -> pa.Table:
    return expected_rows(server.store.visible(table, server.clock.now()), HORIZON)


def test_the_report_counts_rows_windows_and_requests(
    server: SandboxServer, tmp_path: Path
) -> None:
    events: list[WindowLoaded | TableSynced] = []
    dest = destination(tmp_path)
    report = run_sync(dest.pipeline, progress=events.append, **options(server))

    assert report.caught_up
    assert report.chunks == 1
    assert (
        report.rows
        == visible(server, "records").num_rows + visible(server, "metrics").num_rows
    )
    windows = [event for event in events if isinstance(event, WindowLoaded)]
    assert sum(table.windows for table in report.tables) == len(windows)
    assert report.requests == sum(table.requests for table in report.tables)
    assert all(table.requests >= table.windows + 1 for table in report.tables)
    assert {table.watermark for table in report.tables} == {HORIZON}
    assert report.rows_per_second > 0


def test_chunks_end_by_rows_alone_unless_a_chunk_span_is_given(
    server: SandboxServer, tmp_path: Path
) -> None:
    # 30 hours of few rows: a day's end cut them into two chunks before.
    default = run_sync(destination(tmp_path / "default").pipeline, **options(server))
    spans = run_sync(
        destination(tmp_path / "spans").pipeline, **options(server, chunk="12h")
    )

    assert default.chunks == 1
    assert spans.chunks == 3
    assert default.rows == spans.rows
    assert {table.watermark for table in default.tables + spans.tables} == {HORIZON}


def test_read_status_reports_watermarks_and_lag(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))

    statuses = {status.table: status for status in read_status(dest.pipeline, now=NOW)}
    assert set(statuses) == {"records", "metrics"}
    records = statuses["records"]
    assert records.watermark == HORIZON
    assert records.lag == timedelta(minutes=5)
    assert records.rows_loaded == visible(server, "records").num_rows
    assert records.caught_up
    assert records.last_run_at == NOW


def test_status_measures_lag_by_the_services_clock(
    server: SandboxServer, tmp_path: Path
) -> None:
    # The sandbox's clock stands months before this machine's.
    dest = destination(tmp_path)
    run_sync(dest.pipeline, tables=["metrics"], **options(server))

    (status,) = read_status(dest.pipeline)

    assert status.lag is not None
    assert abs(status.lag - timedelta(minutes=5)) < timedelta(seconds=30)


def test_a_sync_that_finds_nothing_loads_nothing(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, tables=["metrics"], **options(server))
    loads = dest.pipeline.list_completed_load_packages()

    again = run_sync(dest.pipeline, tables=["metrics"], **options(server))

    assert again.rows == 0
    assert dest.pipeline.list_completed_load_packages() == loads


def test_a_backfill_over_loaded_rows_adds_no_duplicates(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))

    report = run_backfill(dest.pipeline, FROM, NOW, **options(server))

    assert report.caught_up
    assert report.rows > 0
    for table in ("records", "metrics"):
        assert_same_rows(dest.table(table), visible(server, table))
    statuses = {status.table: status for status in read_status(dest.pipeline)}
    assert statuses["records"].watermark == HORIZON


def test_a_backfill_first_then_the_sync_merge_into_one_copy(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    middle = NOW - timedelta(hours=3)
    run_backfill(dest.pipeline, FROM, middle, tables=["records"], **options(server))
    rows = visible(server, "records")
    early = rows.filter(pc.less(rows["start_timestamp"], pa.scalar(middle, TS)))
    assert_same_rows(dest.table("records"), early)

    run_sync(dest.pipeline, tables=["records"], **options(server))
    assert_same_rows(dest.table("records"), rows)


def test_an_interrupted_backfill_resumes_where_it_stopped(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    backfill: dict[str, Any] = {"tables": ["records"], "chunk": "12h"}
    first = run_backfill(
        dest.pipeline, FROM, NOW, max_chunks=1, **backfill, **options(server)
    )
    assert not first.caught_up

    rest = run_backfill(dest.pipeline, FROM, NOW, **backfill, **options(server))
    assert rest.caught_up
    assert_same_rows(dest.table("records"), visible(server, "records"))


def test_finished_backfills_of_other_ranges_leave_the_state(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    hours = [NOW - timedelta(hours=n) for n in (5, 4, 3, 2)]
    unfinished = run_backfill(
        dest.pipeline,
        hours[0],
        NOW,
        max_chunks=1,
        tables=["records"],
        chunk="30m",
        **options(server),
    )
    assert not unfinished.caught_up
    for start, end in itertools.pairwise(hours):
        run_backfill(dest.pipeline, start, end, tables=["records"], **options(server))

    resource = dest.pipeline.state["sources"]["logfire"]["resources"]["records"]
    kept = {
        name: progress["finished"] for name, progress in resource["backfills"].items()
    }
    assert kept == {
        f"{_stamp(hours[0])}/{_stamp(NOW)}": False,
        f"{_stamp(hours[2])}/{_stamp(hours[3])}": True,
    }


def _stamp(moment: datetime) -> str:
    """An instant as the state keeps it."""
    return moment.isoformat(timespec="microseconds")


def test_parquet_files_on_the_filesystem_destination_get_every_row_once(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "files")
    run_sync(pipeline, **options(server))
    run_sync(pipeline, **options(server))

    for table in ("records", "metrics"):
        parts = sorted((files / "logfire" / table).glob("*.parquet"))
        loaded = pa.concat_tables(pq.read_table(part) for part in parts)
        assert_same_rows(loaded, visible(server, table))


def test_text_that_is_not_json_in_json_columns_loads_as_json_strings(
    tmp_path: Path,
) -> None:
    records = make_records(6, seed=23, start=NOW - timedelta(hours=2), end=NOW)
    bodies = ["plain text body", "", "[worker-3] ready [ok]", '{"k": 1}', None, "7"]
    records = records.append_column("log_body", pa.array(bodies, pa.string()))
    metrics = make_metrics(3, seed=24, start=NOW - timedelta(hours=2), end=NOW)
    attributes = pa.array(["", "host=a", '{"host": "b"}'])
    metrics = metrics.set_column(
        metrics.schema.get_field_index("attributes"), "attributes", attributes
    )
    dest = destination(tmp_path)

    with sandbox(records, metrics) as server:
        report = run_sync(dest.pipeline, **options(server))

    assert report.rows == 9
    assert report.caught_up
    loaded = dest.query(
        "SELECT log_body->>'$' FROM logfire.records ORDER BY created_at"
    )
    expected = {value for value in bodies if value != '{"k": 1}'} | {'{"k":1}'}
    assert {value for (value,) in loaded} == expected
    hosts = dest.query("SELECT attributes->>'$' FROM logfire.metrics")
    assert {value for (value,) in hosts} == {"", "host=a", '{"host":"b"}'}


LOOKS_LIKE_JSON = ["{'host': 'a'}", '["x"] ["y"]', '{"a": 1}}', '{"a": 01}']
"""Values that open and close like JSON documents, and are not JSON."""


def _records_with_attributes(values: list[str]) -> pa.Table:
    records = make_records(
        len(values), seed=25, start=NOW - timedelta(hours=2), end=NOW
    )
    index = records.schema.get_field_index("attributes")
    return records.set_column(index, "attributes", pa.array(values, pa.string()))


def test_text_that_only_looks_like_json_loads_as_json_strings(tmp_path: Path) -> None:
    values = [*LOOKS_LIKE_JSON, *LOOKS_LIKE_JSON, '{"host": "b"}']
    dest = destination(tmp_path)

    with sandbox(_records_with_attributes(values)) as server:
        report = run_sync(dest.pipeline, **options(server, tables=["records"]))

    assert report.rows == len(values)
    loaded = dest.query("SELECT attributes->>'$' FROM logfire.records")
    assert sorted(value for (value,) in loaded) == sorted(
        [*LOOKS_LIKE_JSON, *LOOKS_LIKE_JSON, '{"host":"b"}']
    )


def test_parquet_files_keep_text_that_only_looks_like_json_as_it_is(
    tmp_path: Path,
) -> None:
    pipeline, files = files_pipeline(tmp_path, "files")

    with sandbox(_records_with_attributes(LOOKS_LIKE_JSON)) as server:
        run_sync(pipeline, **options(server, tables=["records"]))

    parts = sorted((files / "logfire" / "records").glob("*.parquet"))
    loaded = pa.concat_tables(pq.read_table(part) for part in parts)
    assert sorted(loaded["attributes"].to_pylist()) == sorted(LOOKS_LIKE_JSON)


def test_a_second_run_of_a_running_pipeline_is_refused_before_any_request(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    reading, release = threading.Event(), threading.Event()

    def hold(event: WindowLoaded | TableSynced) -> None:
        reading.set()
        release.wait(timeout=30)

    first = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    running = first.submit(run_sync, dest.pipeline, progress=hold, **options(server))
    try:
        assert reading.wait(timeout=30)
        with pytest.raises(PipelineBusyError, match="Another run of the pipeline"):
            run_sync(dest.pipeline, **options(server))
    finally:
        release.set()
        first.shutdown()

    assert running.result().caught_up
    assert_same_rows(dest.table("records"), visible(server, "records"))
    assert run_sync(dest.pipeline, **options(server)).rows == 0


def test_a_run_refused_for_another_process_sends_no_request(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    lock = Path(dest.pipeline.working_dir) / "logfire-sync.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        queries = server.counters.snapshot()["queries"]
        with pytest.raises(PipelineBusyError, match=str(lock)):
            run_sync(dest.pipeline, **options(server))
        assert server.counters.snapshot()["queries"] == queries
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    assert run_sync(dest.pipeline, **options(server)).caught_up


HOLD_LOCK = """
import fcntl, pathlib, sys, time
path = pathlib.Path(sys.argv[1])
path.parent.mkdir(parents=True, exist_ok=True)
handle = path.open("a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def refused_untouched(server: SandboxServer, files: Path, match: str) -> Iterator[None]:
    """The block must be refused before any request, its files left as they were."""
    loaded = sorted(files.rglob("*.parquet"))
    queries = server.counters.snapshot()["queries"]
    with pytest.raises(ConfigurationError, match=match):
        yield
    assert server.counters.snapshot()["queries"] == queries
    assert sorted(files.rglob("*.parquet")) == loaded


def test_a_backfill_that_would_append_copies_is_refused_before_any_request(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "appends")
    run_sync(pipeline, **options(server))

    # The fix names dlt's settings and the command line's flags both.
    with refused_untouched(server, files, "second copy.*dataset_name.*--dataset"):
        run_backfill(pipeline, FROM, HORIZON, **options(server))


def test_a_backfill_asking_merge_of_an_append_only_destination_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    # The filesystem destination appends whatever the disposition says.
    pipeline, files = files_pipeline(tmp_path, "asks_merge")
    run_sync(pipeline, **options(server))

    with refused_untouched(server, files, "second copy"):
        run_backfill(
            pipeline, FROM, HORIZON, **options(server, write_disposition="merge")
        )


def test_append_set_in_dlts_config_refuses_a_backfill_over_synced_rows(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__LOGFIRE__WRITE_DISPOSITION", "append")
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    loaded = dest.count("records")
    queries = server.counters.snapshot()["queries"]

    with pytest.raises(ConfigurationError, match="second copy"):
        run_backfill(dest.pipeline, FROM, HORIZON, **options(server))

    assert server.counters.snapshot()["queries"] == queries
    assert dest.count("records") == loaded


def test_a_backfill_into_a_fresh_append_only_dataset_loads_once(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "history")

    report = run_backfill(
        pipeline, FROM, HORIZON, tables=["metrics"], **options(server)
    )

    assert report.caught_up
    parts = sorted((files / "logfire" / "metrics").glob("*.parquet"))
    loaded = pa.concat_tables(pq.read_table(part) for part in parts)
    stored = server.store.visible("metrics", server.clock.now())
    in_range = pc.and_(
        pc.greater_equal(stored["recorded_timestamp"], pa.scalar(FROM, TS)),
        pc.less(stored["recorded_timestamp"], pa.scalar(HORIZON, TS)),
    )
    expected = expected_rows(stored.filter(in_range), HORIZON)
    assert_same_rows(loaded, expected)


def test_a_sync_after_a_backfill_into_an_append_only_dataset_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "backfilled")
    run_backfill(pipeline, FROM, HORIZON, tables=["metrics"], **options(server))

    with refused_untouched(server, files, "a backfill of this pipeline.*--pipeline"):
        run_sync(pipeline, tables=["metrics"], **options(server))


def test_a_backfill_resumed_after_a_sync_into_an_append_only_dataset_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "resumed")
    # Its first hour holds no rows, so the unfinished backfill leaves the table
    # empty and the sync may load into it.
    first = run_backfill(
        pipeline,
        FROM,
        HORIZON,
        tables=["metrics"],
        chunk="1h",
        max_chunks=1,
        **options(server),
    )
    assert not first.caught_up
    assert not list(files.rglob("metrics/*.parquet"))
    run_sync(pipeline, tables=["metrics"], **options(server))
    # The sync holds the table now, so the next ones go on as usual.
    assert run_sync(pipeline, tables=["metrics"], **options(server)).caught_up

    with refused_untouched(server, files, "second copy"):
        run_backfill(pipeline, FROM, HORIZON, tables=["metrics"], **options(server))


def test_a_sync_stopped_by_its_chunk_limit_reads_little_past_what_it_loads(
    server: SandboxServer, tmp_path: Path
) -> None:
    # The last chunk's reading went on during its load, and its reader read
    # the windows after it while the chunk was extracted, for rows no chunk
    # took: 3,283 rows served, then 2,284, for 1,288 loaded. What is left is
    # the trailing run of each page, which the next page reads again.
    counters = server._service.counters
    counters.reset()
    small = options(server, chunk_rows=1_000, page_size=100)
    report = run_sync(
        destination(tmp_path).pipeline, tables=["records"], max_chunks=1, **small
    )

    served = counters.snapshot()["rows_served"]
    assert not report.caught_up
    assert report.rows <= served < report.rows + 100


def test_a_relative_state_folder_follows_the_project_when_it_moves(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_home = tmp_path / "project"
    first_home.mkdir()
    monkeypatch.chdir(first_home)
    options_here = PipelineOptions(name="moving", state_dir=Path("state"))
    run_sync(make_pipeline(options_here), tables=["metrics"], **options(server))
    loads_before = _loads(first_home / "state" / "moving.duckdb")

    moved = tmp_path / "moved"
    first_home.rename(moved)
    monkeypatch.chdir(moved)
    server.clock.advance(timedelta(minutes=30))
    report = run_sync(
        make_pipeline(options_here), tables=["metrics"], **options(server)
    )

    assert report.caught_up
    assert _loads(moved / "state" / "moving.duckdb") > loads_before


def _loads(database: Path) -> int:
    """How many loads dlt has recorded in a DuckDB file."""
    with duckdb.connect(str(database), read_only=True) as connection:
        found = connection.execute("SELECT count(*) FROM logfire._dlt_loads").fetchone()
    assert found is not None
    return int(found[0])


def _into(tmp_path: Path, dataset: str) -> dlt.Pipeline:
    """One pipeline name and folder, loading into `dataset` of one DuckDB file."""
    return dlt.pipeline(
        pipeline_name="switching",
        destination=dlt.destinations.duckdb(str(tmp_path / "switching.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name=dataset,
    )


def _datasets(tmp_path: Path) -> set[str]:
    with duckdb.connect(str(tmp_path / "switching.duckdb"), read_only=True) as db:
        rows = db.execute("SELECT schema_name FROM information_schema.schemata")
        return {str(row[0]) for row in rows.fetchall()}


def _counts(tmp_path: Path, dataset: str) -> list[int]:
    with duckdb.connect(str(tmp_path / "switching.duckdb"), read_only=True) as db:
        return [
            int(db.execute(f"SELECT count(*) FROM {dataset}.{name}").fetchall()[0][0])
            for name in TABLES_SYNCED
        ]


def test_runs_into_another_dataset_are_refused_before_any_request(
    server: SandboxServer, tmp_path: Path
) -> None:
    run_sync(_into(tmp_path, "first"), **options(server))
    queries = server.counters.snapshot()["queries"]
    other = _into(tmp_path, "other")
    match = "that of the dataset first in duckdb, not of other in duckdb"

    with pytest.raises(ConfigurationError, match=match):
        run_sync(other, **options(server))
    with pytest.raises(ConfigurationError, match=match):
        run_backfill(other, FROM, HORIZON, **options(server))
    with pytest.raises(ConfigurationError, match=match):
        run_verify(other, FROM, HORIZON, **options(server))

    assert server.counters.snapshot()["queries"] == queries
    assert "other" not in _datasets(tmp_path)


def test_a_plain_run_back_into_a_dataset_that_another_moved_past_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    first = _into(tmp_path, "first")
    first.run(logfire_source(**options(server, chunk="27h")))
    loaded = _counts(tmp_path, "first")
    # Into a dataset that does not exist yet, dlt itself starts afresh.
    _into(tmp_path, "other").run(logfire_source(**options(server)))

    with pytest.raises(PipelineStepFailed) as plain:
        _into(tmp_path, "first").run(logfire_source(**options(server)))

    refusal = [
        error for error in causes(plain.value) if type(error) is ConfigurationError
    ]
    assert refusal
    assert "not of first in duckdb" in str(refusal[0])
    assert _counts(tmp_path, "first") == loaded


def test_a_pipeline_whose_folder_is_gone_starts_afresh_in_another_dataset(
    server: SandboxServer, tmp_path: Path
) -> None:
    first = run_sync(_into(tmp_path, "first"), **options(server))
    shutil.rmtree(_into(tmp_path, "other").working_dir)

    report = run_sync(_into(tmp_path, "other"), **options(server))

    assert report.rows == first.rows > 0
    assert _counts(tmp_path, "other") == _counts(tmp_path, "first")
    with pytest.raises(ConfigurationError, match="not of first in duckdb"):
        run_sync(_into(tmp_path, "first"), **options(server))


TABLES_SYNCED = ("records", "metrics")


def test_a_watermark_older_than_retention_warns_when_the_sync_goes_on(
    server: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = destination(tmp_path)
    paused = options(server, chunk="1d", tables=["metrics"])
    paused["start"] = (NOW - timedelta(days=41)).isoformat()
    run_sync(dest.pipeline, max_chunks=1, **paused)
    caplog.clear()

    run_sync(dest.pipeline, max_chunks=1, **paused)

    said = [record.getMessage() for record in caplog.records]
    assert any(
        "the sync from its watermark starts at" in text and "retention" in text
        for text in said
    )


def test_the_pipeline_folder_keeps_only_the_newest_loads(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connector.sync._KEPT_LOADS", 3)
    dest = destination(tmp_path)
    loads = []
    for _ in range(5):
        run_sync(dest.pipeline, tables=["metrics"], **options(server))
        loads.extend(dest.pipeline.list_completed_load_packages())
        server.clock.advance(timedelta(minutes=10))

    kept = sorted(dest.pipeline.list_completed_load_packages(), key=float)
    assert len(set(loads)) >= 5
    assert kept == sorted(set(loads), key=float)[-3:]
    assert _loads(dest.path) >= 5


LATER = timedelta(hours=3)


def test_a_first_start_after_the_services_clock_is_refused_storing_nothing(
    server: SandboxServer, tmp_path: Path
) -> None:
    # A mistyped year would keep every later run waiting for it.
    dest = destination(tmp_path)
    typo = (NOW.replace(year=2062)).isoformat()
    with pytest.raises(ConfigurationError, match="after the service's clock"):
        run_sync(dest.pipeline, **options(server, start=typo))

    report = run_sync(dest.pipeline, **options(server))

    for table in report.tables:
        assert table.watermark is not None
        stored = server.store.visible(table.table, server.clock.now())
        assert table.rows == expected_rows(stored, table.watermark).num_rows > 0


def test_a_backfill_ending_years_ahead_reads_no_further_than_rows_can_be(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    near = run_backfill(dest.pipeline, FROM, NOW + timedelta(days=1), **options(server))
    far = run_backfill(
        dest.pipeline, FROM, NOW + timedelta(days=3650), **options(server)
    )

    assert far.rows == near.rows > 0
    # One empty request for each 13 days up to the end, before.
    assert far.requests <= near.requests + 2


def test_lateness_below_logfires_bounds_warns_once_a_run(
    server: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = options(server, lateness_back="1h", lateness_ahead="10m", chunk_rows=300)
    report = run_sync(destination(tmp_path).pipeline, tables=["metrics"], **short)

    said = [record.getMessage() for record in caplog.records]
    # The source is built again for each chunk, its settings' checks with it.
    assert report.chunks > 2
    for warning in (
        "lateness_back is 1:00:00, less than the 24 hours",
        "lateness_ahead is 0:10:00, less than the hour",
    ):
        assert sum(warning in message for message in said) == 1


_READER_IMPORTS = """
import sys
from datetime import UTC, datetime, timedelta
from connector.settings import build_settings
from connector.source import _open_reading, _planner, _TableQuery
from connector.tables import RECORDS

assert "pandas" not in sys.modules
settings = build_settings(read_token="t", base_url="http://127.0.0.1:9")
start = datetime(2026, 5, 1, tzinfo=UTC)
end = start + timedelta(hours=1)
planner = _planner(settings, start, end, {}, settings.max_width)
query = _TableQuery(RECORDS, settings, horizon=None)
reading = _open_reading(planner, query.window_query, settings, end)
print("pandas" in sys.modules)
reading.close()
"""


def test_pandas_is_imported_before_any_reader_thread_starts() -> None:
    # pyarrow imports pandas on a reader's first timestamp; dlt, on its own
    # thread, found the module half imported and failed the extract.
    done = subprocess.run(
        [sys.executable, "-c", _READER_IMPORTS],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize(
    "variable", ["LOAD__RAISE_ON_FAILED_JOBS", "SYNC__LOAD__RAISE_ON_FAILED_JOBS"]
)
def test_a_pipeline_that_would_complete_failed_jobs_is_refused_before_reading(
    server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    # A failed job's package would still commit the watermark past its rows.
    dest = destination(tmp_path)
    monkeypatch.setenv(variable, "false")
    queries = server.counters.snapshot()["queries"]

    with pytest.raises(ConfigurationError, match="raise_on_failed_jobs"):
        run_sync(dest.pipeline, **options(server))

    assert server.counters.snapshot()["queries"] == queries
    monkeypatch.delenv(variable)
    assert run_sync(dest.pipeline, **options(server)).caught_up


def test_a_run_told_to_replace_is_refused_keeping_what_was_loaded(
    server: SandboxServer, tmp_path: Path
) -> None:
    # dlt forgets a replaced resource's watermark: each run would delete the
    # rows before and read the last day again.
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **options(server))
    loaded = dest.count("records")

    with pytest.raises(PipelineStepFailed) as failed:
        dest.pipeline.run(
            logfire_source(**options(server)), write_disposition="replace"
        )

    refusal = [
        error for error in causes(failed.value) if type(error) is ConfigurationError
    ]
    assert refusal
    assert "write_disposition 'replace'" in str(refusal[0])
    assert dest.count("records") == loaded


def test_a_fresh_folder_told_not_to_restore_its_state_is_refused_over_loaded_rows(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first sync would start a day back, leaving a gap after the last run.
    run_sync(destination(tmp_path).pipeline, **options(server))
    shutil.rmtree(tmp_path / "pipelines")
    monkeypatch.setenv("RESTORE_FROM_DESTINATION", "false")
    fresh = destination(tmp_path)
    loaded = fresh.count("records")
    queries = server.counters.snapshot()["queries"]
    first_sync = {k: v for k, v in options(server).items() if k != "start"}

    with pytest.raises(ConfigurationError, match="restore_from_destination"):
        run_sync(fresh.pipeline, **first_sync)

    assert server.counters.snapshot()["queries"] == queries
    assert fresh.count("records") == loaded
    # Where the caller says where to begin, it begins there.
    resumed = run_sync(fresh.pipeline, **options(server, start=HORIZON.isoformat()))
    assert resumed.caught_up


def test_a_dataset_name_spelled_otherwise_but_named_alike_by_dlt_is_one_target(
    server: SandboxServer, tmp_path: Path
) -> None:
    def spelled(dataset: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name="spelled",
            destination=dlt.destinations.duckdb(str(tmp_path / "spelled.duckdb")),
            pipelines_dir=str(tmp_path / "pipelines"),
            dataset_name=dataset,
        )

    first = run_sync(spelled("LOGFIRE"), **options(server))
    again = run_sync(spelled("logfire"), **options(server))

    assert first.rows > 0
    assert again.caught_up
    assert again.rows == 0


def test_a_package_that_fails_every_run_says_how_to_abort_it(tmp_path: Path) -> None:
    records = make_records(600, seed=41, start=NOW - timedelta(hours=3), end=NOW + HOUR)
    with sandbox(records) as own:
        dest = destination(tmp_path)
        run_sync(dest.pipeline, **options(own, tables=["records"]))
        # A view where the table was: every load into it fails the same way.
        with duckdb.connect(str(dest.path)) as connection:
            connection.execute("CREATE TABLE logfire.kept AS FROM logfire.records")
            connection.execute("DROP TABLE logfire.records")
            connection.execute("CREATE VIEW logfire.records AS FROM logfire.kept")
        own.clock.advance(HOUR)
        with pytest.raises(PipelineStepFailed):
            run_sync(dest.pipeline, **options(own, tables=["records"]))

        with pytest.raises(LogfireSyncError, match="abort-packages") as refused:
            run_sync(dest.pipeline, **options(own, tables=["records"]))

        with duckdb.connect(str(dest.path)) as connection:
            connection.execute("DROP VIEW logfire.records")
            connection.execute("ALTER TABLE logfire.kept RENAME TO records")
        # The command the message gives, as a user would paste it.
        given = re.search(r"abort it: `(dlt pipeline [^`]+)`", str(refused.value))
        assert given is not None
        command = given.group(1)
        dlt_command = Path(sys.executable).with_name("dlt")
        done = subprocess.run(
            [str(dlt_command), *shlex.split(command)[1:]],
            input="y\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        report = run_sync(dest.pipeline, **options(own, tables=["records"]))
        stored = own.store.visible("records", own.clock.now())

    assert report.caught_up
    (watermark,) = {table.watermark for table in report.tables}
    assert watermark is not None
    assert_same_rows(dest.table("records"), expected_rows(stored, watermark))
