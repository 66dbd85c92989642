"""Pages a service sends in other layouts: dictionaries, string views, other types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import httpx
import pyarrow as pa
import pytest

from connector.arrow import loaded_types, prepare_batch
from connector.client import ARROW_STREAM, LogfireClient
from connector.errors import LogfireSyncError
from connector.pager import WindowQuery, order_by, read_window
from connector.retry import RetryPolicy
from connector.sql import timestamp_literal
from connector.tables import METRICS, RECORDS
from connector.windows import Window, created_at_scan

TOKEN = "pylf_v1_us_Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
START = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def page(first: int, *, dictionaries: pa.DataType | None) -> pa.Table:
    """Three rows of records' key and attributes, in key order."""
    created = [START + timedelta(minutes=first + i) for i in range(3)]
    table = pa.table(
        {
            "created_at": pa.array(created, TS),
            "trace_id": [f"{first + i:032x}" for i in range(3)],
            "span_id": [f"{i:016x}" for i in range(3)],
            "kind": ["span", "log", "span"],
            "start_timestamp": pa.array(created, TS),
            "span_name": ["GET /", "job", "GET /"],
            "message": ["GET /", "job done", "GET /"],
            "attributes": [json.dumps({"row": first + i}) for i in range(3)],
        }
    )
    if dictionaries is None:
        return table
    encoded = [
        column.dictionary_encode().cast(pa.dictionary(dictionaries, column.type))
        for column in table.columns
    ]
    return pa.table(encoded, names=table.column_names)


def stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def window_query(window: Window) -> WindowQuery:
    low, high = created_at_scan(window, timedelta(hours=24), timedelta(hours=1))

    def build(extra: str | None, limit: int) -> str:
        conditions = [
            f"created_at >= {timestamp_literal(window.lo)}",
            f"created_at < {timestamp_literal(window.hi)}",
            *([f"({extra})"] if extra else []),
        ]
        return (
            f"SELECT * FROM records WHERE {' AND '.join(conditions)} "
            f"ORDER BY {order_by(RECORDS.key)} LIMIT {limit}"
        )

    return WindowQuery(build, RECORDS.key, window, "created_at", low, high, "records")


def test_dictionary_pages_and_plain_pages_load_as_one_type(tmp_path: Path) -> None:
    served = [
        page(0, dictionaries=pa.int8()),
        page(10, dictionaries=pa.int32()),
        page(20, dictionaries=None),
    ]
    bodies = [stream(table) for table in served]

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.pop(0)
        return httpx.Response(200, headers={"content-type": ARROW_STREAM}, content=body)

    client = LogfireClient(
        TOKEN, transport=httpx.MockTransport(handler), retry=RetryPolicy(max_attempts=1)
    )
    batches = []
    with client:
        for number in range(3):
            lo = START + timedelta(minutes=10 * number)
            window = Window(lo, lo + timedelta(minutes=10))
            batches.extend(read_window(client, window_query(window), page_size=100))

    fields = [field for batch in batches for field in batch.schema]
    assert not any(pa.types.is_dictionary(field.type) for field in fields)
    plain = [page(first, dictionaries=None) for first in (0, 10, 20)]
    assert pa.Table.from_batches(batches).equals(pa.concat_tables(plain))

    # One load of every page: dlt refuses items whose types differ.
    pipeline = dlt.pipeline(
        pipeline_name="dictionaries",
        destination=dlt.destinations.duckdb(str(tmp_path / "d.duckdb")),
        dataset_name="logfire",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    items = [prepare_batch(batch) for batch in batches]
    pipeline.run(dlt.resource(items, name="records"))
    with pipeline.sql_client() as sql:
        loaded = sql.execute_sql("SELECT trace_id FROM records ORDER BY trace_id")
    assert [row[0] for row in loaded] == pa.concat_tables(plain)["trace_id"].to_pylist()


def metrics_page(text: pa.DataType) -> pa.Table:
    """Two metrics rows in key order, text in `text`, one instance id null."""
    created = [START, START + timedelta(seconds=1)]
    strings = {
        "metric_name": ["cpu", "cpu"],
        "service_name": ["api", "api"],
        "service_instance_id": [None, "i-1"],
        "attributes": ['{"core":0}', '{"core":1}'],
    }
    return pa.table(
        {
            "created_at": pa.array(created, TS),
            "metric_name": pa.array(strings["metric_name"], text),
            "service_name": pa.array(strings["service_name"], text),
            "recorded_timestamp": pa.array(created, TS),
            "service_instance_id": pa.array(strings["service_instance_id"], text),
            "attributes": pa.array(strings["attributes"], text),
        }
    )


@pytest.mark.parametrize("text", [pa.string_view(), pa.large_string()])
def test_text_as_string_views_or_large_strings_is_read_as_plain_strings(
    text: pa.DataType,
) -> None:
    # DataFusion streams text as string views unless told otherwise, and the
    # nullable key columns of metrics go through pyarrow kernels that take
    # only plain strings.
    batches = read_metrics(metrics_page(text))

    read = pa.Table.from_batches(batches)
    assert read.equals(metrics_page(pa.string()))


def read_metrics(table: pa.Table) -> list[pa.RecordBatch]:
    """The batches the pager passes on from one response holding `table`."""
    body = stream(table)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": ARROW_STREAM}, content=body)

    window = Window(START, START + timedelta(minutes=10))
    low, high = created_at_scan(window, timedelta(hours=24), timedelta(hours=1))
    query = WindowQuery(
        lambda extra, limit: f"SELECT * FROM metrics LIMIT {limit}",
        METRICS.key,
        window,
        "created_at",
        low,
        high,
        "metrics",
    )
    client = LogfireClient(
        TOKEN, transport=httpx.MockTransport(handler), retry=RetryPolicy(max_attempts=1)
    )
    with client:
        return list(read_window(client, query, page_size=100))


def test_a_nullable_key_column_typed_null_pages_as_nulls() -> None:
    # A service that types columns by their values sends an all-null one as null.
    table = metrics_page(pa.string())
    index = table.schema.get_field_index("service_instance_id")
    table = table.set_column(index, "service_instance_id", pa.nulls(2))

    batches = read_metrics(table)

    assert pa.Table.from_batches(batches).num_rows == 2
    loaded = prepare_batch(batches[0], types=loaded_types(METRICS))
    assert loaded.schema.field("service_instance_id").type == pa.string()


def test_a_result_with_two_columns_of_one_name_is_refused() -> None:
    table = metrics_page(pa.string())
    table = table.append_column("metric_name", pa.array(["x", "y"]))

    with pytest.raises(LogfireSyncError, match="more than one column named"):
        read_metrics(table)


def test_pages_typed_by_their_values_load_in_one_run(tmp_path: Path) -> None:
    first = page(0, dictionaries=None).append_column(
        pa.field("level", pa.int32(), nullable=False), pa.array([9, 9, 17], pa.int32())
    )
    second = page(10, dictionaries=None).append_column(
        "level", pa.array([5, 9, 9], pa.int64())
    )
    third = page(20, dictionaries=None).append_column("level", pa.nulls(3))
    types = loaded_types(RECORDS)
    items = [
        prepare_batch(batch, types=types)
        for table in (first, second, third)
        for batch in table.to_batches()
    ]

    pipeline = dlt.pipeline(
        pipeline_name="widths",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="logfire",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.run(dlt.resource(items, name="records"))
    with pipeline.sql_client() as sql:
        loaded = sql.execute_sql("SELECT level FROM records ORDER BY trace_id")
    assert [row[0] for row in loaded] == [9, 9, 17, 5, 9, 9, None, None, None]
