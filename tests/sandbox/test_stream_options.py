"""Streams without the end-of-stream marker, small batches, and the request timeline."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pyarrow as pa
import pytest

from sandbox.counters import REQUEST
from sandbox.server import SandboxServer

ARROW = "application/vnd.apache.arrow.stream"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
SQL = "SELECT span_id FROM records ORDER BY span_id LIMIT 100"


@pytest.fixture(scope="module")
def unmarked() -> Iterator[SandboxServer]:
    with SandboxServer(
        records=500, metrics=10, hours=2, arrow_end_marker=False, batch_rows=7
    ) as server:
        yield server


def post(server: SandboxServer, sql: str = SQL) -> httpx.Response:
    body = {
        "sql": sql,
        "min_timestamp": (server.clock.now() - timedelta(days=2)).isoformat(),
        "limit": 100,
    }
    headers = {"Authorization": server.token, "Accept": ARROW}
    return httpx.post(f"{server.url}/v2/query", json=body, headers=headers)


def test_an_unmarked_stream_ends_after_its_last_batch(
    unmarked: SandboxServer,
) -> None:
    response = post(unmarked)

    assert response.status_code == 200
    assert not response.content.endswith(EOS)
    assert pa.ipc.open_stream(io.BytesIO(response.content)).read_all().num_rows == 100


def test_batch_rows_cuts_results_into_small_batches(unmarked: SandboxServer) -> None:
    response = post(unmarked)
    batches = list(pa.ipc.open_stream(io.BytesIO(response.content)))

    assert [batch.num_rows for batch in batches] == [7] * 14 + [2]


def test_a_truncated_unmarked_stream_looks_complete_to_pyarrow(
    unmarked: SandboxServer,
) -> None:
    unmarked.faults.force("truncate")
    response = post(unmarked)

    table = pa.ipc.open_stream(io.BytesIO(response.content)).read_all()
    assert table.num_rows == 7


def test_the_timeline_times_each_arrival_and_status(
    unmarked: SandboxServer,
) -> None:
    unmarked.counters.reset()
    unmarked.faults.force("503")
    before = time.monotonic()
    post(unmarked)
    post(unmarked)

    events = [
        (event.path, event.what)
        for event in unmarked.counters.timeline()
        if event.at >= before
    ]
    assert events == [
        ("/v2/query", REQUEST),
        ("/v2/query", "503"),
        ("/v2/query", REQUEST),
        ("/v2/query", "200"),
    ]


def test_a_dropped_connection_is_on_the_timeline(unmarked: SandboxServer) -> None:
    unmarked.counters.reset()
    unmarked.faults.force("drop_before")
    with pytest.raises(httpx.TransportError):
        post(unmarked)

    assert [event.what for event in unmarked.counters.timeline()] == [
        REQUEST,
        "dropped",
    ]


def test_batch_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        SandboxServer(records=1, metrics=1, batch_rows=0)
