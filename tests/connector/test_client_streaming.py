"""Reading Arrow IPC streams: whole, cut short, broken, or not Arrow at all."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pyarrow as pa
import pytest

from connector.client import ARROW_STREAM, END_OF_STREAM, LogfireClient
from connector.errors import (
    IncompleteResponseError,
    QueryError,
    RetryableError,
    TransientError,
)
from connector.retry import RetryPolicy

TOKEN = "pylf_v1_us_Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
SINCE = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


class Stream:
    """An Arrow IPC stream and the offsets at which its messages end."""

    def __init__(self, table: pa.Table, rows_per_batch: int) -> None:
        self.table = table
        self.batches = table.to_batches(max_chunksize=rows_per_batch)

        schema_only = pa.BufferOutputStream()
        pa.ipc.new_stream(schema_only, table.schema).close()
        schema_end = schema_only.tell() - len(END_OF_STREAM)

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            self.ends = [schema_end]
            for batch in self.batches:
                writer.write_batch(batch)
                self.ends.append(sink.tell())
        self.data = bytes(sink.getvalue().to_pybytes())

    def messages(self) -> list[bytes]:
        """The stream split at message boundaries, end-of-stream marker last."""
        starts = [0, *self.ends]
        stops = [*self.ends, len(self.data)]
        return [self.data[a:b] for a, b in zip(starts, stops, strict=True)]

    def cut_after_batches(self, count: int) -> bytes:
        """The stream as if it stopped cleanly after ``count`` batches."""
        return self.data[: self.ends[count]]


def sample_table(rows: int = 10) -> pa.Table:
    return pa.table(
        {
            "n": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"span {i}" for i in range(rows)]),
        }
    )


def arrow_response(
    body: bytes | Iterator[bytes], content_type: str = ARROW_STREAM
) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, content=body)


def client_for(handler: Handler, *, require_end_marker: bool = True) -> LogfireClient:
    return LogfireClient(
        TOKEN,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=1),
        require_end_marker=require_end_marker,
    )


def read_all(client: LogfireClient) -> list[pa.RecordBatch]:
    return list(client.stream_arrow("SELECT * FROM records", min_timestamp=SINCE))


def read_into(client: LogfireClient, received: list[pa.RecordBatch]) -> None:
    """Read batches into ``received``, so that they survive an error."""
    received.extend(client.stream_arrow("SELECT 1", min_timestamp=SINCE))


def test_complete_stream_yields_every_batch() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    client = client_for(lambda request: arrow_response(stream.data))

    batches = read_all(client)

    assert [batch.num_rows for batch in batches] == [3, 3, 3, 1]
    assert pa.Table.from_batches(batches).equals(stream.table)


def test_complete_stream_ends_with_the_marker() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)

    assert stream.data.endswith(END_OF_STREAM)
    assert stream.ends[-1] == len(stream.data) - len(END_OF_STREAM)


def test_empty_result_is_a_schema_and_the_marker() -> None:
    stream = Stream(sample_table(0), rows_per_batch=3)
    client = client_for(lambda request: arrow_response(stream.data))

    table = client.query_table("SELECT * FROM records", min_timestamp=SINCE)

    assert table.num_rows == 0
    assert table.schema.equals(stream.table.schema)


@pytest.mark.parametrize("kept", [0, 1, 2, 3])
def test_stream_cut_cleanly_between_batches_is_incomplete(kept: int) -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    client = client_for(lambda request: arrow_response(stream.cut_after_batches(kept)))
    received: list[pa.RecordBatch] = []

    with pytest.raises(IncompleteResponseError, match="end-of-stream marker"):
        read_into(client, received)

    assert len(received) == kept


def test_pyarrow_alone_accepts_the_cut_stream() -> None:
    # The trap the marker check exists for: no error from pyarrow itself.
    stream = Stream(sample_table(10), rows_per_batch=3)

    reader = pa.ipc.open_stream(stream.cut_after_batches(2))

    assert reader.read_all().num_rows == 6


def test_cut_after_a_batch_ending_in_marker_like_bytes_is_incomplete() -> None:
    table = pa.table({"v": pa.array([-1, 0], pa.int32())})
    stream = Stream(table, rows_per_batch=2)
    cut = stream.cut_after_batches(1)
    assert cut.endswith(END_OF_STREAM)
    client = client_for(lambda request: arrow_response(cut))

    with pytest.raises(IncompleteResponseError):
        read_all(client)


@pytest.mark.parametrize("missing", [1, 4, 7, 20])
def test_stream_cut_mid_message_is_incomplete(missing: int) -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    body = stream.data[: stream.ends[2] - missing]
    client = client_for(lambda request: arrow_response(body))

    with pytest.raises(IncompleteResponseError, match="middle of a message"):
        read_all(client)


def test_stream_cut_inside_the_marker_is_incomplete() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    client = client_for(lambda request: arrow_response(stream.data[:-4]))

    with pytest.raises(IncompleteResponseError):
        read_all(client)


def test_empty_body_is_incomplete() -> None:
    client = client_for(lambda request: arrow_response(b""))

    with pytest.raises(IncompleteResponseError):
        read_all(client)


def test_incomplete_response_is_retryable_and_transient() -> None:
    assert issubclass(IncompleteResponseError, TransientError)
    assert issubclass(IncompleteResponseError, RetryableError)


def test_without_the_marker_requirement_a_clean_cut_passes() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    body = stream.cut_after_batches(2)
    client = client_for(lambda request: arrow_response(body), require_end_marker=False)

    assert sum(batch.num_rows for batch in read_all(client)) == 6


def test_a_clean_end_without_the_marker_is_handed_to_the_caller() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    body = stream.cut_after_batches(2)
    client = client_for(lambda request: arrow_response(body))
    noted: list[str] = []

    batches = client.stream_arrow(
        "SELECT 1", min_timestamp=SINCE, unmarked=lambda: noted.append("unmarked")
    )

    assert sum(batch.num_rows for batch in batches) == 6
    assert noted == ["unmarked"]


def test_a_stream_with_the_marker_is_not_handed_to_the_caller() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    client = client_for(lambda request: arrow_response(stream.data))
    noted: list[str] = []

    batches = client.stream_arrow(
        "SELECT 1", min_timestamp=SINCE, unmarked=lambda: noted.append("unmarked")
    )

    assert sum(batch.num_rows for batch in batches) == 10
    assert noted == []


def test_without_the_marker_requirement_a_mid_message_cut_still_fails() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    body = stream.data[: stream.ends[2] - 5]
    client = client_for(lambda request: arrow_response(body), require_end_marker=False)

    with pytest.raises(IncompleteResponseError):
        read_all(client)


def test_batches_are_yielded_before_the_body_is_fully_read() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    messages = stream.messages()
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for index, message in enumerate(messages):
            sent.append(index)
            yield message

    client = client_for(lambda request: arrow_response(body()))
    batches = client.stream_arrow("SELECT 1", min_timestamp=SINCE)

    first = next(batches)
    sent_at_first_batch = len(sent)
    rest = list(batches)

    assert first.num_rows == 3
    assert sent_at_first_batch == 2
    assert len(sent) == len(messages)
    assert len(rest) == 3


def test_tiny_chunks_are_reassembled() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    chunks = (stream.data[i : i + 1] for i in range(len(stream.data)))
    client = client_for(lambda request: arrow_response(chunks))

    assert pa.Table.from_batches(read_all(client)).equals(stream.table)


def test_gzip_encoded_stream_is_decoded() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": ARROW_STREAM, "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=gzip.compress(stream.data))

    assert pa.Table.from_batches(read_all(client_for(handler))).equals(stream.table)


@pytest.mark.parametrize(
    "error",
    [
        httpx.RemoteProtocolError("peer closed connection: incomplete chunked read"),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
    ],
)
def test_connection_broken_mid_body_is_incomplete(error: httpx.HTTPError) -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    messages = stream.messages()

    def body() -> Iterator[bytes]:
        yield from messages[:2]
        raise error

    client = client_for(lambda request: arrow_response(body()))
    received: list[pa.RecordBatch] = []

    with pytest.raises(IncompleteResponseError, match="broke off") as caught:
        read_into(client, received)

    assert len(received) == 1
    assert caught.value.__cause__ is error


def test_bytes_that_are_not_arrow_are_a_transient_error() -> None:
    client = client_for(lambda request: arrow_response(b"<html>gateway</html>" * 5))

    with pytest.raises(TransientError, match="not a valid Arrow stream") as caught:
        read_all(client)

    assert not isinstance(caught.value, IncompleteResponseError)
    assert "<html>gateway" in str(caught.value)


@pytest.mark.parametrize(
    "content_type", ["application/vnd.apache.arrow.stream; charset=binary", ""]
)
def test_arrow_content_type_variants_are_read(content_type: str) -> None:
    stream = Stream(sample_table(4), rows_per_batch=3)

    def handler(request: httpx.Request) -> httpx.Response:
        response = arrow_response(stream.data, content_type)
        if not content_type:
            del response.headers["content-type"]
        return response

    assert sum(batch.num_rows for batch in read_all(client_for(handler))) == 4


def test_success_with_a_json_error_is_a_query_error() -> None:
    body = json.dumps({"detail": "column 'nope' not found"}).encode()
    client = client_for(lambda request: arrow_response(body, "application/json"))

    with pytest.raises(QueryError, match="column 'nope' not found") as caught:
        read_all(client)

    assert caught.value.status_code == 200


def test_success_with_json_rows_instead_of_arrow_is_transient() -> None:
    body = json.dumps({"schema": {"fields": []}, "data": []}).encode()
    client = client_for(lambda request: arrow_response(body, "application/json"))

    with pytest.raises(TransientError, match="instead of an Arrow stream"):
        read_all(client)


def test_success_with_html_is_transient() -> None:
    body = b"<html><body>Please log in</body></html>"
    client = client_for(lambda request: arrow_response(body, "text/html"))

    with pytest.raises(TransientError, match="text/html") as caught:
        read_all(client)

    assert "Please log in" in str(caught.value)


def test_query_table_retries_an_incomplete_stream() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    bodies = [stream.cut_after_batches(1), stream.data]
    client = LogfireClient(
        TOKEN,
        transport=httpx.MockTransport(lambda request: arrow_response(bodies.pop(0))),
        retry=RetryPolicy(jitter=0.0, sleep=lambda seconds: None),
    )

    table = client.query_table("SELECT 1", min_timestamp=SINCE)

    assert table.equals(stream.table)
    assert client.requests_made == 2


class RecordingStream(httpx.SyncByteStream):
    """A response body that notes whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True


def test_abandoned_stream_closes_its_response() -> None:
    stream = Stream(sample_table(10), rows_per_batch=3)
    body = RecordingStream(stream.messages())
    headers = {"content-type": ARROW_STREAM}
    client = client_for(
        lambda request: httpx.Response(200, headers=headers, stream=body)
    )

    batches = client.stream_arrow("SELECT 1", min_timestamp=SINCE)
    next(batches)
    assert not body.closed
    batches.close()

    assert body.closed
