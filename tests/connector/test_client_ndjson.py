"""Reading NDJSON results: complete only with an `end` line that agrees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow.compute as pc
import pytest

from connector.client import NDJSON, LogfireClient
from connector.errors import (
    AuthenticationError,
    IncompleteResponseError,
    QueryError,
    TransientError,
)
from connector.retry import RetryPolicy
from sandbox.server import SandboxServer

TOKEN = "pylf_v1_us_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"
SINCE = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
COUNT_BY_KIND = "SELECT kind, COUNT(*) AS n FROM records GROUP BY kind ORDER BY kind"
# One row a record: the sandbox streams it in several batches.
EVERY_ROW = "SELECT span_id FROM records ORDER BY created_at, span_id"


def once() -> RetryPolicy:
    return RetryPolicy(max_attempts=1)


def patient() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=lambda seconds: None)


def sandbox_client(server: SandboxServer, retry: RetryPolicy) -> LogfireClient:
    return LogfireClient(server.token, base_url=server.url, retry=retry)


def query(client: LogfireClient, sql: str, server: SandboxServer) -> list[dict]:
    now = server.clock.now()
    return client.query_ndjson(sql, min_timestamp=now - timedelta(days=2), limit=10_000)


def expected_kinds(server: SandboxServer) -> dict[str, int]:
    table = server.store.visible("records", server.clock.now())
    counts = pc.value_counts(table["kind"]).to_pylist()
    return {item["values"]: item["counts"] for item in counts}


def lines_response(*lines: object, content_type: str = NDJSON) -> httpx.Response:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
        for line in lines
    )
    return httpx.Response(200, headers={"content-type": content_type}, content=body)


def mock_client(response: httpx.Response) -> LogfireClient:
    return LogfireClient(
        TOKEN, transport=httpx.MockTransport(lambda request: response), retry=once()
    )


def read(client: LogfireClient) -> list[dict]:
    return client.query_ndjson("SELECT 1 AS one", min_timestamp=SINCE)


SCHEMA = {"type": "schema", "schema": {"fields": []}}


def test_a_whole_result_gives_its_rows(fresh_sandbox: SandboxServer) -> None:
    with sandbox_client(fresh_sandbox, once()) as client:
        rows = query(client, COUNT_BY_KIND, fresh_sandbox)

    assert {row["kind"]: row["n"] for row in rows} == expected_kinds(fresh_sandbox)


def test_the_request_asks_for_ndjson() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return lines_response(SCHEMA, {"type": "end", "row_count": 0})

    client = LogfireClient(TOKEN, transport=httpx.MockTransport(handler), retry=once())
    assert read(client) == []
    assert seen[0].headers["accept"] == NDJSON
    assert json.loads(seen[0].content)["sql"] == "SELECT 1 AS one"


def test_a_stream_cut_before_its_end_line_is_a_failed_read(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("truncate")
    with (
        sandbox_client(fresh_sandbox, once()) as client,
        pytest.raises(IncompleteResponseError, match="without its end line"),
    ):
        query(client, EVERY_ROW, fresh_sandbox)


def test_an_error_line_after_rows_is_a_failed_read(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("ndjson_error")
    with (
        sandbox_client(fresh_sandbox, once()) as client,
        pytest.raises(IncompleteResponseError, match="failed while its result"),
    ):
        query(client, EVERY_ROW, fresh_sandbox)


@pytest.mark.parametrize("fault", ["truncate", "ndjson_error", "drop_during", "503"])
def test_a_failed_read_is_retried_until_whole(
    fresh_sandbox: SandboxServer, fault: str
) -> None:
    fresh_sandbox.faults.force(fault)
    with sandbox_client(fresh_sandbox, patient()) as client:
        rows = query(client, EVERY_ROW, fresh_sandbox)
        requests = client.requests_made

    visible = fresh_sandbox.store.visible("records", fresh_sandbox.clock.now())
    assert len(rows) == visible.num_rows
    assert requests == 2


def test_an_error_line_before_any_row_is_a_failed_read() -> None:
    client = mock_client(
        lines_response(SCHEMA, {"type": "error", "message": "Resources exhausted"})
    )
    with pytest.raises(IncompleteResponseError, match="Resources exhausted"):
        read(client)


def test_an_error_line_after_the_end_line_is_not_read() -> None:
    client = mock_client(
        lines_response(
            SCHEMA,
            {"type": "data", "rows": [{"one": 1}]},
            {"type": "end", "row_count": 1},
            {"type": "error", "message": "late"},
        )
    )
    assert read(client) == [{"one": 1}]


def test_an_end_line_that_counts_other_rows_is_a_failed_read() -> None:
    client = mock_client(
        lines_response(
            SCHEMA,
            {"type": "data", "rows": [{"one": 1}]},
            {"type": "end", "row_count": 2},
        )
    )
    with pytest.raises(IncompleteResponseError, match="counts 2 rows, but 1"):
        read(client)


def test_a_line_that_is_not_json_is_a_failed_read() -> None:
    client = mock_client(
        lines_response(SCHEMA, b'{"type": "data", "rows": [{"one": 1}', b"")
    )
    with pytest.raises(IncompleteResponseError, match=r"Line 2 .* not JSON"):
        read(client)


@pytest.mark.parametrize(
    "line",
    [[1, 2], {"rows": []}, {"type": "data", "rows": {"one": 1}}],
    ids=["array", "no type", "rows not a list"],
)
def test_a_line_that_is_not_a_message_is_refused(line: object) -> None:
    client = mock_client(lines_response(SCHEMA, line, {"type": "end"}))
    with pytest.raises(TransientError):
        read(client)


def test_blank_lines_explain_lines_and_batches_add_up() -> None:
    client = mock_client(
        lines_response(
            SCHEMA,
            b"",
            {"type": "explain", "physical_plan": "..."},
            {"type": "data", "rows": [{"one": 1}, {"one": 2}]},
            {"type": "data", "rows": [{"one": 3}]},
            {"type": "end", "row_count": 3},
        )
    )
    assert [row["one"] for row in read(client)] == [1, 2, 3]


def test_a_connection_broken_mid_stream_is_a_failed_read() -> None:
    def body() -> Iterator[bytes]:
        yield json.dumps(SCHEMA).encode() + b"\n"
        yield b'{"type": "data", "rows": [{"one": 1}]}\n'
        raise httpx.ReadError("connection reset")

    response = httpx.Response(200, headers={"content-type": NDJSON}, content=body())
    with pytest.raises(IncompleteResponseError, match="broke off after 1 rows"):
        read(mock_client(response))


def test_a_json_error_under_a_200_is_a_query_error() -> None:
    response = httpx.Response(200, json={"detail": "Unknown column 'nope'"})
    with pytest.raises(QueryError, match=r"instead of NDJSON.*Unknown column"):
        read(mock_client(response))


def test_a_token_for_another_region_names_both_services(
    fresh_sandbox: SandboxServer,
) -> None:
    other = "pylf_v1_eu_" + "k" * 40
    with (
        LogfireClient(other, base_url=fresh_sandbox.url, retry=once()) as client,
        pytest.raises(AuthenticationError) as refused,
    ):
        query(client, COUNT_BY_KIND, fresh_sandbox)

    message = str(refused.value)
    assert "eu region" in message
    assert "https://logfire-eu.pydantic.dev" in message
    assert fresh_sandbox.url in message
    assert other not in message


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_line_separators_inside_values_do_not_split_lines(separator: str) -> None:
    note = f"first{separator}second"
    body = "".join(
        json.dumps(line, ensure_ascii=False) + "\n"
        for line in (
            {"type": "schema", "schema": {"fields": []}},
            {"type": "data", "rows": [{"note": note}]},
            {"type": "end", "row_count": 1},
        )
    ).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": NDJSON}, content=body)

    client = LogfireClient(TOKEN, transport=httpx.MockTransport(handler), retry=once())

    assert client.query_ndjson("SELECT 1", min_timestamp=SINCE) == [{"note": note}]
