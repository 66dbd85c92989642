"""run_verify and run_repair: counts per bucket, in Logfire and the destination."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from synchelp import (
    NOW,
    TS,
    Destination,
    assert_same_rows,
    destination,
    expected_rows,
    files_pipeline,
    make_metrics,
    make_records,
    sandbox,
)

from connector.errors import ConfigurationError
from connector.sync import read_status, run_sync
from connector.verify import Audit, run_repair, run_verify
from sandbox.server import SandboxServer

HORIZON = NOW - timedelta(minutes=5)
FROM = NOW - timedelta(hours=30)
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def edge_records() -> pa.Table:
    """Records whose event times sit on, and a microsecond before, hour edges."""
    rows = make_records(6, seed=3, start=NOW - timedelta(hours=3), end=NOW)
    edge = NOW - timedelta(hours=4)
    stamps = [edge, edge - timedelta(microseconds=1)] * 3
    rows = rows.set_column(0, "start_timestamp", pa.array(stamps, TS))
    return rows.set_column(1, "end_timestamp", pa.array(stamps, TS))


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(3_000, seed=31, start=NOW - timedelta(hours=5), end=NOW)
    records = pa.concat_tables([records, edge_records()])
    metrics = make_metrics(600, seed=32, start=NOW - timedelta(hours=5), end=NOW)
    with sandbox(records, metrics) as running:
        yield running


def options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {"read_token": server.token, "base_url": server.url, **extra}


def synced(server: SandboxServer, tmp_path: Path, **extra: Any) -> Destination:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, start=FROM.isoformat(), **options(server, **extra))
    return dest


def verify(dest: Destination, server: SandboxServer, **extra: Any) -> Audit:
    return run_verify(dest.pipeline, FROM, NOW, **options(server, **extra))


def execute(dest: Destination, sql: str) -> None:
    with duckdb.connect(str(dest.path)) as connection:
        connection.execute(sql)


def bucket_of(moment: datetime, width: timedelta = HOUR) -> datetime:
    return EPOCH + (moment - EPOCH) // width * width


def visible(server: SandboxServer, table: str) -> pa.Table:
    return expected_rows(server.store.visible(table, server.clock.now()), HORIZON)


def differences(audit: Audit) -> dict[tuple[str, datetime], tuple[int, int]]:
    return {
        (diff.table, diff.bucket.lo): (diff.missing, diff.excess)
        for diff in audit.differences
    }


def test_a_complete_sync_matches_in_every_bucket(
    server: SandboxServer, tmp_path: Path
) -> None:
    audit = verify(synced(server, tmp_path), server)

    assert audit.matches
    tables = {table.table: table for table in audit.tables}
    assert tables["records"].buckets == 30
    assert tables["records"].logfire_rows == visible(server, "records").num_rows
    assert tables["records"].destination_rows == tables["records"].logfire_rows
    assert tables["metrics"].logfire_rows == visible(server, "metrics").num_rows
    assert {table.stored_before for table in audit.tables} == {HORIZON}
    assert all(table.from_watermark for table in audit.tables)


def test_rows_on_bucket_edges_fall_in_the_same_bucket_on_both_sides(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path, tables=["records"])
    edge = NOW - timedelta(hours=4)
    execute(dest, f"DELETE FROM logfire.records WHERE start_timestamp = '{edge}'")

    audit = verify(dest, server, tables=["records"])

    assert differences(audit) == {("records", edge): (3, 0)}


def test_rows_missing_from_the_destination_are_reported_per_bucket(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path)
    gone = dest.query(
        "SELECT start_timestamp FROM logfire.records ORDER BY span_id LIMIT 9"
    )
    execute(
        dest,
        "DELETE FROM logfire.records WHERE span_id IN "
        "(SELECT span_id FROM logfire.records ORDER BY span_id LIMIT 9)",
    )

    audit = verify(dest, server)

    expected = Counter(bucket_of(start) for (start,) in gone)
    assert differences(audit) == {
        ("records", bucket): (count, 0) for bucket, count in expected.items()
    }
    assert not audit.matches


def test_duplicated_rows_show_as_excess_and_a_repair_folds_them(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path)
    execute(
        dest,
        "INSERT INTO logfire.metrics SELECT * FROM logfire.metrics "
        "ORDER BY created_at LIMIT 4",
    )
    audit = verify(dest, server)
    assert sum(diff.excess for diff in audit.differences) == 4
    assert {diff.table for diff in audit.differences} == {"metrics"}

    repair = run_repair(dest.pipeline, audit, **options(server))

    assert repair.after.matches
    assert_same_rows(dest.table("metrics"), visible(server, "metrics"))


def test_a_repair_backfills_only_the_differing_buckets(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path)
    first, second = NOW - timedelta(hours=20), NOW - timedelta(hours=2)
    for bucket in (first, second, second + HOUR):
        execute(
            dest,
            f"DELETE FROM logfire.records WHERE start_timestamp >= '{bucket}' "
            f"AND start_timestamp < '{bucket + HOUR}'",
        )
    audit = verify(dest, server)
    lost = sum(diff.missing for diff in audit.differences)

    repair = run_repair(dest.pipeline, audit, **options(server))

    ranges = [(window.lo, window.hi, tables) for window, tables in repair.ranges]
    assert ranges == [
        (first, first + HOUR, ("records",)),
        (second, second + 2 * HOUR, ("records",)),
    ]
    assert repair.rows == lost
    assert repair.after.matches
    assert_same_rows(dest.table("records"), visible(server, "records"))
    statuses = {status.table: status for status in read_status(dest.pipeline)}
    assert statuses["records"].watermark == HORIZON


def test_a_repair_leaves_rows_logfire_does_not_hold(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path, tables=["records"])
    execute(
        dest,
        "INSERT INTO logfire.records SELECT * REPLACE (created_at - INTERVAL 1 "
        "MICROSECOND AS created_at, 'made up' AS message) FROM logfire.records "
        "ORDER BY span_id LIMIT 1",
    )
    audit = verify(dest, server, tables=["records"])
    assert [diff.excess for diff in audit.differences] == [1]

    repair = run_repair(dest.pipeline, audit, **options(server, tables=["records"]))

    assert [diff.excess for diff in repair.after.differences] == [1]
    assert repair.after.differences[0].bucket == audit.differences[0].bucket


def test_a_table_never_synced_is_compared_up_to_the_horizon(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path, tables=["records"])

    audit = verify(dest, server)

    metrics = next(table for table in audit.tables if table.table == "metrics")
    assert not metrics.from_watermark
    assert metrics.stored_before == HORIZON
    assert metrics.destination_rows == 0
    assert metrics.logfire_rows == visible(server, "metrics").num_rows


def test_a_table_whose_files_are_gone_counts_as_empty(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline, files = files_pipeline(tmp_path, "files")
    run_sync(pipeline, start=FROM.isoformat(), **options(server))
    # As a lifecycle rule on the bucket would leave it: the folder, no files.
    for part in (files / "logfire" / "records").iterdir():
        part.unlink()

    audit = run_verify(pipeline, FROM, NOW, **options(server))

    counted = {table.table: table for table in audit.tables}
    assert counted["records"].destination_rows == 0
    assert counted["records"].logfire_rows == visible(server, "records").num_rows
    assert not counted["metrics"].differences


def synced_partly(server: SandboxServer, tmp_path: Path) -> Destination:
    """Records synced for one chunk of 27 hours: a watermark short of the horizon."""
    dest = destination(tmp_path)
    run_sync(
        dest.pipeline,
        start=FROM.isoformat(),
        chunk="27h",
        max_chunks=1,
        **options(server, tables=["records"]),
    )
    return dest


def test_rows_stored_after_the_watermark_are_not_counted(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced_partly(server, tmp_path)
    [status] = read_status(dest.pipeline)
    assert status.watermark == FROM + timedelta(hours=27)

    audit = verify(dest, server, tables=["records"])

    assert audit.matches
    assert audit.tables[0].stored_before == status.watermark
    assert audit.tables[0].logfire_rows < visible(server, "records").num_rows


def test_verify_on_a_fresh_machine_goes_by_the_watermark_in_the_destination(
    server: SandboxServer, tmp_path: Path
) -> None:
    synced_partly(server, tmp_path)
    shutil.rmtree(tmp_path / "pipelines")

    audit = verify(destination(tmp_path), server, tables=["records"])

    assert audit.matches
    assert audit.tables[0].stored_before == FROM + timedelta(hours=27)


def test_the_counts_apply_the_sync_filters(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path, service_names=["api"], min_level="warn")

    assert verify(dest, server, service_names=["api"], min_level="warn").matches
    unfiltered = verify(dest, server, service_names=["api"])
    assert {diff.table for diff in unfiltered.differences} == {"records"}
    assert all(diff.missing for diff in unfiltered.differences)


def test_a_range_wider_than_14_days_is_counted_in_pieces(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path)
    server.counters.reset()

    audit = run_verify(
        dest.pipeline, NOW - timedelta(days=30), NOW, bucket="1d", **options(server)
    )

    assert audit.matches
    assert audit.tables[0].buckets == 31
    # The service's clock, then three pieces of at most 14 days per table.
    assert audit.requests == 1 + 2 * 3


def test_count_reads_retry_streams_cut_short_or_failing(tmp_path: Path) -> None:
    records = make_records(2_000, seed=41, start=NOW - timedelta(hours=5), end=NOW)
    with sandbox(records) as server:
        dest = synced(server, tmp_path, tables=["records"])
        clean = verify(dest, server, tables=["records"])
        server.faults.force("truncate")
        server.faults.force("ndjson_error")

        faulty = verify(dest, server, tables=["records"], max_attempts=3)

    assert faulty.matches
    assert faulty.tables == clean.tables
    assert faulty.requests == clean.requests + 2


@pytest.mark.parametrize(
    ("bucket", "start", "end", "message"),
    [
        ("90ms", FROM, NOW, "whole number of seconds"),
        ("0s", FROM, NOW, "whole number of seconds"),
        ("1h", NOW, FROM, "not before its end"),
        ("1h", "2026-05-26T00:00:00", NOW, "no time zone"),
    ],
)
def test_bad_ranges_and_buckets_are_refused_before_any_request(
    tmp_path: Path, bucket: str, start: Any, end: Any, message: str
) -> None:
    pipeline = destination(tmp_path).pipeline
    with pytest.raises(ConfigurationError, match=message):
        run_verify(pipeline, start, end, bucket=bucket, read_token="t")


def test_a_repair_is_refused_where_rows_are_only_appended(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path)
    audit = verify(dest, server)
    with pytest.raises(ConfigurationError, match="only appends rows"):
        run_repair(dest.pipeline, audit, write_disposition="append", **options(server))


@pytest.mark.postgres
def test_counts_and_repairs_in_postgres(server: SandboxServer, tmp_path: Path) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    from tests.postgres_server import postgres_server

    with postgres_server() as url:
        pipeline = dlt.pipeline(
            pipeline_name="verify_pg",
            destination=dlt.destinations.postgres(url),
            pipelines_dir=str(tmp_path / "pipelines"),
            dataset_name="logfire",
        )
        run_sync(pipeline, start=FROM.isoformat(), **options(server))
        assert run_verify(pipeline, FROM, NOW, **options(server)).matches

        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM logfire.records WHERE start_timestamp = %s",
                (NOW - timedelta(hours=4),),
            )
            cursor.execute(
                "INSERT INTO logfire.metrics SELECT * FROM logfire.metrics "
                "ORDER BY created_at LIMIT 1"
            )
        audit = run_verify(pipeline, FROM, NOW, **options(server))
        repair = run_repair(pipeline, audit, **options(server))

    assert differences(audit) == {
        ("records", NOW - timedelta(hours=4)): (3, 0),
        ("metrics", bucket_of(first_metric(server))): (0, 1),
    }
    assert repair.after.matches


def first_metric(server: SandboxServer) -> datetime:
    rows = visible(server, "metrics")
    order = pc.sort_indices(rows, [("created_at", "ascending")])
    first: datetime = rows.take(order[:1])["recorded_timestamp"][0].as_py()
    return first


def test_the_same_buckets_can_be_repaired_again(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = synced(server, tmp_path, tables=["records"])
    bucket = NOW - timedelta(hours=3)
    delete = (
        f"DELETE FROM logfire.records WHERE start_timestamp >= '{bucket}' "
        f"AND start_timestamp < '{bucket + HOUR}'"
    )
    for _ in range(2):
        execute(dest, delete)
        audit = verify(dest, server, tables=["records"])
        assert [diff.bucket.lo for diff in audit.differences] == [bucket]

        repair = run_repair(dest.pipeline, audit, **options(server, tables=["records"]))

        assert repair.rows == audit.differences[0].missing
        assert repair.after.matches
