"""How responses and failures become the connector's errors, and their retries."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pyarrow as pa
import pytest

import connector.errors
from connector.client import ARROW_STREAM, LogfireClient
from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    IncompleteResponseError,
    LogfireSyncError,
    QueryError,
    RateLimitedError,
    RetryableError,
    TransientError,
)
from connector.retry import RetryPolicy

SECRET = "Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
TOKEN = f"pylf_v1_us_{SECRET}"
SINCE = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, retry: RetryPolicy | None = None) -> LogfireClient:
    return LogfireClient(
        TOKEN,
        transport=httpx.MockTransport(handler),
        retry=retry or RetryPolicy(max_attempts=1),
    )


def answering(
    status: int,
    body: object = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Handler:
    """A handler that always gives the same response."""
    if isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body).encode()
    all_headers = {"content-type": content_type, **(headers or {})}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=all_headers, content=content)

    return handler


def query_error(handler: Handler) -> LogfireSyncError:
    client = client_for(handler)
    with pytest.raises(LogfireSyncError) as caught:
        list(client.stream_arrow("SELECT 1", min_timestamp=SINCE))
    return caught.value


def arrow_bytes() -> bytes:
    table = pa.table({"n": [1, 2, 3]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def arrow_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": ARROW_STREAM}, content=arrow_bytes()
    )


class Sequence:
    """A handler that gives its responses in turn, repeating the last."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = list(handlers)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        handler = self.handlers[min(self.calls, len(self.handlers) - 1)]
        self.calls += 1
        return handler(request)


# The error tree.


@pytest.mark.parametrize(
    ("error_class", "parent"),
    [
        (ConfigurationError, LogfireSyncError),
        (ConfigurationError, ValueError),
        (AuthenticationError, LogfireSyncError),
        (QueryError, LogfireSyncError),
        (RetryableError, LogfireSyncError),
        (RateLimitedError, RetryableError),
        (TransientError, RetryableError),
        (IncompleteResponseError, TransientError),
    ],
)
def test_error_tree(error_class: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(error_class, parent)


@pytest.mark.parametrize(
    "error_class", [AuthenticationError, QueryError, ConfigurationError]
)
def test_errors_to_fix_are_not_retryable(error_class: type[Exception]) -> None:
    assert not issubclass(error_class, RetryableError)


def test_the_module_docstring_draws_the_tree() -> None:
    doc = connector.errors.__doc__ or ""
    for name in connector.errors.__all__:
        assert name in doc


def test_errors_carry_status_code_and_message() -> None:
    error = QueryError("The query failed.", status_code=400)

    assert error.status_code == 400
    assert error.message == "The query failed."
    assert str(error) == "The query failed."
    assert TransientError("x").status_code is None
    assert RateLimitedError("x", retry_after=3.0).retry_after == 3.0


# Statuses.


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, QueryError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, ConfigurationError),
        (405, QueryError),
        (408, TransientError),
        (413, QueryError),
        (422, QueryError),
        (429, RateLimitedError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (301, ConfigurationError),
    ],
)
def test_status_maps_to_error(status: int, error_class: type[Exception]) -> None:
    error = query_error(answering(status, {"detail": "what the server said"}))

    assert type(error) is error_class
    assert error.status_code == status
    if status != 301:
        assert "what the server said" in str(error)


def test_query_error_tells_to_fix_the_sql() -> None:
    error = query_error(answering(400, {"detail": "Schema error: No field named nope"}))

    assert str(error) == (
        "The service could not run the query (HTTP 400): Schema error: No field "
        "named nope. Fix the SQL."
    )


def test_authentication_error_explains_token_expiry_and_region() -> None:
    error = query_error(answering(401, {"detail": "Invalid read token"}))
    message = str(error)

    assert "Invalid read token" in message
    assert "LOGFIRE_READ_TOKEN" in message
    assert "expired" in message
    assert "region" in message
    assert "https://logfire-us.pydantic.dev" in message
    assert "pylf_v1_us_****" in message


def test_not_found_points_at_the_base_url() -> None:
    error = query_error(answering(404, "Not Found", content_type="text/plain"))

    assert "https://logfire-us.pydantic.dev/v2/query" in str(error)
    assert "base_url" in str(error)


def test_validation_error_list_is_spelled_out() -> None:
    detail = [
        {
            "type": "less_than_equal",
            "loc": ["body", "limit"],
            "msg": "Input should be less than or equal to 10000",
            "input": 50000,
        },
        {"type": "missing", "loc": ["body", "min_timestamp"], "msg": "Field required"},
    ]

    error = query_error(answering(422, {"detail": detail}))

    assert isinstance(error, QueryError)
    assert (
        "body.limit: Input should be less than or equal to 10000; "
        "body.min_timestamp: Field required." in str(error)
    )
    assert "request options" in str(error)


def test_problem_json_title_and_detail_are_shown() -> None:
    problem = {"type": "about:blank", "title": "Bad Request", "detail": "SQL error"}

    error = query_error(
        answering(400, problem, content_type="application/problem+json")
    )

    assert "Bad Request: SQL error." in str(error)


def test_redirect_names_where_it_points() -> None:
    handler = answering(
        308, "", content_type="text/plain", headers={"location": "https://elsewhere/"}
    )

    error = query_error(handler)

    assert isinstance(error, ConfigurationError)
    assert "https://elsewhere/" in str(error)


# Error bodies.


def test_plain_text_body_is_shown() -> None:
    error = query_error(
        answering(503, "upstream overloaded", content_type="text/plain")
    )

    assert "upstream overloaded" in str(error)


def test_json_looking_text_is_not_decoded_without_a_json_type() -> None:
    error = query_error(answering(400, '{"detail": "x"}', content_type="text/plain"))

    assert '{"detail": "x"}' in str(error)


def test_invalid_json_with_a_json_type_is_shown_as_text() -> None:
    error = query_error(answering(500, "{not json", content_type="application/json"))

    assert isinstance(error, TransientError)
    assert "{not json" in str(error)


@pytest.mark.parametrize("body", [["a", "list"], "just a string", 42, None])
def test_json_that_is_not_an_object_is_shown_as_text(body: object) -> None:
    text = json.dumps(body)

    error = query_error(answering(400, text.encode()))

    assert isinstance(error, QueryError)
    assert text in str(error)


def test_json_object_without_detail_uses_message_or_error() -> None:
    error = query_error(answering(400, {"error": "no such table: recrods"}))

    assert "no such table: recrods" in str(error)


def test_detail_of_another_type_is_shown_as_json() -> None:
    error = query_error(answering(400, {"detail": {"code": 7}}))

    assert '{"code": 7}' in str(error)


def test_empty_body_falls_back_to_the_reason_phrase() -> None:
    error = query_error(answering(503, b"", content_type="text/plain"))

    assert "HTTP 503): Service Unavailable." in str(error)


def test_huge_bodies_are_capped_in_messages() -> None:
    huge = "x" * 5_000_000

    error = query_error(answering(500, huge, content_type="text/plain"))

    assert len(str(error)) < 1_000
    assert "more characters" in str(error)


def test_huge_json_detail_is_capped() -> None:
    error = query_error(answering(400, {"detail": "y" * 20_000}))

    assert len(str(error)) < 1_000


def test_multi_line_bodies_become_one_line() -> None:
    body = "<html>\n  <body>\n    Bad gateway\n  </body>\n</html>"

    error = query_error(answering(502, body, content_type="text/html"))

    assert "\n" not in str(error)
    assert "<html> <body> Bad gateway </body> </html>" in str(error)


# Rate limits.


def rate_limited(headers: dict[str, str], body: object = None) -> RateLimitedError:
    content_type = "application/problem+json" if body else "text/plain"
    error = query_error(
        answering(429, body or "", content_type=content_type, headers=headers)
    )
    assert isinstance(error, RateLimitedError)
    return error


def test_retry_after_in_seconds() -> None:
    error = rate_limited({"retry-after": "17"})

    assert error.retry_after == 17.0
    assert "Wait 17 s" in str(error)


def test_retry_after_as_http_date_is_relative_to_the_date_header() -> None:
    headers = {
        "date": "Wed, 27 May 2026 13:00:00 GMT",
        "retry-after": "Wed, 27 May 2026 13:00:45 GMT",
    }

    assert rate_limited(headers).retry_after == 45.0


def test_retry_after_as_http_date_without_date_uses_the_local_clock() -> None:
    retry_at = datetime.now(UTC).timestamp() + 120
    header = httpx_date(retry_at)

    retry_after = rate_limited({"retry-after": header}).retry_after

    assert retry_after is not None
    assert 115 <= retry_after <= 121


def httpx_date(timestamp: float) -> str:
    from email.utils import formatdate

    return formatdate(timestamp, usegmt=True)


def test_retry_after_in_the_past_is_zero() -> None:
    headers = {
        "date": "Wed, 27 May 2026 13:00:00 GMT",
        "retry-after": "Wed, 27 May 2026 12:00:00 GMT",
    }

    assert rate_limited(headers).retry_after == 0.0


def test_retry_after_from_problem_json() -> None:
    problem = {"title": "Too Many Requests", "detail": "Query quota", "retry_after": 8}

    error = rate_limited({}, problem)

    assert error.retry_after == 8.0
    assert "Query quota" in str(error)


def test_retry_after_header_wins_over_problem_json() -> None:
    assert rate_limited({"retry-after": "3"}, {"retry_after": 99}).retry_after == 3.0


@pytest.mark.parametrize("header", ["soon", "", "nan", "inf"])
def test_unreadable_retry_after_is_none(header: str) -> None:
    assert rate_limited({"retry-after": header}).retry_after is None


@pytest.mark.parametrize("value", [True, "8", -1, None])
def test_unusable_problem_retry_after_is_none(value: object) -> None:
    assert (
        rate_limited({}, {"detail": "busy", "retry_after": value}).retry_after is None
    )


# Failures without a response.


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.WriteError("broken pipe"),
    ],
)
def test_transport_failures_are_transient(error: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    failure = query_error(handler)

    assert type(failure) is TransientError
    assert "https://logfire-us.pydantic.dev/v2/query" in str(failure)
    assert failure.__cause__ is error


def test_connect_timeout_says_the_connection_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out")

    assert "Could not connect to" in str(query_error(handler))


def test_read_timeout_suggests_a_narrower_query() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    assert "narrow the query's time range" in str(query_error(handler))


def test_a_certificate_that_fails_verification_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        # As httpx reports it: a connection error caused by the TLS failure.
        try:
            raise ssl.SSLCertVerificationError(
                1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate"
            )
        except ssl.SSLError as cause:
            raise httpx.ConnectError(str(cause)) from cause

    client = client_for(handler, RetryPolicy(max_attempts=5, sleep=lambda s: None))
    with pytest.raises(ConfigurationError) as caught:
        list(client.stream_arrow("SELECT 1", min_timestamp=SINCE))

    assert len(calls) == 1
    assert "certificate" in str(caught.value)
    assert "SSL_CERT_FILE" in str(caught.value)


def test_a_body_that_cannot_be_decoded_is_incomplete_and_retried() -> None:
    table = pa.table({"n": list(range(20_000))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    spoiled = bytearray(gzip.compress(sink.getvalue().to_pybytes()))
    middle = len(spoiled) // 2
    spoiled[middle : middle + 16] = bytes(16)
    headers = {"content-type": ARROW_STREAM, "content-encoding": "gzip"}
    handler = Sequence(
        lambda request: httpx.Response(
            200, headers=headers, stream=httpx.ByteStream(bytes(spoiled))
        ),
        arrow_ok,
    )

    client = client_for(handler, RetryPolicy(max_attempts=2, sleep=lambda s: None))
    rows = client.query_table("SELECT 1", min_timestamp=SINCE).num_rows

    assert (rows, handler.calls) == (3, 2)


def test_unsupported_protocol_is_a_configuration_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("no transport for this URL")

    assert isinstance(query_error(handler), ConfigurationError)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_local_connection_is_retried_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    sleeps: list[float] = []
    retry = RetryPolicy(max_attempts=3, jitter=0.0, sleep=sleeps.append)
    client = LogfireClient(TOKEN, base_url=url, retry=retry)

    with pytest.raises(TransientError) as caught:
        client.query_table("SELECT 1", min_timestamp=SINCE)

    assert f"{url}/v2/query" in str(caught.value)
    assert "running" in str(caught.value)
    assert client.requests_made == 3
    assert len(sleeps) == 2
    assert any("3 attempts" in note for note in caught.value.__notes__)


# Retries through the client.


def test_query_table_retries_503_then_succeeds() -> None:
    sleeps: list[float] = []
    handler = Sequence(answering(503, {"detail": "busy"}), answering(503, {}), arrow_ok)
    client = client_for(handler, RetryPolicy(jitter=0.0, sleep=sleeps.append))

    table = client.query_table("SELECT n FROM t", min_timestamp=SINCE)

    assert table.column("n").to_pylist() == [1, 2, 3]
    assert client.requests_made == 3
    assert sleeps == [0.5, 1.0]


def test_a_503_waits_as_long_as_its_retry_after_asks() -> None:
    sleeps: list[float] = []
    busy = answering(503, {"detail": "queue full"}, headers={"retry-after": "7"})
    handler = Sequence(busy, arrow_ok)
    client = client_for(handler, RetryPolicy(jitter=0.0, sleep=sleeps.append))

    table = client.query_table("SELECT n FROM t", min_timestamp=SINCE)

    assert table.num_rows == 3
    assert sleeps == [7.0]


def test_a_5xx_says_how_long_the_service_asked_to_wait() -> None:
    error = query_error(answering(503, {"retry_after": 12}))
    silent = query_error(answering(502, {"detail": "bad gateway"}))

    assert isinstance(error, TransientError)
    assert error.retry_after == 12.0
    assert "It asked for 12 s." in str(error)
    assert isinstance(silent, TransientError)
    assert silent.retry_after is None
    assert "asked for" not in str(silent)


def test_query_table_gives_up_after_max_attempts() -> None:
    sleeps: list[float] = []
    handler = Sequence(answering(503, {"detail": "still down"}))
    client = client_for(
        handler, RetryPolicy(max_attempts=4, jitter=0.0, sleep=sleeps.append)
    )

    with pytest.raises(TransientError, match="still down") as caught:
        client.query_table("SELECT 1", min_timestamp=SINCE)

    assert caught.value.status_code == 503
    assert client.requests_made == 4
    assert len(sleeps) == 3
    assert any("Gave up after 4 attempts" in note for note in caught.value.__notes__)


def test_query_table_honours_retry_after() -> None:
    sleeps: list[float] = []
    handler = Sequence(answering(429, {}, headers={"retry-after": "7"}), arrow_ok)
    client = client_for(handler, RetryPolicy(jitter=0.0, sleep=sleeps.append))

    client.query_table("SELECT 1", min_timestamp=SINCE)

    assert len(sleeps) == 1
    assert sleeps[0] >= 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_query_table_never_retries_what_the_caller_must_fix(status: int) -> None:
    sleeps: list[float] = []
    handler = Sequence(answering(status, {"detail": "no"}), arrow_ok)
    client = client_for(handler, RetryPolicy(jitter=0.0, sleep=sleeps.append))

    with pytest.raises(LogfireSyncError) as caught:
        client.query_table("SELECT 1", min_timestamp=SINCE)

    assert not isinstance(caught.value, RetryableError)
    assert client.requests_made == 1
    assert sleeps == []


def test_stream_arrow_never_retries() -> None:
    client = client_for(
        Sequence(answering(503, {}), arrow_ok),
        RetryPolicy(jitter=0.0, sleep=lambda seconds: None),
    )

    with pytest.raises(TransientError):
        list(client.stream_arrow("SELECT 1", min_timestamp=SINCE))
    assert client.requests_made == 1


def test_client_retrying_uses_the_policy() -> None:
    sleeps: list[float] = []
    client = client_for(
        arrow_ok, RetryPolicy(max_attempts=2, jitter=0.0, sleep=sleeps.append)
    )
    calls = []

    def failing() -> None:
        calls.append(1)
        raise TransientError("down")

    with pytest.raises(TransientError):
        client.retrying()(failing)
    assert len(calls) == 2
    assert sleeps == [0.5]


# The token stays secret.


def test_token_echoed_by_the_server_is_redacted() -> None:
    error = query_error(answering(401, {"detail": f"Invalid read token {TOKEN}"}))

    assert SECRET not in str(error)
    assert "Invalid read token pylf_v1_us_****" in str(error)


def test_token_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    responses = Sequence(
        answering(503, {"detail": f"echo {TOKEN}"}),
        answering(429, f"slow {TOKEN}", content_type="text/plain"),
        answering(401, {"detail": f"bad {TOKEN}"}),
    )
    client = client_for(responses, RetryPolicy(jitter=0.0, sleep=lambda seconds: None))
    texts = [repr(client), str(client)]

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as caught:
        client.query_table("SELECT 1", min_timestamp=SINCE)
    texts += [
        str(caught.value),
        repr(caught.value),
        *getattr(caught.value, "__notes__", []),
    ]
    texts += [record.getMessage() for record in caplog.records]

    assert len(caplog.records) >= 5
    assert all(SECRET not in text for text in texts)
