"""The official Logfire SDK, unchanged, against the sandbox."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from logfire import db_api
from logfire.query_client import (
    AsyncLogfireQueryClient,
    LogfireQueryClient,
    QueryExecutionError,
    QueryRateLimitedError,
    QueryRequestError,
    UnexpectedResponseError,
)

from sandbox import schema
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

COLUMNS = ", ".join(schema.RECORDS.names)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[LogfireQueryClient]:
    with LogfireQueryClient(sandbox.token, base_url=sandbox.url) as sdk:
        yield sdk


class Window:
    """Half an hour of settled rows, long before the sandbox's now."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.start = server.clock.now().replace(microsecond=0) - timedelta(hours=20)
        self.end = self.start + timedelta(minutes=30)
        self.min_timestamp = self.start - timedelta(hours=25)

    def sql(self, columns: str = COLUMNS) -> str:
        return (
            f"SELECT {columns} FROM records "
            f"WHERE created_at >= '{self.start.isoformat()}' "
            f"AND created_at < '{self.end.isoformat()}'"
        )

    def expected(self) -> pa.Table:
        table = self.server.store.visible("records", self.server.clock.now())
        created = table.column("created_at")
        mask = pc.and_(
            pc.greater_equal(created, pa.scalar(self.start, schema.TIMESTAMP)),
            pc.less(created, pa.scalar(self.end, schema.TIMESTAMP)),
        )
        return table.filter(mask)


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as sortable text, so equal multisets compare equal in any order."""
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def from_json_value(value: Any, data_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(data_type):
        return datetime.fromisoformat(value)
    if pa.types.is_date(data_type):
        return date.fromisoformat(value)
    return value


def test_query_json_rows_describes_columns_and_rows(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)

    result = client.query_json_rows(
        window.sql("trace_id, level, tags"),
        min_timestamp=window.min_timestamp,
        limit=5,
    )

    assert [column["name"] for column in result["columns"]] == [
        "trace_id",
        "level",
        "tags",
    ]
    assert result["columns"][1]["datatype"] == "Int32"
    assert result["columns"][2]["datatype"] == {
        "List": {"name": "item", "datatype": "Utf8", "nullable": True}
    }
    assert len(result["rows"]) == 5


def test_query_json_rows_round_trips_every_value(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)
    expected = window.expected()

    result = client.query_json_rows(
        window.sql(), min_timestamp=window.min_timestamp, limit=10_000
    )

    types = {field.name: field.type for field in schema.RECORDS}
    rows = [
        {name: from_json_value(value, types[name]) for name, value in row.items()}
        for row in result["rows"]
    ]
    assert 0 < expected.num_rows < 10_000
    assert canonical(rows) == canonical(expected.to_pylist())


def test_query_json_rows_keeps_json_columns_as_text(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)

    result = client.query_json_rows(
        window.sql("attributes, otel_resource_attributes"),
        min_timestamp=window.min_timestamp,
        limit=20,
    )

    for row in result["rows"]:
        assert isinstance(row["attributes"], str)
        assert isinstance(json.loads(row["otel_resource_attributes"]), dict)


def test_query_arrow_returns_the_stored_rows_and_types(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)
    expected = window.expected()

    table = client.query_arrow(
        window.sql(), min_timestamp=window.min_timestamp, limit=10_000
    )

    assert [field.type for field in table.schema] == [
        field.type for field in schema.RECORDS
    ]
    assert canonical(table.to_pylist()) == canonical(expected.to_pylist())


def test_query_csv_reads_back_with_pandas(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)
    expected = window.expected().sort_by([("span_id", "ascending")])

    text = client.query_csv(
        window.sql("span_id, start_timestamp, tags") + " ORDER BY span_id",
        min_timestamp=window.min_timestamp,
        limit=10_000,
    )

    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == ["span_id", "start_timestamp", "tags"]
    assert list(frame["span_id"]) == expected.column("span_id").to_pylist()
    first = expected.slice(0, 1).to_pylist()[0]
    assert (
        datetime.fromisoformat(frame["start_timestamp"][0])
        == (first["start_timestamp"])
    )


def test_info_names_the_organization_and_project(client: LogfireQueryClient) -> None:
    assert client.info() == {"organization_name": "sandbox", "project_name": "sandbox"}


def test_environment_restricts_rows(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)
    stored = set(window.expected().column("deployment_environment").to_pylist())
    environment = sorted(name for name in stored if name)[0]

    result = client.query_json_rows(
        window.sql("deployment_environment"),
        min_timestamp=window.min_timestamp,
        limit=10_000,
        environment=environment,
    )

    assert {row["deployment_environment"] for row in result["rows"]} == {environment}


def test_max_timestamp_bounds_start_timestamp(
    client: LogfireQueryClient, sandbox: SandboxServer
) -> None:
    window = Window(sandbox)
    bound = window.start - timedelta(minutes=10)

    table = client.query_arrow(
        window.sql("start_timestamp"),
        min_timestamp=window.min_timestamp,
        max_timestamp=bound,
        limit=10_000,
    )

    assert pc.max(table.column("start_timestamp")).as_py() <= bound


@pytest.mark.anyio
async def test_async_client_queries_every_format(sandbox: SandboxServer) -> None:
    window = Window(sandbox)
    async with AsyncLogfireQueryClient(sandbox.token, base_url=sandbox.url) as sdk:
        rows = await sdk.query_json_rows(
            window.sql("span_id"), min_timestamp=window.min_timestamp, limit=10_000
        )
        table = await sdk.query_arrow(
            window.sql("span_id"), min_timestamp=window.min_timestamp, limit=10_000
        )
        text = await sdk.query_csv(
            window.sql("span_id"), min_timestamp=window.min_timestamp, limit=10_000
        )
        info = await sdk.info()

    expected = sorted(window.expected().column("span_id").to_pylist())
    assert sorted(row["span_id"] for row in rows["rows"]) == expected
    assert sorted(table.column("span_id").to_pylist()) == expected
    assert sorted(text.splitlines()[1:]) == sorted(f'"{s}"' for s in expected)
    assert info["project_name"] == "sandbox"


def test_db_api_cursor_fetches_rows_into_a_dataframe(sandbox: SandboxServer) -> None:
    window = Window(sandbox)
    with db_api.connect(
        sandbox.token, base_url=sandbox.url, min_timestamp=window.min_timestamp
    ) as connection:
        cursor = connection.cursor()
        cursor.execute(
            window.sql("span_id, level") + " AND level >= %(level)s", {"level": 9}
        )
        names = [column[0] for column in cursor.description or []]
        frame = pd.DataFrame(cursor.fetchall(), columns=names)

    expected = window.expected()
    expected = expected.filter(pc.greater_equal(expected.column("level"), 9))
    assert names == ["span_id", "level"]
    assert sorted(frame["span_id"]) == sorted(expected.column("span_id").to_pylist())


def test_db_api_works_with_pandas_read_sql(sandbox: SandboxServer) -> None:
    window = Window(sandbox)
    # pandas warns that it has only tested SQLAlchemy and sqlite3 connections.
    with (
        db_api.connect(
            sandbox.token, base_url=sandbox.url, min_timestamp=window.min_timestamp
        ) as connection,
        pytest.warns(UserWarning, match="SQLAlchemy"),
    ):
        frame = pd.read_sql(window.sql("span_id, duration"), connection)

    assert len(frame) == window.expected().num_rows


def test_a_sql_error_raises_query_execution_error(client: LogfireQueryClient) -> None:
    with pytest.raises(QueryExecutionError) as raised:
        client.query_json_rows(
            "SELECT no_such_column FROM records",
            min_timestamp=datetime.now().astimezone() - timedelta(hours=1),
        )

    detail = raised.value.args[0]["detail"]
    assert "no_such_column" in detail


def test_an_invalid_request_raises_query_request_error(
    client: LogfireQueryClient,
) -> None:
    with pytest.raises(QueryRequestError) as raised:
        client.query_json_rows(
            "SELECT 1",
            min_timestamp=datetime.now().astimezone(),
            limit=20_000,
        )

    [error] = raised.value.args[0]["detail"]
    assert (error["type"], error["loc"]) == ("less_than_equal", ["body", "limit"])


def test_a_rate_limit_raises_query_rate_limited_error_with_retry_after(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("retry_after=7,force=429")

    with (
        LogfireQueryClient(fresh_sandbox.token, base_url=fresh_sandbox.url) as sdk,
        pytest.raises(QueryRateLimitedError) as raised,
    ):
        sdk.query_arrow("SELECT 1", min_timestamp=datetime.now().astimezone())

    assert raised.value.retry_after == 7.0
    assert raised.value.retryable is True


def test_a_rate_limit_with_an_http_date_gives_retry_after_seconds(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("retry_after=30,force=429date")

    with (
        LogfireQueryClient(fresh_sandbox.token, base_url=fresh_sandbox.url) as sdk,
        pytest.raises(QueryRateLimitedError) as raised,
    ):
        sdk.query_arrow("SELECT 1", min_timestamp=datetime.now().astimezone())

    assert raised.value.retry_after is not None
    assert 27 <= raised.value.retry_after <= 32


def test_a_bad_token_raises_unexpected_response_error(sandbox: SandboxServer) -> None:
    with (
        LogfireQueryClient("pylf_v1_us_wrong", base_url=sandbox.url) as sdk,
        pytest.raises(UnexpectedResponseError, match=r"401.*Invalid read token"),
    ):
        sdk.query_json_rows("SELECT 1", min_timestamp=datetime.now().astimezone())


@pytest.mark.parametrize("status", ["500", "503"])
def test_a_server_error_raises_unexpected_response_error(
    fresh_sandbox: SandboxServer, status: str
) -> None:
    fresh_sandbox.faults.force(status)

    with (
        LogfireQueryClient(fresh_sandbox.token, base_url=fresh_sandbox.url) as sdk,
        pytest.raises(UnexpectedResponseError, match=f"status code {status}"),
    ):
        sdk.query_csv("SELECT 1", min_timestamp=datetime.now().astimezone())
