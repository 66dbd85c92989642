"""The four response formats, chosen by `Accept`, and their encoders."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from sandbox import formats
from sandbox.server import SandboxServer

ARROW = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
TYPED_COLUMNS = (
    "SELECT start_timestamp, day, span_id, level, duration, is_exception, tags, "
    "attributes FROM records"
)
TIMESTAMP_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def post(
    server: SandboxServer,
    sql: str = TYPED_COLUMNS,
    *,
    accept: str | None = "application/json",
    **fields: Any,
) -> httpx.Response:
    body = {
        "sql": sql,
        "min_timestamp": (server.clock.now() - timedelta(days=7)).isoformat(),
        **fields,
    }
    headers = {"Authorization": server.token}
    if accept is not None:
        headers["Accept"] = accept
    return httpx.post(f"{server.url}/v2/query", json=body, headers=headers)


def ndjson_lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines()]


# Choosing the format


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (NDJSON, NDJSON),
        (ARROW, ARROW),
        ("text/csv", "text/csv; charset=utf-8"),
        ("application/xml", "application/json"),
    ],
)
def test_accept_chooses_the_format(
    sandbox: SandboxServer, accept: str | None, content_type: str
) -> None:
    response = post(sandbox, "SELECT 1 AS x", accept=accept)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("text/csv, application/json;q=0.9", "text/csv; charset=utf-8"),
        ("application/json;q=0.1, text/csv", "application/json"),
        (f"{ARROW}, application/problem+json;q=0.9", ARROW),
        (f"{NDJSON};q=0.5, {ARROW}", NDJSON),
    ],
)
def test_the_first_of_several_types_wins_whatever_the_q_values(
    sandbox: SandboxServer, accept: str, content_type: str
) -> None:
    response = post(sandbox, "SELECT 1 AS x", accept=accept)

    assert response.headers["content-type"] == content_type


# JSON


def test_json_describes_types_as_rust_arrow_serialises_them(
    sandbox: SandboxServer,
) -> None:
    fields = post(sandbox, limit=1).json()["schema"]["fields"]

    types = {field["name"]: field["data_type"] for field in fields}
    assert types == {
        "start_timestamp": {"Timestamp": ["Microsecond", "UTC"]},
        "day": "Date32",
        "span_id": "Utf8",
        "level": "Int32",
        "duration": "Float64",
        "is_exception": "Boolean",
        "tags": {
            "List": {
                "name": "item",
                "data_type": "Utf8",
                "nullable": True,
                "dict_id": 0,
                "dict_is_ordered": False,
                "metadata": {},
            }
        },
        "attributes": "Utf8",
    }
    assert fields[0]["nullable"] is False


def test_json_writes_timestamps_dates_lists_and_json_text(
    sandbox: SandboxServer,
) -> None:
    rows = post(sandbox, TYPED_COLUMNS + " WHERE tags IS NOT NULL", limit=50).json()[
        "data"
    ]

    row = rows[0]
    assert TIMESTAMP_TEXT.match(row["start_timestamp"])
    assert date.fromisoformat(row["day"])
    assert isinstance(row["tags"], list)
    assert isinstance(row["attributes"], str)
    assert isinstance(json.loads(row["attributes"]), dict)


def test_json_result_of_no_rows_keeps_its_schema(sandbox: SandboxServer) -> None:
    result = post(sandbox, "SELECT span_id FROM records WHERE level < 0").json()

    assert result["data"] == []
    assert [field["name"] for field in result["schema"]["fields"]] == ["span_id"]


def test_json_spans_several_batches_as_one_array(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id FROM records UNION ALL SELECT span_id FROM records"

    rows = post(sandbox, sql, limit=10_000).json()["data"]

    assert len(rows) == 10_000


# NDJSON


def test_ndjson_is_schema_then_data_then_end(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id FROM records UNION ALL SELECT span_id FROM records"

    lines = ndjson_lines(post(sandbox, sql, accept=NDJSON, limit=10_000))

    kinds = [line["type"] for line in lines]
    assert kinds[0] == "schema"
    assert set(kinds[1:-1]) == {"data"}
    assert kinds[-1] == "end"
    assert lines[-1]["row_count"] == 10_000
    assert sum(len(line["rows"]) for line in lines[1:-1]) == 10_000
    assert lines[0]["schema"]["fields"][0]["name"] == "span_id"


def test_ndjson_with_explain_has_an_explain_line(sandbox: SandboxServer) -> None:
    lines = ndjson_lines(post(sandbox, accept=NDJSON, limit=2, explain=True))

    assert [line["type"] for line in lines][:2] == ["schema", "explain"]
    assert lines[1]["logical_plan"]
    assert lines[1]["physical_plan"]
    assert "physical_plan_with_metrics" in lines[-1]


def test_ndjson_of_no_rows_has_no_data_line(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id FROM records WHERE level < 0"

    lines = ndjson_lines(post(sandbox, sql, accept=NDJSON))

    assert lines[1:] == [{"type": "end", "row_count": 0}]


# Arrow


def test_arrow_is_an_ipc_stream_ending_with_the_marker(sandbox: SandboxServer) -> None:
    response = post(sandbox, accept=ARROW, limit=500)

    table = pa.ipc.open_stream(response.content).read_all()
    assert response.content.endswith(EOS)
    assert table.num_rows == 500
    assert table.schema.field("start_timestamp").type == pa.timestamp("us", "UTC")
    assert table.schema.field("tags").type == pa.list_(pa.string())


def test_arrow_streams_batch_by_batch(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id FROM records UNION ALL SELECT span_id FROM records"

    response = post(sandbox, sql, accept=ARROW, limit=10_000)

    batches = list(pa.ipc.open_stream(response.content))
    assert len(batches) >= 2
    assert sum(batch.num_rows for batch in batches) == 10_000


def test_arrow_of_no_rows_is_a_schema_and_the_marker(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id FROM records WHERE level < 0"

    response = post(sandbox, sql, accept=ARROW)

    reader = pa.ipc.open_stream(response.content)
    assert reader.schema.names == ["span_id"]
    assert reader.read_all().num_rows == 0
    assert response.content.endswith(EOS)


# CSV


def test_csv_has_a_header_even_without_rows(sandbox: SandboxServer) -> None:
    sql = "SELECT span_id, level FROM records WHERE level < 0"

    response = post(sandbox, sql, accept="text/csv")

    assert list(csv.reader(io.StringIO(response.text))) == [["span_id", "level"]]


def test_csv_writes_lists_as_json_and_timestamps_as_rfc_3339(
    sandbox: SandboxServer,
) -> None:
    sql = "SELECT start_timestamp, tags, attributes FROM records WHERE tags IS NOT NULL"

    response = post(sandbox, sql, accept="text/csv", limit=20)

    header, *rows = list(csv.reader(io.StringIO(response.text)))
    assert header == ["start_timestamp", "tags", "attributes"]
    assert len(rows) == 20
    for start, tags, attributes in rows:
        assert TIMESTAMP_TEXT.match(start)
        assert isinstance(json.loads(tags), list)
        assert isinstance(json.loads(attributes), dict)


# The encoders on their own


@pytest.mark.parametrize(
    ("data_type", "expected"),
    [
        (pa.string(), "Utf8"),
        (pa.large_string(), "LargeUtf8"),
        (pa.int64(), "Int64"),
        (pa.float64(), "Float64"),
        (pa.bool_(), "Boolean"),
        (pa.date32(), "Date32"),
        (pa.timestamp("us", "UTC"), {"Timestamp": ["Microsecond", "UTC"]}),
        (pa.timestamp("ns"), {"Timestamp": ["Nanosecond", None]}),
        (pa.decimal128(10, 2), {"Decimal128": [10, 2]}),
        (pa.duration("ms"), {"Duration": "Millisecond"}),
    ],
)
def test_data_types_are_written_the_rust_way(
    data_type: pa.DataType, expected: object
) -> None:
    assert formats.data_type_json(data_type) == expected


def test_a_list_type_nests_its_item_field() -> None:
    written = formats.data_type_json(pa.list_(pa.int64()))

    assert written == {"List": formats.field_json(pa.field("item", pa.int64()))}


def test_list_json_escapes_text_and_writes_nulls() -> None:
    column = pa.array([['a "quoted"\n\\', None, "\x01"], None, []])

    written = formats.list_json(column).to_pylist()

    assert written[1] is None
    assert json.loads(written[0]) == ['a "quoted"\n\\', None, "\x01"]
    assert written[2] == "[]"


def test_list_json_writes_non_finite_floats_as_null() -> None:
    column = pa.array([[1.5, float("nan"), float("inf")]])

    assert json.loads(formats.list_json(column)[0].as_py()) == [1.5, None, None]


def test_list_json_of_a_sliced_column_keeps_its_own_rows() -> None:
    column = pa.array([[1], [2, 3], [4]], pa.list_(pa.int64())).slice(1, 2)

    assert formats.list_json(column).to_pylist() == ["[2,3]", "[4]"]


def test_timestamps_outside_utc_keep_their_offset() -> None:
    moment = datetime(2026, 5, 27, 13, 16, 36, 517321, tzinfo=UTC)
    column = pa.array([moment], pa.timestamp("us", "Europe/Paris"))

    [text] = formats.iso_timestamps(column).to_pylist()

    assert text == "2026-05-27T15:16:36.517321+02:00"
    assert datetime.fromisoformat(text) == moment


def test_choose_format_ignores_parameters_and_case() -> None:
    assert formats.choose_format("Text/CSV; charset=utf-8") == "csv"
    assert formats.choose_format("") == "json"
