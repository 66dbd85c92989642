"""The sandbox's HTTP service: Logfire's query API in front of the sandbox engine.

Routes, all authenticated with the read token (`Authorization: Bearer <token>`,
or the bare token as the official SDK sends it):

- `POST /v2/query`: run SQL; the format follows the first type of `Accept`.
- `GET /v1/read-token-info`, `GET /v1/schemas`: about the token and the tables.
- `GET /sandbox/counters` (`DELETE` resets them), `GET|POST /sandbox/faults`
  (the body of a `POST` is a fault spec, see `sandbox.faults`),
  `GET|POST /sandbox/clock` (`{"seconds": N}` moves the clock forward).

Errors are JSON `{"detail": ...}` as FastAPI writes them, or RFC 9457 problem
details (`application/problem+json`, with the plain body in `error_details`)
when the client's `Accept` lists that type, as the official SDK's does. A 429
is always a problem detail. Every response's `Date` header reads the sandbox
clock.

Queries run in worker threads and stream batch by batch. A query that fails
before its first batch is a 400; one that fails later ends an NDJSON stream
with an `error` line and closes the connection of the other formats, which
cannot report it. With `max_concurrent_queries`, queries beyond the cap wait
up to `queue_timeout` and are then refused with a 429, like Logfire's cap per
organisation; `latency` delays every request. With `arrow_end_marker` off,
Arrow streams end without their end-of-stream marker, as some services' do.
With `batch_rows`, results are streamed in batches of at most that many rows,
so that even small pages span several batches (and stream faults cut them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Protocol

import pyarrow as pa
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import formats, schema
from sandbox.clock import Clock
from sandbox.counters import DROPPED, Counters
from sandbox.engine import QueryFailed, QueryRequest, QueryResult
from sandbox.faults import STATUS_KINDS, STREAM_KINDS, Fault, FaultPlan
from sandbox.store import Store

logger = logging.getLogger(__name__)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
PROBLEM_JSON = "application/problem+json"
_PROBLEM_BASE = "https://logfire-sandbox.invalid/problems/"
_BUSY_RETRY_AFTER = 1
_DROP_WAIT_SECONDS = 5.0
_MIDSTREAM_ERROR = (
    "Query execution failed while streaming results: the worker running the "
    "query was restarted."
)


class Engine(Protocol):
    """What the service needs of the query engine."""

    def execute(self, request: QueryRequest) -> QueryResult:
        """Plan a query and return its lazily streamed result."""
        ...


class Connections:
    """The live client connections, so a fault can close one without a reply.

    The HTTP protocol registers each connection's transport under the client's
    address, which is also the `client` of the request's ASGI scope.
    """

    def __init__(self) -> None:
        self._transports: dict[tuple[str, int], asyncio.BaseTransport] = {}

    def add(self, client: tuple[str, int], transport: asyncio.BaseTransport) -> None:
        """Remember the transport of a new connection."""
        self._transports[client] = transport

    def discard(self, client: tuple[str, int]) -> None:
        """Forget a closed connection."""
        self._transports.pop(client, None)

    def close(self, scope: Scope) -> None:
        """Close the connection a request arrived on, whatever it was doing."""
        client = scope.get("client")
        transport = self._transports.get(tuple(client)) if client else None
        if transport is None:
            raise RuntimeError(
                "The sandbox cannot drop this connection: it is not served by "
                "SandboxServer, which tracks connections."
            )
        transport.close()


@dataclass
class Service:
    """Everything the HTTP service reads while it runs."""

    store: Store
    clock: Clock
    engine: Engine
    token: str
    counters: Counters = field(default_factory=Counters)
    faults: FaultPlan = field(default_factory=FaultPlan.none)
    latency: float = 0.0
    max_concurrent_queries: int | None = None
    queue_timeout: float = 10.0
    arrow_end_marker: bool = True
    batch_rows: int | None = None
    connections: Connections = field(default_factory=Connections)
    project_name: str = "sandbox"
    organization_name: str = "sandbox"


class InvalidRequestError(Exception):
    """The request body failed validation; `errors` are pydantic-shaped."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def create_app(service: Service) -> ASGIApp:
    """The ASGI application serving `service`."""
    handlers = _Handlers(service)
    routes = [
        Route("/v2/query", handlers.query, methods=["POST"]),
        Route("/v1/read-token-info", handlers.token_info, methods=["GET"]),
        Route("/v1/schemas", handlers.schemas, methods=["GET"]),
        Route("/sandbox/counters", handlers.counters, methods=["GET", "DELETE"]),
        Route("/sandbox/faults", handlers.faults, methods=["GET", "POST"]),
        Route("/sandbox/clock", handlers.clock, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    return _Envelope(app, service)


class _Envelope:
    """Adds latency and the clock's `Date` header, and keeps the counters."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        service = self._service
        service.counters.record_request(scope["path"])
        if service.latency > 0:
            await asyncio.sleep(service.latency)

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                service.counters.record_status(message["status"], scope["path"])
                message["headers"] = [*message.get("headers", []), self._date()]
            elif message["type"] == "http.response.body":
                service.counters.add_bytes(len(message.get("body", b"")))
            await send(message)

        await self._app(scope, receive, send_counted)

    def _date(self) -> tuple[bytes, bytes]:
        return b"date", http_date(self._service.clock.now()).encode()


def http_date(moment: datetime) -> str:
    """An instant in the RFC 7231 format of the `Date` header."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


class _Handlers:
    def __init__(self, service: Service) -> None:
        self.service = service
        limit = service.max_concurrent_queries
        self.slots = asyncio.Semaphore(limit) if limit is not None else None

    async def query(self, request: Request) -> Response:
        service = self.service
        fault = service.faults.next_fault()
        early = self._early_fault(fault, request)
        if early is not None:
            return early

        denied = self._authenticate(request)
        if denied is not None:
            return denied
        try:
            query = parse_query(await request.body())
        except InvalidRequestError as invalid:
            return _invalid(invalid.errors, request)

        if not await self._acquire_slot():
            return _busy(request)
        try:
            if fault is not None and fault.kind == "slow":
                service.counters.record_fault(fault.kind)
                await asyncio.sleep(fault.slow_seconds)
            return await self._run(query, request, fault)
        except BaseException:
            self._release_slot()
            raise

    def _early_fault(self, fault: Fault | None, request: Request) -> Response | None:
        """The response of a fault that replaces the whole answer, if drawn."""
        if fault is None or fault.kind in STREAM_KINDS or fault.kind == "slow":
            return None
        self.service.counters.record_fault(fault.kind)
        if fault.kind == "drop_before":
            self.service.counters.record_status(DROPPED, request.url.path)
            return _Dropped(self.service.connections)
        if fault.kind in STATUS_KINDS:
            return _fault_response(fault, request, self.service.clock)
        raise AssertionError(f"Unhandled fault kind {fault.kind!r}.")

    async def _run(
        self, query: QueryRequest, request: Request, fault: Fault | None
    ) -> Response:
        service = self.service
        service.counters.record_query()
        try:
            result, first, rest = await run_in_threadpool(_start, service.engine, query)
        except QueryFailed as failed:
            self._release_slot()
            return _error(400, str(failed), request, "query-failed")
        if service.batch_rows is not None:
            first, rest = _in_slices(first, rest, service.batch_rows)

        stream_fault = (
            fault.kind if fault is not None and fault.kind in STREAM_KINDS else None
        )
        if stream_fault is not None:
            service.counters.record_fault(stream_fault)
        fmt = formats.choose_format(request.headers.get("accept"))
        plans = split_plans(result.plans) if query.explain else None
        encoder = formats.encoder_for(
            fmt, result.schema, plans, arrow_end_marker=service.arrow_end_marker
        )
        body = _body(encoder, first, rest, stream_fault, service.counters)
        return _QueryStream(
            body,
            formats.MEDIA_TYPES[fmt],
            connections=service.connections,
            drop_early=stream_fault == "drop_during",
            on_close=self._release_slot,
        )

    async def _acquire_slot(self) -> bool:
        if self.slots is None:
            return True
        try:
            await asyncio.wait_for(self.slots.acquire(), self.service.queue_timeout)
        except TimeoutError:
            return False
        return True

    def _release_slot(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def _authenticate(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").strip()
        scheme, _, rest = given.partition(" ")
        if scheme.lower() == "bearer":
            given = rest.strip()
        if given and hmac.compare_digest(given.encode(), self.service.token.encode()):
            return None
        return _error(401, "Invalid read token", request, "invalid-token")

    async def token_info(self, request: Request) -> Response:
        return self._authenticate(request) or JSONResponse(self._token_info())

    def _token_info(self) -> dict[str, object]:
        service = self.service
        now = service.clock.now()
        cycle_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        cycle_end = (cycle_start + timedelta(days=32)).replace(day=1)
        return {
            "token_id": str(_stable_id("token", service.token)),
            "organization_id": str(
                _stable_id("organization", service.organization_name)
            ),
            "organization_name": service.organization_name,
            "project_id": str(_stable_id("project", service.project_name)),
            "project_name": service.project_name,
            "organization_subscription_plan": "sandbox",
            "expires_at": None,
            "billing_cycle_start": cycle_start.isoformat(),
            "billing_cycle_end": cycle_end.isoformat(),
        }

    async def schemas(self, request: Request) -> Response:
        return self._authenticate(request) or JSONResponse({"tables": _tables()})

    async def counters(self, request: Request) -> Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        if request.method == "DELETE":
            self.service.counters.reset()
        return JSONResponse(dict(self.service.counters.snapshot()))

    async def faults(self, request: Request) -> Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        if request.method == "POST":
            try:
                self.service.faults = FaultPlan.parse(
                    _spec_from_body(await request.body())
                )
            except ValueError as error:
                return _error(422, str(error), request, "invalid-request")
            logger.info("Fault plan replaced: %s", self.service.faults.spec)
        return JSONResponse({"spec": self.service.faults.spec})

    async def clock(self, request: Request) -> Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        clock = self.service.clock
        if request.method == "POST":
            try:
                seconds = _seconds_from_body(await request.body())
                clock.advance(timedelta(seconds=seconds))
            except ValueError as error:
                return _error(422, str(error), request, "invalid-request")
        return JSONResponse({"now": clock.now().isoformat(), "speed": clock.speed})


def _start(
    engine: Engine, query: QueryRequest
) -> tuple[QueryResult, pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
    """Plan the query and pull its first batch, so early failures are a 400."""
    result = engine.execute(query)
    rest = iter(result.batches)
    return result, next(rest, None), rest


def _in_slices(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch], rows: int
) -> tuple[pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
    """The same batches cut into slices of at most `rows` rows, lazily."""
    if first is None or first.num_rows <= rows:
        return first, _slices(rest, rows)
    tail = itertools.chain([first.slice(rows)], rest)
    return first.slice(0, rows), _slices(tail, rows)


def _slices(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for offset in range(0, max(batch.num_rows, 1), rows):
            yield batch.slice(offset, rows)


Chunk = bytes | None
"""A piece of a response body; None means: close the connection now."""


def _body(
    encoder: formats.Encoder,
    first: pa.RecordBatch | None,
    rest: Iterator[pa.RecordBatch],
    fault: str | None,
    counters: Counters,
) -> Iterator[Chunk]:
    """The body chunks of a result, spoiled as a stream fault asks."""
    yield encoder.begin()
    rows = 0
    batch = first
    while batch is not None:
        yield encoder.batch(batch)
        rows += batch.num_rows
        counters.add_rows(batch.num_rows)
        if fault in ("truncate", "ndjson_error"):
            break
        try:
            batch = next(rest, None)
        except QueryFailed as failed:
            logger.warning("A query failed while streaming: %s", failed)
            yield encoder.error(str(failed))
            return

    if fault == "truncate":
        yield encoder.cut()
    elif fault == "ndjson_error":
        yield encoder.error(_MIDSTREAM_ERROR)
    else:
        yield encoder.end(rows)


class _QueryStream(Response):
    """A streamed query result, pulled from the engine in a worker thread."""

    def __init__(
        self,
        body: Iterator[Chunk],
        media_type: str,
        *,
        connections: Connections,
        drop_early: bool,
        on_close: Callable[[], None],
    ) -> None:
        self.body_chunks = body
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers()
        self._connections = connections
        self._drop_early = drop_early
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()
        listener = asyncio.create_task(_watch_disconnect(receive, disconnected))
        try:
            await self._stream(scope, send, disconnected)
        finally:
            listener.cancel()
            self._on_close()

    async def _stream(
        self, scope: Scope, send: Send, disconnected: asyncio.Event
    ) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        )
        async for chunk in iterate_in_threadpool(self.body_chunks):
            if disconnected.is_set():
                return
            if chunk and self._drop_early:
                await _send_body(send, chunk[: max(1, len(chunk) // 2)])
                chunk = None
            if chunk is None:
                await _drop(self._connections, scope, disconnected.wait)
                return
            if chunk:
                await _send_body(send, chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Dropped(Response):
    """No response at all: the connection is closed as soon as the request arrives."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Closing with request bytes unread would reset the connection instead
        # of closing it, and the client would see a send or read error.
        await _read_request(receive)
        await _drop(self._connections, scope, lambda: _until_disconnect(receive))


async def _send_body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _read_request(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    await _until_disconnect(receive)
    disconnected.set()


async def _drop(
    connections: Connections, scope: Scope, noticed: Callable[[], Awaitable[object]]
) -> None:
    """Close the request's connection, then wait until the server has noticed.

    Returning before the server marks the request disconnected would make it
    log an unfinished response.
    """
    connections.close(scope)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DROP_WAIT_SECONDS):
            await noticed()


def parse_query(raw: bytes) -> QueryRequest:
    """Validate a `/v2/query` body the way the real service's pydantic model does.

    Unknown fields are ignored, and so is `include_schema` once checked to be a
    boolean: the schema is always sent.

    Raises:
        InvalidRequestError: with every error found, as pydantic reports them.
    """
    body = _json_body(raw)
    errors: list[dict[str, Any]] = []
    sql = _field(body, "sql", _text, errors, required=True)
    min_timestamp = _field(
        body, "min_timestamp", _aware_datetime, errors, required=True
    )
    max_timestamp = _field(body, "max_timestamp", _aware_datetime, errors)
    limit = _field(body, "limit", _limit, errors)
    timezone = _field(body, "timezone", _text, errors)
    environments = _field(body, "deployment_environment", _environments, errors)
    explain = _field(body, "explain", _boolean, errors)
    _field(body, "include_schema", _boolean, errors)
    if errors:
        raise InvalidRequestError(errors)

    return QueryRequest(
        sql=sql,
        min_timestamp=min_timestamp,
        max_timestamp=max_timestamp,
        limit=DEFAULT_LIMIT if limit is None else limit,
        timezone=timezone,
        environments=environments,
        explain=bool(explain),
    )


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequestError(
            [_problem("missing", ["body"], "Field required", None)]
        )
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        position = getattr(error, "pos", 0)
        reason = getattr(error, "msg", str(error))
        raise InvalidRequestError(
            [
                {
                    **_problem(
                        "json_invalid", ["body", position], "JSON decode error", {}
                    ),
                    "ctx": {"error": reason},
                }
            ]
        ) from None
    if not isinstance(body, dict):
        message = "Input should be a valid dictionary or object to extract fields from"
        raise InvalidRequestError(
            [_problem("model_attributes_type", ["body"], message, body)]
        )
    return body


class _FieldError(Exception):
    def __init__(self, kind: str, message: str, **ctx: object) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.ctx = ctx


def _field(
    body: dict[str, Any],
    name: str,
    parse: Callable[[Any], Any],
    errors: list[dict[str, Any]],
    *,
    required: bool = False,
) -> Any:
    if name not in body:
        if required:
            errors.append(_problem("missing", ["body", name], "Field required", body))
        return None
    value = body[name]
    if value is None and not required:
        return None
    try:
        return parse(value)
    except _FieldError as bad:
        error = _problem(bad.kind, ["body", name], bad.message, value)
        if bad.ctx:
            error["ctx"] = bad.ctx
        errors.append(error)
        return None


def _problem(
    kind: str, loc: list[str | int], message: str, value: object
) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": message, "input": value}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _FieldError("string_type", "Input should be a valid string")
    return value


def _aware_datetime(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _FieldError("datetime_type", "Input should be a valid datetime")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 2e10 else value
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _FieldError(
            "datetime_from_date_parsing",
            "Input should be a valid datetime or date, invalid character in year",
        ) from None
    if parsed.tzinfo is None:
        raise _FieldError("timezone_aware", "Input should have timezone info")
    return parsed


def _limit(value: Any) -> int:
    number = _integer(value)
    if number < 1:
        raise _FieldError(
            "greater_than_equal", "Input should be greater than or equal to 1", ge=1
        )
    if number > MAX_LIMIT:
        raise _FieldError(
            "less_than_equal",
            f"Input should be less than or equal to {MAX_LIMIT}",
            le=MAX_LIMIT,
        )
    return number


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _FieldError("int_type", "Input should be a valid integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise _FieldError(
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _FieldError(
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ) from None
    raise _FieldError("int_type", "Input should be a valid integer")


def _environments(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _FieldError(
        "string_type", "Input should be a valid string or a list of strings"
    )


_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _FieldError(
        "bool_parsing", "Input should be a valid boolean, unable to interpret input"
    )


def split_plans(text: str | None) -> dict[str, str]:
    """The engine's plan text as the three plans the API returns with `explain`.

    The engine writes sections headed by a line naming the plan (`logical_plan`,
    `physical_plan`, ...); text without such headings is used for every plan.
    The sandbox does not time the execution, so `physical_plan_with_metrics` is
    the physical plan.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (text or "").splitlines():
        heading = line.strip().rstrip(":").lower().replace(" ", "_")
        if heading in formats.PLAN_KEYS:
            current = sections.setdefault(heading, [])
        elif current is not None:
            current.append(line)
    plans = {key: "\n".join(lines).strip("\n") for key, lines in sections.items()}
    whole = (text or "").strip("\n")
    logical = plans.get("logical_plan", whole)
    physical = plans.get("physical_plan", whole)
    return {
        "logical_plan": logical,
        "physical_plan": physical,
        "physical_plan_with_metrics": plans.get("physical_plan_with_metrics", physical),
    }


def _wants_problem(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    types = (part.split(";", 1)[0].strip().lower() for part in accept.split(","))
    return PROBLEM_JSON in types


def _error(status: int, detail: Any, request: Request, slug: str) -> Response:
    """An error in the form the client asked for: plain JSON or a problem detail."""
    if not _wants_problem(request):
        return JSONResponse({"detail": detail}, status)
    message = detail if isinstance(detail, str) else _summary(detail)
    problem: dict[str, Any] = {
        "type": _PROBLEM_BASE + slug,
        "title": _title(status),
        "status": status,
        "detail": message,
        "retryable": status >= 500,
        "error_details": {"detail": detail},
    }
    return JSONResponse(problem, status, media_type=PROBLEM_JSON)


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors]
    return "Invalid request: " + "; ".join(parts)


def _title(status: int) -> str:
    return HTTPStatus(status).phrase


def _invalid(errors: list[dict[str, Any]], request: Request) -> Response:
    return _error(422, errors, request, "invalid-request")


def _busy(request: Request) -> Response:
    detail = (
        "Too many queries are running at once for this organization; the query "
        f"waited in the queue and was refused. Retry after {_BUSY_RETRY_AFTER} s."
    )
    return _rate_limited(detail, float(_BUSY_RETRY_AFTER), "too-many-queries")


def _rate_limited(
    detail: str, retry_after: float, slug: str, header: str | None = None
) -> Response:
    problem: dict[str, Any] = {
        "type": _PROBLEM_BASE + slug,
        "title": "Too Many Requests",
        "status": 429,
        "detail": detail,
        "retryable": True,
    }
    if header is None:
        problem["retry_after"] = retry_after
        header = str(math.ceil(retry_after))
    return JSONResponse(
        problem, 429, headers={"retry-after": header}, media_type=PROBLEM_JSON
    )


_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
)


def _fault_response(fault: Fault, request: Request, clock: Clock) -> Response:
    if fault.kind == "429":
        seconds = fault.retry_after_header
        detail = f"Rate limit exceeded for this organization; retry after {seconds} s."
        return _rate_limited(detail, fault.retry_after, "rate-limited")
    if fault.kind == "429date":
        retry_at = clock.now() + timedelta(seconds=fault.retry_after)
        retry_at = retry_at.replace(microsecond=0) + timedelta(seconds=1)
        detail = f"Rate limit exceeded; retry at {http_date(retry_at)}."
        return _rate_limited(
            detail, fault.retry_after, "rate-limited", http_date(retry_at)
        )
    if fault.status == 500:
        return _error(500, "Internal Server Error", request, "internal-error")
    page = _GATEWAY_PAGE.format(status=fault.status, phrase=_title(fault.status))
    return Response(page, fault.status, media_type="text/html")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def _spec_from_body(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    if not text.startswith(("{", '"')):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"The fault body {text!r} is not valid JSON.") from None
    if isinstance(value, dict):
        value = value.get("spec", "")
    if not isinstance(value, str):
        raise ValueError(
            'Send the fault spec as text, a JSON string or {"spec": "..."}.'
        )
    return value


def _seconds_from_body(raw: bytes) -> float:
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        value = value.get("seconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f'Send how far to move the clock as {{"seconds": N}}, not {text!r}.'
        )
    if value < 0:
        raise ValueError(f"The sandbox clock cannot move backwards ({value} s).")
    return float(value)


def _stable_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"logfire-sandbox:{kind}:{name}")


_TABLE_DESCRIPTIONS = {
    "records": "Spans and logs: one row per span, log or span event.",
    "metrics": "Metric data points: gauges, sums and histograms.",
}

_COLUMN_DESCRIPTIONS: Mapping[str, str] = {
    "start_timestamp": "When the span started or the log was emitted (UTC).",
    "end_timestamp": "When the span ended (UTC); equal to the start for logs.",
    "created_at": "When Logfire stored the row (UTC).",
    "recorded_timestamp": "When the data point was recorded (UTC).",
    "day": "The UTC date of the row's timestamp.",
    "trace_id": "The trace's id: 32 lowercase hex characters.",
    "span_id": "The span's id: 16 lowercase hex characters.",
    "parent_span_id": "The parent span's id; null for a root span.",
    "kind": "span, log or span_event.",
    "span_name": "The span's name or the log's message template.",
    "message": "The formatted message.",
    "level": "Severity: trace 1, debug 5, info 9, notice 10, warn 13, error 17.",
    "duration": "The span's duration in seconds; null for logs.",
    "tags": "Tags attached to the record.",
    "attributes": "The record's attributes, as JSON.",
    "service_name": "The service that sent the record.",
    "deployment_environment": "The deployment environment, e.g. prod.",
    "project_id": "The Logfire project the row belongs to.",
    "metric_name": "The metric's name.",
    "metric_type": "gauge, sum, histogram or exponential_histogram.",
    "scalar_value": "The value of a gauge or sum data point.",
}


def _tables() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": _TABLE_DESCRIPTIONS[name],
            "schema": {
                column.name: {
                    "data_type": formats.data_type_json(column.type),
                    "nullable": column.nullable,
                    "description": _COLUMN_DESCRIPTIONS.get(column.name, ""),
                }
                for column in table
            },
        }
        for name, table in schema.TABLES.items()
    ]
