"""Pages a service sends dictionary-encoded, or not, from one to the next."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import httpx
import pyarrow as pa

from connector.arrow import prepare_batch
from connector.client import ARROW_STREAM, LogfireClient
from connector.pager import WindowQuery, order_by, read_window
from connector.retry import RetryPolicy
from connector.sql import timestamp_literal
from connector.tables import RECORDS
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
