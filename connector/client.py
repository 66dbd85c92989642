"""A client for Logfire's SQL query API that streams results as Arrow batches.

:meth:`LogfireClient.stream_arrow` sends one query and yields record batches as
they arrive, without holding the whole response in memory. Truncation is caught
by the Arrow end-of-stream marker: pyarrow alone takes a stream that stops
cleanly between two batches for a complete one. The format also lets a writer
end a stream by closing it, so a caller that can confirm the rows otherwise
(by a count) may take a stream without the marker.

:meth:`LogfireClient.query_ndjson` reads a small result, such as counts, as
NDJSON. The read is complete only once the `end` line arrives and agrees with
the rows received; a missing `end` line, an `error` line (which can follow rows
under a 200) or a broken line fails the attempt, which is retried.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import math
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Self

import httpx
import pyarrow as pa
import tenacity

from connector.budget import RequestBudget, shared_budget
from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    IncompleteResponseError,
    LogfireSyncError,
    QueryError,
    RateLimitedError,
    TransientError,
    causes,
)
from connector.retry import RetryPolicy
from connector.tokens import REGION_BASE_URLS, ReadToken

__all__ = ["ARROW_STREAM", "END_OF_STREAM", "MAX_LIMIT", "NDJSON", "LogfireClient"]

logger = logging.getLogger(__name__)

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
NDJSON: Final = "application/x-ndjson"
_BODY_ERRORS: Final = (httpx.TransportError, httpx.DecodingError)
"""What httpx raises when a body breaks off or cannot be decoded part way."""

END_OF_STREAM: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_CONTINUATION: Final = END_OF_STREAM[:4]
_MARKER_SIZE: Final = len(END_OF_STREAM)
MAX_LIMIT: Final = 10_000

_QUERY_PATH: Final = "/v2/query"
_TOKEN_INFO_PATH: Final = "/v1/read-token-info"
_CONNECT_TIMEOUT: Final = 10.0
_ERROR_BODY_BYTES: Final = 64 * 1024
_JSON_BODY_BYTES: Final = 1024 * 1024
_MESSAGE_CHARS: Final = 500
_ARROW_MEDIA_TYPES: Final = frozenset({ARROW_STREAM, "application/octet-stream", ""})
_NDJSON_MEDIA_TYPES: Final = frozenset(
    {NDJSON, "application/ndjson", "application/jsonl", ""}
)
_TOKEN_ADVICE: Final = (
    "Check LOGFIRE_READ_TOKEN, whether the token has expired, and that its "
    "region matches the base URL: a token for another region is refused by "
    "the wrong region's service."
)


def _user_agent() -> str:
    """The User-Agent header, naming this package's version."""
    try:
        package_version = version("logfire-sync")
    except PackageNotFoundError:
        package_version = "0"
    return f"logfire-sync/{package_version} (+httpx)"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client in the process.

    Building one loads the whole CA bundle, which costs more than the rest of
    a sync that finds nothing new; a context is safe to share between clients.
    It honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` as httpx's own does.
    """
    return httpx.create_ssl_context(trust_env=True)


def _clean_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, once it is known to be http(s)."""
    cleaned = base_url.strip().rstrip("/")
    try:
        url = httpx.URL(cleaned)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"The base URL {base_url!r} is not an http(s) URL. Use the "
            "service's root, such as https://logfire-eu.pydantic.dev or "
            "http://127.0.0.1:8000."
        )
    return cleaned


def _iso(dt: datetime, name: str) -> str:
    """``dt`` in ISO 8601 with microseconds and a UTC offset."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ConfigurationError(
            f"{name} {dt.isoformat()} has no time zone. Give a timezone-aware "
            "datetime, such as datetime.now(UTC)."
        )
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _query_body(
    sql: str, min_timestamp: datetime, max_timestamp: datetime | None, limit: int
) -> dict[str, object]:
    """The JSON body of a query, once its options are known to be valid."""
    if not sql.strip():
        raise ConfigurationError("The SQL of the query is empty. Give a query.")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "The SQL of the query is not valid Unicode: it holds a lone "
            "surrogate. Decode the text properly first."
        ) from None
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(
            f"limit must be between 1 and {MAX_LIMIT}, not {limit!r}."
        )

    body: dict[str, object] = {
        "sql": sql,
        "min_timestamp": _iso(min_timestamp, "min_timestamp"),
    }
    if max_timestamp is not None:
        body["max_timestamp"] = _iso(max_timestamp, "max_timestamp")
        if min_timestamp > max_timestamp:
            raise ConfigurationError(
                f"min_timestamp {body['min_timestamp']} is after max_timestamp "
                f"{body['max_timestamp']}. Swap them or widen the range."
            )
    body["limit"] = limit
    return body


def _media_type(headers: httpx.Headers) -> str:
    """The response's media type, lowercase and without parameters."""
    content_type: str = headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    """Whether ``media_type`` is JSON, such as RFC 9457 problem JSON."""
    return media_type == "application/json" or media_type.endswith("+json")


def _cap(text: str) -> str:
    """``text`` on one line and at most a few hundred characters long."""
    flat = " ".join(text.split())
    if len(flat) <= _MESSAGE_CHARS:
        return flat
    hidden = len(flat) - _MESSAGE_CHARS
    return f"{flat[:_MESSAGE_CHARS]}... ({hidden} more characters)"


def _sentence(text: str) -> str:
    """``text`` ending with a full stop, so that advice can follow it."""
    text = text.strip()
    if not text or text[-1] in ".!?":
        return text
    return text + "."


def _validation_error(item: object) -> str:
    """One entry of a pydantic-style 422 ``detail`` list, as text."""
    if not isinstance(item, dict):
        return json.dumps(item, default=str)

    message = item.get("msg")
    if not isinstance(message, str):
        return json.dumps(item, default=str)

    location = item.get("loc")
    if isinstance(location, list) and location:
        return f"{'.'.join(str(part) for part in location)}: {message}"
    return message


def _json_message(data: object) -> str | None:
    """The message in a JSON error body, problem JSON included."""
    if not isinstance(data, dict):
        return None

    title = data.get("title")
    detail = data.get("detail")
    if isinstance(detail, list):
        detail = "; ".join(_validation_error(item) for item in detail)
    elif detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, default=str)

    if detail and isinstance(title, str) and title and title != detail:
        return f"{title}: {detail}"
    for candidate in (detail, data.get("message"), data.get("error"), title):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


@dataclass(frozen=True)
class _Body:
    """The start of a response body, decoded for an error message."""

    message: str
    data: object

    @classmethod
    def read(cls, response: httpx.Response, max_bytes: int) -> _Body:
        """Read at most ``max_bytes`` of ``response`` and describe them."""
        raw = _read_capped(response, max_bytes)
        text = raw.decode(response.encoding or "utf-8", errors="replace")

        data: object = None
        if _is_json(_media_type(response.headers)):
            with contextlib.suppress(ValueError):
                data = json.loads(text)

        message = _json_message(data) or text
        return cls(message=_cap(message), data=data)


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of the body; a failure part way keeps what came."""
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= max_bytes:
                break
    except httpx.HTTPError:
        pass
    return b"".join(parts)[:max_bytes]


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date header as an aware datetime, or None if it is not one."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # HTTP dates are always in GMT.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _retry_after(headers: httpx.Headers, data: object) -> float | None:
    """Seconds to wait from ``Retry-After`` or problem JSON, if either says."""
    header = headers.get("retry-after", "").strip()
    if header:
        with contextlib.suppress(ValueError):
            seconds = float(header)
            return max(seconds, 0.0) if math.isfinite(seconds) else None

        when = _http_date(header)
        if when is not None:
            reference = _http_date(headers.get("date")) or datetime.now(UTC)
            return max((when - reference).total_seconds(), 0.0)

    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


class _BodyReader:
    """A read-only file over an HTTP body, fed to pyarrow's stream reader.

    It pulls chunks from the network only as pyarrow asks for bytes, so each
    record batch is read as soon as its bytes have arrived. It also remembers
    how the body ended, which pyarrow does not tell.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._tail = b""
        self.closed = False
        self.bytes_read = 0
        self.short_read = False

    def readable(self) -> bool:
        """Whether the file can be read: always."""
        return True

    def peek(self, size: int) -> bytes:
        """Up to ``size`` bytes from the start of what is left, not consumed."""
        self._fill(size)
        return bytes(self._buffer[:size])

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the body."""
        self._fill(size)
        if size < 0:
            size = len(self._buffer)

        data = self._take(size)
        if len(data) < size:
            self.short_read = True
        self.bytes_read += len(data)
        tail = self._tail + data[-_MARKER_SIZE:]
        self._tail = tail[-_MARKER_SIZE:]
        return data

    def _take(self, size: int) -> bytes:
        """Remove and return the first ``size`` buffered bytes, copied once."""
        view = memoryview(self._buffer)
        data = view[:size].tobytes()
        view.release()
        del self._buffer[:size]
        return data

    def _fill(self, size: int) -> None:
        """Pull chunks until ``size`` bytes are buffered or the body ends."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            self._buffer += chunk

    def drain(self) -> None:
        """Read what is left of the body, so the connection can be reused."""
        with contextlib.suppress(httpx.HTTPError):
            for _ in self._chunks:
                pass

    @property
    def ended_with_marker(self) -> bool:
        """Whether the reader stopped on the end-of-stream marker.

        After the marker pyarrow reads no further, so no read came up short;
        a stream cut between two batches instead ends with a short read.
        """
        return not self.short_read and self._tail == END_OF_STREAM

    def close(self) -> None:
        """Mark the file closed; the response is closed by its owner."""
        self.closed = True


@dataclass
class _Exchange:
    """What one request did, for the DEBUG log line."""

    method: str
    path: str
    status: int | None = None
    rows: int | None = None
    schema: pa.Schema | None = None


class LogfireClient:
    """A client for one Logfire service and read token.

    Args:
        read_token: The Logfire read token; its region picks the service.
        base_url: The service's root URL, for self-hosted or local servers;
            by default the one for the token's region.
        timeout: Seconds to wait for each read from the service; queries can
            be slow. Connecting has its own 10 s limit.
        retry: How :meth:`query_table`, :meth:`server_now` and
            :meth:`token_info` retry; :class:`RetryPolicy` defaults otherwise.
        transport: An httpx transport, for tests.
        require_end_marker: Whether an Arrow stream must end with its
            end-of-stream marker, or else fail (or, for a caller that passes
            `unmarked`, be confirmed by it). Off, a stream cut between two
            batches looks complete and is caught only by the caller's own
            row-count checks.
        max_requests_per_minute: Send at most this many requests in any
            minute, waiting for a turn when the budget is spent; shared with
            every client of the same service and token in this process.

    Raises:
        ConfigurationError: If the token is empty or a setting is invalid.
    """

    def __init__(
        self,
        read_token: str,
        *,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        require_end_marker: bool = True,
        max_requests_per_minute: int | None = None,
    ) -> None:
        self._token = ReadToken(read_token)
        if base_url is None or not base_url.strip():
            self.base_url = self._token.base_url
        else:
            self.base_url = _clean_base_url(base_url)
        if not timeout > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, not {timeout!r}."
            )

        self.require_end_marker = require_end_marker
        self.requests_made = 0
        self._count_lock = threading.Lock()
        self.budget: RequestBudget | None = None
        if max_requests_per_minute is not None:
            self.budget = shared_budget(
                self.base_url, self._token.reveal(), max_requests_per_minute
            )
        self._retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self._token.reveal()}",
                "User-Agent": _user_agent(),
            },
            timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT),
            verify=_ssl_context(),
            transport=transport,
        )

    def __repr__(self) -> str:
        return (
            f"LogfireClient(base_url={self.base_url!r}, "
            f"read_token={self._token.redacted!r})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the service."""
        self._http.close()

    def retrying(self) -> tenacity.Retrying:
        """The retry policy, for callers that retry their own loops.

        When it gives up it raises the last error itself, not a RetryError.
        """
        return self._retry.retrying()

    def stream_arrow(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = MAX_LIMIT,
        unmarked: Callable[[], None] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Run one query and yield its record batches as they arrive.

        The request is sent once, without retries, when iteration starts.

        Args:
            sql: The DataFusion SQL to run.
            min_timestamp: The lower bound the service puts on the table's
                timestamp column; timezone-aware.
            max_timestamp: The upper bound on the same column, if any.
            limit: The most rows to return, 1 to 10,000.
            unmarked: Called when the stream ends cleanly but without its
                end-of-stream marker (the Arrow format allows a writer to end
                by closing), so that the caller confirms the rows another way.
                Without it, such a stream fails as incomplete, unless
                `require_end_marker` is off.

        Returns:
            A generator of the result's record batches; closing it early
            closes the response.

        Raises:
            ConfigurationError: At once, if an option is invalid; later, if the
                base URL is wrong.
            AuthenticationError: If the service refuses the token.
            QueryError: If the service refuses the query or its options.
            RateLimitedError: If the service asks to slow down.
            TransientError: On a server error, timeout or broken connection;
                IncompleteResponseError if the stream stops before its end.
        """
        payload = _query_body(sql, min_timestamp, max_timestamp, limit)
        return self._stream_query(payload, _Exchange("POST", _QUERY_PATH), unmarked)

    def query_table(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> pa.Table:
        """Run a query, retried per the policy, and gather its rows in a table.

        Takes the same arguments and raises the same errors as
        :meth:`stream_arrow`, once the retries are used up.
        """
        payload = _query_body(sql, min_timestamp, max_timestamp, limit)
        return self.retrying()(self._fetch_table, payload)

    def query_ndjson(
        self,
        sql: str,
        *,
        min_timestamp: datetime,
        max_timestamp: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[dict[str, Any]]:
        """Run a query, retried per the policy, and return its rows as dicts.

        The result is read as NDJSON, whole, so it suits small results. An
        attempt fails with IncompleteResponseError when the stream has no
        `end` line, carries an `error` line (even after rows and under a
        200), holds a line that is not JSON, or has an `end` line whose
        `row_count` differs from the rows that arrived.

        Takes the same arguments and raises the same errors as
        :meth:`stream_arrow`, once the retries are used up.
        """
        payload = _query_body(sql, min_timestamp, max_timestamp, limit)
        return self.retrying()(self._fetch_ndjson, payload)

    def server_now(self) -> datetime:
        """The service's clock, to the second, retried per the policy.

        Read from the ``Date`` header of the token-info endpoint; a service
        that sends no such header is asked ``SELECT now()`` instead.
        """
        now = self.retrying()(self._fetch_date)
        if now is not None:
            return now

        since = datetime.now(UTC) - timedelta(hours=1)
        payload = _query_body("SELECT now() AS now", since, None, 1)
        # One row or none: a cut can only leave none, which fails below.
        table = self.retrying()(self._fetch_table, payload, _accept)
        return self._now_from_table(table)

    def token_info(self) -> dict[str, object]:
        """What the service knows of the token: project, organisation, expiry.

        Retried per the policy.
        """
        return self.retrying()(self._fetch_token_info)

    def _fetch_table(
        self,
        payload: dict[str, object],
        unmarked: Callable[[], None] | None = None,
    ) -> pa.Table:
        """One attempt of :meth:`query_table`."""
        exchange = _Exchange("POST", _QUERY_PATH)
        batches = list(self._stream_query(payload, exchange, unmarked))
        return pa.Table.from_batches(batches, schema=exchange.schema)

    def _fetch_ndjson(self, payload: dict[str, object]) -> list[dict[str, Any]]:
        """One attempt of :meth:`query_ndjson`."""
        exchange = _Exchange("POST", _QUERY_PATH)
        headers = {"Accept": NDJSON}
        with self._open(exchange, json=payload, headers=headers) as response:
            self._raise_for_status(response)
            self._raise_unless_media(response, _NDJSON_MEDIA_TYPES, "NDJSON")
            return self._read_ndjson(response, exchange)

    def _read_ndjson(
        self, response: httpx.Response, exchange: _Exchange
    ) -> list[dict[str, Any]]:
        """The rows of an NDJSON result, once its `end` line vouches for them."""
        rows: list[dict[str, Any]] = []
        exchange.rows = 0
        try:
            lines = _split_lines(response.iter_text())
            for number, line in enumerate(lines, start=1):
                message = self._ndjson_message(line, number, exchange)
                kind = None if message is None else message["type"]
                if message is None or kind in ("schema", "explain"):
                    continue
                if kind == "data":
                    rows.extend(self._ndjson_rows(message, exchange))
                    exchange.rows = len(rows)
                elif kind == "error":
                    raise self._ndjson_failure(message, len(rows), exchange)
                elif kind == "end":
                    self._check_ndjson_end(message, len(rows), exchange)
                    return rows
        except _BODY_ERRORS as exc:
            raise self._error(
                IncompleteResponseError,
                f"The response broke off after {len(rows)} rows of the NDJSON "
                f"result ({type(exc).__name__}: {exc}). Retry the query.",
                status_code=exchange.status,
            ) from exc

        raise self._error(
            IncompleteResponseError,
            f"The NDJSON result ended after {len(rows)} rows without its end "
            "line, so rows may be missing. Retry the query.",
            status_code=exchange.status,
        )

    def _ndjson_message(
        self, line: str, number: int, exchange: _Exchange
    ) -> dict[str, Any] | None:
        """One line of an NDJSON result as a message; None for a blank line."""
        text = line.strip()
        if not text:
            return None
        try:
            message = json.loads(text)
        except ValueError:
            raise self._error(
                IncompleteResponseError,
                f"Line {number} of the NDJSON result is not JSON "
                f"({_cap(text)!r}), so the stream was probably cut. Retry the "
                "query.",
                status_code=exchange.status,
            ) from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise self._error(
                TransientError,
                f"Line {number} of the NDJSON result is not a message with a "
                f"type: {_cap(text)!r}. Check that base_url points at Logfire's "
                "query API; the query can be retried.",
                status_code=exchange.status,
            )
        return message

    def _ndjson_rows(
        self, message: dict[str, Any], exchange: _Exchange
    ) -> list[dict[str, Any]]:
        """The rows of a `data` line."""
        rows = message.get("rows")
        if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
            return rows
        raise self._error(
            TransientError,
            "A data line of the NDJSON result does not hold a list of rows. "
            "Check that base_url points at Logfire's query API; the query can "
            "be retried.",
            status_code=exchange.status,
        )

    def _ndjson_failure(
        self, message: dict[str, Any], rows: int, exchange: _Exchange
    ) -> LogfireSyncError:
        """The error for an `error` line, which ends the result early."""
        said = message.get("message")
        reason = _sentence(_cap(said)) if isinstance(said, str) else ""
        return self._error(
            IncompleteResponseError,
            f"The query failed while its result streamed, after {rows} rows: "
            f"{reason or 'the service gave no reason.'} Retry the query; if it "
            "keeps failing, narrow its time range.",
            status_code=exchange.status,
        )

    def _check_ndjson_end(
        self, message: dict[str, Any], rows: int, exchange: _Exchange
    ) -> None:
        """Refuse an `end` line whose row count differs from the rows read."""
        if "row_count" not in message:
            return
        count = message["row_count"]
        if isinstance(count, int) and not isinstance(count, bool) and count == rows:
            return
        raise self._error(
            IncompleteResponseError,
            f"The NDJSON result's end line counts {count!r} rows, but {rows} "
            "arrived, so rows are missing. Retry the query.",
            status_code=exchange.status,
        )

    def _fetch_date(self) -> datetime | None:
        """One attempt at reading the service's ``Date`` header."""
        with self._open(_Exchange("GET", _TOKEN_INFO_PATH)) as response:
            self._raise_for_status(response)
            return _http_date(response.headers.get("date"))

    def _fetch_token_info(self) -> dict[str, object]:
        """One attempt of :meth:`token_info`."""
        with self._open(_Exchange("GET", _TOKEN_INFO_PATH)) as response:
            self._raise_for_status(response)
            media_type = _media_type(response.headers)
            raw = _read_capped(response, _JSON_BODY_BYTES)

        data: object = None
        if _is_json(media_type):
            with contextlib.suppress(ValueError):
                data = json.loads(raw)
        if not isinstance(data, dict):
            raise self._error(
                TransientError,
                f"{self._url(_TOKEN_INFO_PATH)} did not answer with a JSON "
                f"object (content type {media_type or 'missing'}): "
                f"{_cap(raw.decode('utf-8', errors='replace'))!r}. Check that "
                "base_url points at Logfire's query API.",
                status_code=response.status_code,
            )
        return data

    def _now_from_table(self, table: pa.Table) -> datetime:
        """The single timestamp that ``SELECT now()`` returned."""
        column = table.column(0)
        if pa.types.is_timestamp(column.type) and column.type.unit != "us":
            # DataFusion's now() is in nanoseconds, which as_py() refuses
            # without pandas.
            column = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False)
        value: Any = column[0].as_py() if table.num_rows else None
        if not isinstance(value, datetime):
            raise self._error(
                TransientError,
                f"SELECT now() returned {value!r} instead of a timestamp.",
            )
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def _stream_query(
        self,
        payload: dict[str, object],
        exchange: _Exchange,
        unmarked: Callable[[], None] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Send a query and yield its batches; the generator behind streaming."""
        headers = {"Accept": ARROW_STREAM}
        with self._open(exchange, json=payload, headers=headers) as response:
            self._raise_for_status(response)
            self._raise_unless_arrow(response)

            body = _BodyReader(response.iter_bytes())
            yield from self._read_batches(body, exchange, unmarked)

    @contextlib.contextmanager
    def _open(self, exchange: _Exchange, **kwargs: Any) -> Iterator[httpx.Response]:
        """Send one request, yield its unread response, then close it."""
        request = self._http.build_request(exchange.method, exchange.path, **kwargs)
        if self.budget is not None:
            self.budget.acquire()
        started = time.monotonic()
        with self._count_lock:
            self.requests_made += 1
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            logger.debug(
                "%s %s failed after %.3f s: %s",
                exchange.method,
                exchange.path,
                time.monotonic() - started,
                type(exc).__name__,
            )
            raise self._transport_error(exc, exchange.path) from exc

        exchange.status = response.status_code
        try:
            yield response
        finally:
            response.close()
            logger.debug(
                "%s %s -> %s in %.3f s, %s rows",
                exchange.method,
                exchange.path,
                exchange.status,
                time.monotonic() - started,
                "no" if exchange.rows is None else exchange.rows,
            )

    def _read_batches(
        self,
        body: _BodyReader,
        exchange: _Exchange,
        unmarked: Callable[[], None] | None,
    ) -> Iterator[pa.RecordBatch]:
        """Yield the batches of an Arrow stream, then check that it was whole."""
        exchange.rows = 0
        try:
            self._check_arrow_start(body, exchange)
            reader = pa.ipc.open_stream(body)
            exchange.schema = reader.schema
            for batch in reader:
                exchange.rows += batch.num_rows
                yield batch
        except _BODY_ERRORS as exc:
            raise self._error(
                IncompleteResponseError,
                f"The response broke off after {body.bytes_read} bytes of the "
                f"Arrow stream ({type(exc).__name__}: {exc}). Retry the query.",
                status_code=exchange.status,
            ) from exc
        except (pa.ArrowException, OSError) as exc:
            raise self._arrow_error(exc, body, exchange) from exc

        if body.ended_with_marker:
            body.drain()
            return
        if not self.require_end_marker:
            return
        if unmarked is not None:
            logger.debug(
                "The Arrow stream ended after %s rows without its end-of-stream "
                "marker; the caller confirms its rows.",
                exchange.rows,
            )
            unmarked()
            return
        raise self._error(
            IncompleteResponseError,
            f"The Arrow stream ended after {exchange.rows} rows "
            f"({body.bytes_read} bytes) without its end-of-stream marker, so "
            "rows may be missing. Retry the query. If the service never sends "
            "the marker, set require_end_marker to false: the sync then counts "
            "the rows of each window's last page instead.",
            status_code=exchange.status,
        )

    def _check_arrow_start(self, body: _BodyReader, exchange: _Exchange) -> None:
        """Refuse a body that does not open like an Arrow stream.

        Checked before pyarrow reads, because pyarrow would take arbitrary bytes
        for a message length and wait for that many bytes of body.
        """
        start = body.peek(len(_CONTINUATION))
        if start == _CONTINUATION:
            return
        if not start:
            raise self._error(
                IncompleteResponseError,
                "The response body was empty instead of an Arrow stream. "
                "Retry the query.",
                status_code=exchange.status,
            )
        preview = _cap(body.peek(_MESSAGE_CHARS).decode("utf-8", errors="replace"))
        raise self._error(
            TransientError,
            f"The response is not a valid Arrow stream: it starts with "
            f"{preview!r}. Retry the query, and check that base_url points at "
            "Logfire's query API.",
            status_code=exchange.status,
        )

    def _arrow_error(
        self, exc: Exception, body: _BodyReader, exchange: _Exchange
    ) -> LogfireSyncError:
        """The error for a body pyarrow could not read."""
        if body.short_read:
            return self._error(
                IncompleteResponseError,
                f"The Arrow stream stopped in the middle of a message after "
                f"{body.bytes_read} bytes ({exc}). Retry the query.",
                status_code=exchange.status,
            )
        return self._error(
            TransientError,
            f"The response is not a valid Arrow stream ({exc}). Retry the "
            "query, and check that base_url points at Logfire's query API.",
            status_code=exchange.status,
        )

    def _raise_unless_arrow(self, response: httpx.Response) -> None:
        """Refuse a successful response that does not carry an Arrow stream."""
        self._raise_unless_media(response, _ARROW_MEDIA_TYPES, "an Arrow stream")

    def _raise_unless_media(
        self, response: httpx.Response, accepted: frozenset[str], what: str
    ) -> None:
        """Refuse a successful response whose media type is not `accepted`."""
        media_type = _media_type(response.headers)
        if media_type in accepted:
            return

        body = _Body.read(response, _ERROR_BODY_BYTES)
        if _json_message(body.data) is not None:
            raise self._error(
                QueryError,
                f"The query failed: the service answered with {media_type} "
                f"instead of {what}, saying: {_sentence(body.message)} "
                "Fix the query or its options.",
                status_code=response.status_code,
            )
        raise self._error(
            TransientError,
            f"The service answered with {media_type} instead of {what}: "
            f"{body.message!r}. Check that base_url points at "
            "Logfire's query API; the query can be retried.",
            status_code=response.status_code,
        )

    def _raise_for_status(self, response: httpx.Response) -> None:
        """Raise the error that a response's status calls for, if any."""
        status = response.status_code
        if 200 <= status < 300:
            return

        body = _Body.read(response, _ERROR_BODY_BYTES)
        said = _sentence(body.message) or f"{response.reason_phrase}."
        where = str(response.request.url)

        if status == 400:
            message = f"The service could not run the query (HTTP 400): {said} "
            raise self._error(QueryError, message + "Fix the SQL.", status_code=400)
        if status in (401, 403):
            raise self._error(
                AuthenticationError,
                f"The service at {self.base_url} refused the read token "
                f"{self._token.redacted} (HTTP {status}): {said} "
                f"{self._region_note()}{_TOKEN_ADVICE}",
                status_code=status,
            )
        if status == 404:
            raise self._error(
                ConfigurationError,
                f"{where} was not found (HTTP 404): {said} Check base_url: it "
                "must be the root of a Logfire query API, such as "
                "https://logfire-us.pydantic.dev.",
                status_code=404,
            )
        if status == 422:
            raise self._error(
                QueryError,
                f"The service refused the request options (HTTP 422): {said} "
                "Fix min_timestamp, max_timestamp or limit.",
                status_code=422,
            )
        if status == 429:
            raise self._rate_limited(response, body, said)
        raise self._other_status(response, body, said, where)

    def _region_note(self) -> str:
        """Where the token's own region is served, when that is elsewhere."""
        with warnings.catch_warnings():
            # An unknown region was warned about when the client was made.
            warnings.simplefilter("ignore")
            region = self._token.region
        if not self._token.redacted.endswith(f"_{region}_****"):
            return ""
        home = REGION_BASE_URLS[region]
        if home == self.base_url:
            return ""
        return (
            f"The token is for the {region} region, served at {home}, and was "
            f"sent to {self.base_url}. "
        )

    def _rate_limited(
        self, response: httpx.Response, body: _Body, said: str
    ) -> RateLimitedError:
        """The error for a 429, with the wait the service asked for."""
        retry_after = _retry_after(response.headers, body.data)
        if retry_after is None:
            advice = "Wait before sending more queries."
        else:
            advice = f"Wait {retry_after:g} s before sending more queries."
        return RateLimitedError(
            self._token.scrub(
                f"The service is limiting the rate of queries (HTTP 429): "
                f"{said} {advice}"
            ),
            retry_after=retry_after,
        )

    def _other_status(
        self, response: httpx.Response, body: _Body, said: str, where: str
    ) -> LogfireSyncError:
        """The error for a status without a meaning of its own in the API."""
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("location", "elsewhere")
            return self._error(
                ConfigurationError,
                f"{where} redirected (HTTP {status}) to {location}. Set "
                "base_url to the address the service answers on.",
                status_code=status,
            )
        if 400 <= status < 500 and status not in (408, 425):
            return self._error(
                QueryError,
                f"The service refused the request (HTTP {status}): {said} "
                "Check the query and its options.",
                status_code=status,
            )
        retry_after = _retry_after(response.headers, body.data)
        wish = "" if retry_after is None else f" It asked for {retry_after:g} s."
        return TransientError(
            self._token.scrub(
                f"The service failed (HTTP {status}): {said} The fault is on the "
                f"service's side; retry later.{wish}"
            ),
            status_code=status,
            retry_after=retry_after,
        )

    def _transport_error(
        self, exc: httpx.TransportError, path: str
    ) -> LogfireSyncError:
        """The error for a request that got no response."""
        url = self._url(path)
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.UnsupportedProtocol):
            return self._error(
                ConfigurationError,
                f"Cannot send a request to {url} ({cause}). Fix base_url.",
            )
        if _certificate_failed(exc):
            return self._error(
                ConfigurationError,
                f"The TLS certificate of {url} failed verification ({cause}). If "
                "the service uses a private certificate authority, point "
                "SSL_CERT_FILE (or SSL_CERT_DIR) at its certificates; otherwise "
                "fix base_url.",
            )
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._error(
                TransientError,
                f"Could not connect to {url} ({cause}). Check that the service "
                "is running and that base_url is right.",
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._error(
                TransientError,
                f"The request to {url} timed out ({cause}). Retry, narrow the "
                "query's time range, or raise the timeout.",
            )
        return self._error(
            TransientError,
            f"The request to {url} failed before a response arrived ({cause}). "
            "Retry the request.",
        )

    def _url(self, path: str) -> str:
        """The full URL of ``path`` on this client's service."""
        return self.base_url + path

    def _error(
        self,
        error_class: type[LogfireSyncError],
        message: str,
        *,
        status_code: int | None = None,
    ) -> LogfireSyncError:
        """An error whose message cannot carry the token, even when echoed."""
        return error_class(self._token.scrub(message), status_code=status_code)


def _certificate_failed(exc: BaseException) -> bool:
    """Whether `exc` comes from a TLS certificate that failed verification.

    httpx reports it as a connection error, which no retry can fix.
    """
    if any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes(exc)):
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _split_lines(chunks: Iterator[str]) -> Iterator[str]:
    """The lines of a text stream, split at line feeds alone.

    ``str.splitlines`` (and httpx's ``iter_lines``) also split at U+2028,
    U+2029 and U+0085, which JSON strings may hold unescaped.
    """
    parts: list[str] = []
    for chunk in chunks:
        pieces = chunk.split("\n")
        if len(pieces) == 1:
            parts.append(chunk)
            continue
        parts.append(pieces[0])
        yield "".join(parts).removesuffix("\r")
        for piece in pieces[1:-1]:
            yield piece.removesuffix("\r")
        parts = [pieces[-1]]
    tail = "".join(parts)
    if tail:
        yield tail.removesuffix("\r")


def _accept() -> None:
    """Take a stream without its end-of-stream marker as it is."""
