"""What the client sends: URL, headers, body, timeouts; and its other endpoints."""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import version

import httpx
import pyarrow as pa
import pytest

from connector.client import ARROW_STREAM, LogfireClient
from connector.errors import ConfigurationError, TransientError
from connector.retry import RetryPolicy

SECRET = "Z9x8C7v6B5n4M3a2S1d0F9g8H7j6K5l4"
TOKEN = f"pylf_v1_eu_{SECRET}"
INSTANT = datetime(2026, 5, 27, 13, 16, 36, 517321, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]
TOKEN_INFO = {"token_id": "t1", "project_name": "demo", "organization_name": "acme"}


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


class Recorder:
    """A fake service that notes every request it receives."""

    def __init__(self, date: str | None = "Wed, 27 May 2026 13:16:36 GMT") -> None:
        self.requests: list[httpx.Request] = []
        self.date = date
        self.table = pa.table({"n": [1, 2]})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {} if self.date is None else {"date": self.date}
        if request.url.path.endswith("/v1/read-token-info"):
            return httpx.Response(200, headers=headers, json=TOKEN_INFO)
        headers["content-type"] = ARROW_STREAM
        return httpx.Response(200, headers=headers, content=arrow_body(self.table))

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_body(self) -> dict[str, object]:
        body: dict[str, object] = json.loads(self.last.content)
        return body


def client_for(
    handler: Handler, *, base_url: str | None = None, timeout: float = 120.0
) -> LogfireClient:
    return LogfireClient(
        TOKEN,
        base_url=base_url,
        timeout=timeout,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(jitter=0.0, sleep=lambda seconds: None),
    )


# The request.


def test_query_is_a_post_to_v2_query_on_the_token_region() -> None:
    service = Recorder()
    client = client_for(service)

    client.query_table("SELECT 1", min_timestamp=INSTANT)

    assert service.last.method == "POST"
    assert str(service.last.url) == "https://logfire-eu.pydantic.dev/v2/query"


def test_bearer_token_user_agent_and_accept_are_sent() -> None:
    service = Recorder()
    client = client_for(service)

    client.query_table("SELECT 1", min_timestamp=INSTANT)

    headers = service.last.headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["user-agent"] == f"logfire-sync/{version('logfire-sync')} (+httpx)"
    assert headers["accept"] == ARROW_STREAM
    assert headers["content-type"] == "application/json"


def test_user_agent_has_the_documented_shape() -> None:
    service = Recorder()
    client_for(service).token_info()

    assert re.fullmatch(
        r"logfire-sync/\S+ \(\+httpx\)", service.last.headers["user-agent"]
    )


def test_body_has_sql_iso_timestamps_and_limit() -> None:
    service = Recorder()
    client = client_for(service)

    client.query_table(
        "SELECT * FROM records",
        min_timestamp=INSTANT,
        max_timestamp=INSTANT + timedelta(hours=1),
        limit=500,
    )

    assert service.last_body() == {
        "sql": "SELECT * FROM records",
        "min_timestamp": "2026-05-27T13:16:36.517321+00:00",
        "max_timestamp": "2026-05-27T14:16:36.517321+00:00",
        "limit": 500,
    }


def test_body_without_max_timestamp_leaves_it_out() -> None:
    service = Recorder()

    client_for(service).query_table("SELECT 1", min_timestamp=INSTANT)

    assert service.last_body() == {
        "sql": "SELECT 1",
        "min_timestamp": "2026-05-27T13:16:36.517321+00:00",
        "limit": 10_000,
    }


def test_timestamps_in_other_offsets_are_sent_in_utc() -> None:
    service = Recorder()
    offset = timezone(timedelta(hours=-4))

    client_for(service).query_table(
        "SELECT 1", min_timestamp=datetime(2026, 5, 27, 9, 0, tzinfo=offset)
    )

    assert service.last_body()["min_timestamp"] == "2026-05-27T13:00:00.000000+00:00"


def test_equal_bounds_are_allowed() -> None:
    service = Recorder()

    client_for(service).query_table(
        "SELECT 1", min_timestamp=INSTANT, max_timestamp=INSTANT
    )

    assert service.last_body()["max_timestamp"] == service.last_body()["min_timestamp"]


@pytest.mark.parametrize(
    "options",
    [
        {"min_timestamp": datetime(2026, 5, 27, 13, 0)},
        {"min_timestamp": INSTANT, "max_timestamp": datetime(2026, 5, 28)},
        {
            "min_timestamp": INSTANT,
            "max_timestamp": INSTANT - timedelta(microseconds=1),
        },
        {"min_timestamp": INSTANT, "limit": 0},
        {"min_timestamp": INSTANT, "limit": 10_001},
        {"min_timestamp": INSTANT, "limit": -5},
        {"min_timestamp": INSTANT, "limit": True},
    ],
)
def test_invalid_options_fail_before_any_request(options: dict[str, object]) -> None:
    service = Recorder()
    client = client_for(service)

    with pytest.raises(ConfigurationError):
        client.stream_arrow("SELECT 1", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        client.query_table("SELECT 1", **options)  # type: ignore[arg-type]

    assert client.requests_made == 0
    assert service.requests == []


def test_naive_timestamp_error_names_the_option() -> None:
    client = client_for(Recorder())

    with pytest.raises(ConfigurationError, match=r"max_timestamp .* no time zone"):
        client.stream_arrow(
            "SELECT 1", min_timestamp=INSTANT, max_timestamp=datetime(2026, 5, 28)
        )


def test_limit_error_names_the_range() -> None:
    client = client_for(Recorder())

    with pytest.raises(ConfigurationError, match="between 1 and 10000, not 20000"):
        client.stream_arrow("SELECT 1", min_timestamp=INSTANT, limit=20_000)


def test_empty_sql_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="SQL"):
        client_for(Recorder()).stream_arrow("  ", min_timestamp=INSTANT)


def test_sql_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not valid Unicode"):
        client_for(Recorder()).stream_arrow("SELECT '\ud800'", min_timestamp=INSTANT)


def test_limits_at_the_edges_are_accepted() -> None:
    service = Recorder()
    client = client_for(service)

    client.query_table("SELECT 1", min_timestamp=INSTANT, limit=1)
    client.query_table("SELECT 1", min_timestamp=INSTANT, limit=10_000)

    assert [json.loads(r.content)["limit"] for r in service.requests] == [1, 10_000]


def test_timeouts_suit_slow_queries() -> None:
    service = Recorder()

    client_for(service).query_table("SELECT 1", min_timestamp=INSTANT)

    timeouts = service.last.extensions["timeout"]
    assert timeouts["connect"] == 10.0
    assert timeouts["read"] == 120.0


def test_read_timeout_follows_the_timeout_argument() -> None:
    service = Recorder()

    client_for(service, timeout=600.0).query_table("SELECT 1", min_timestamp=INSTANT)

    assert service.last.extensions["timeout"]["read"] == 600.0
    assert service.last.extensions["timeout"]["connect"] == 10.0


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        client_for(Recorder(), timeout=timeout)


# The base URL.


def test_explicit_base_url_loses_its_trailing_slash() -> None:
    service = Recorder()
    client = client_for(service, base_url="http://127.0.0.1:8123/")

    client.query_table("SELECT 1", min_timestamp=INSTANT)

    assert client.base_url == "http://127.0.0.1:8123"
    assert str(service.last.url) == "http://127.0.0.1:8123/v2/query"


def test_base_url_with_a_path_keeps_it() -> None:
    service = Recorder()
    client = client_for(service, base_url="https://logfire.example.com/api/")

    client.token_info()

    assert str(service.last.url) == "https://logfire.example.com/api/v1/read-token-info"


@pytest.mark.parametrize(
    "base_url", ["logfire-us.pydantic.dev", "ftp://host", "http://"]
)
def test_base_url_must_be_http(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="not an http"):
        client_for(Recorder(), base_url=base_url)


def test_blank_base_url_means_the_token_region() -> None:
    assert (
        client_for(Recorder(), base_url="  ").base_url
        == "https://logfire-eu.pydantic.dev"
    )


def test_unknown_region_warns_only_without_a_base_url() -> None:
    token = f"pylf_v1_moon_{SECRET}"

    with pytest.warns(UserWarning, match="unknown region"):
        client = LogfireClient(token)
    assert client.base_url == "https://logfire-us.pydantic.dev"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogfireClient(token, base_url="http://127.0.0.1:9000")


def test_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="LOGFIRE_READ_TOKEN"):
        LogfireClient(" ")


# Counting, logging, closing.


def test_requests_made_counts_every_request() -> None:
    service = Recorder()
    client = client_for(service)

    client.query_table("SELECT 1", min_timestamp=INSTANT)
    list(client.stream_arrow("SELECT 1", min_timestamp=INSTANT))
    client.token_info()
    client.server_now()

    assert client.requests_made == 4 == len(service.requests)


def test_each_request_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(Recorder())

    with caplog.at_level(logging.DEBUG, logger="connector.client"):
        client.query_table("SELECT 1", min_timestamp=INSTANT)

    [record] = [r for r in caplog.records if r.name == "connector.client"]
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert message.startswith("POST /v2/query -> 200 in ")
    assert message.endswith(" s, 2 rows")
    assert SECRET not in message


def test_repr_hides_the_token() -> None:
    client = client_for(Recorder())

    assert repr(client) == (
        "LogfireClient(base_url='https://logfire-eu.pydantic.dev', "
        "read_token='pylf_v1_eu_****')"
    )
    assert SECRET not in str(client)
    assert SECRET not in repr(vars(client))


def test_context_manager_closes_the_client() -> None:
    with client_for(Recorder()) as client:
        client.token_info()

    with pytest.raises(RuntimeError):
        client.token_info()


# Other endpoints.


def test_token_info_returns_the_json_object() -> None:
    service = Recorder()

    assert client_for(service).token_info() == TOKEN_INFO
    assert service.last.method == "GET"
    assert service.last.url.path == "/v1/read-token-info"


def test_token_info_that_is_not_json_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    client = LogfireClient(
        TOKEN, transport=httpx.MockTransport(handler), retry=RetryPolicy(max_attempts=1)
    )

    with pytest.raises(TransientError, match="JSON object"):
        client.token_info()


def test_server_now_reads_the_date_header() -> None:
    service = Recorder(date="Wed, 27 May 2026 13:16:36 GMT")

    now = client_for(service).server_now()

    assert now == datetime(2026, 5, 27, 13, 16, 36, tzinfo=UTC)
    assert now.tzinfo is not None
    assert service.last.url.path == "/v1/read-token-info"


def test_server_now_is_retried() -> None:
    service = Recorder()
    responses = [httpx.Response(503, text="busy")]

    def handler(request: httpx.Request) -> httpx.Response:
        return responses.pop(0) if responses else service(request)

    client = client_for(handler)

    assert client.server_now() == datetime(2026, 5, 27, 13, 16, 36, tzinfo=UTC)
    assert client.requests_made == 2


def test_the_sql_clock_in_nanoseconds_is_read_as_a_plain_datetime() -> None:
    service = Recorder(date=None)
    nanos = pa.array([1_779_887_796_517_321_789], pa.timestamp("ns", tz="UTC"))
    service.table = pa.table({"now": nanos})

    now = client_for(service).server_now()

    # A plain datetime, as pandas (which pyarrow would need for nanoseconds) may
    # not be installed.
    assert type(now) is datetime
    assert now == datetime(2026, 5, 27, 13, 16, 36, 517321, tzinfo=UTC)


def test_server_now_without_a_date_header_asks_the_sql_clock() -> None:
    service = Recorder(date=None)
    service.table = pa.table({"now": pa.array([INSTANT], pa.timestamp("us", tz="UTC"))})
    before = datetime.now(UTC)

    now = client_for(service).server_now()

    assert now == INSTANT
    body = service.last_body()
    assert body["sql"] == "SELECT now() AS now"
    sent_min = datetime.fromisoformat(str(body["min_timestamp"]))
    assert (
        before - timedelta(hours=1, seconds=5)
        <= sent_min
        <= before - timedelta(minutes=59)
    )
    assert [request.url.path for request in service.requests] == [
        "/v1/read-token-info",
        "/v2/query",
    ]


def test_server_now_from_sql_without_a_time_zone_is_taken_as_utc() -> None:
    service = Recorder(date=None)
    naive = INSTANT.replace(tzinfo=None)
    service.table = pa.table({"now": pa.array([naive], pa.timestamp("us"))})

    assert client_for(service).server_now() == INSTANT
