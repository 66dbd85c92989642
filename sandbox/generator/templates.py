"""Trace templates: the shapes of the traces each service produces.

A template is a tree of nodes (spans, logs and span events), each placed within
its parent as shares of the parent's duration. Nodes may repeat, appear only when
the trace fails or succeeds, and raise an exception from `failures.py`. The small
builders (`_span`, `_server`, `_client`, `_log`, `_event`) fill in what each kind
of instrumentation records, so the templates read like the traces they make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["span", "log", "span_event"]
When = Literal["always", "failure", "success"]
KINDS: tuple[Kind, ...] = ("span", "log", "span_event")
WHENS: tuple[When, ...] = ("always", "failure", "success")


@dataclass(frozen=True)
class Http:
    """The HTTP request a span sends or serves."""

    method: str
    host: str
    path: str
    server: bool
    queries: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class Node:
    """One span, log or span event of a template.

    `at` and `length` place it within its parent, as shares of the parent's
    duration; a root's `length` is its typical duration in seconds. A repeated
    node spreads its copies evenly over its place.
    """

    kind: Kind
    name: str
    service: str
    parent: int = -1
    at: float = 0.0
    length: float = 1.0
    level: int = 9
    scope: str = "logfire"
    message: str | None = None
    http: Http | None = None
    repeat: tuple[int, int] = (1, 1)
    when: When = "always"
    raises: str | None = None
    links: bool = False
    extras: bool = True


@dataclass(frozen=True)
class Template:
    """A kind of trace: its share of traces, how often it fails, its nodes."""

    name: str
    weight: float
    failure_rate: float
    nodes: tuple[Node, ...]
    long: bool = False


_HOSTS = {
    "api-gateway": "https://shop.example.com",
    "checkout": "http://checkout.internal:8000",
    "payments": "http://payments.internal:8000",
    "inventory": "http://inventory.internal:8080",
    "frontend": "https://shop.example.com",
}
_SCOPE = {
    "api-gateway": "node-http",
    "inventory": "tracing",
    "frontend": "document-load",
}
_SERVER_SCOPE = {"api-gateway": "node-http", "inventory": "tracing"}
_CLIENT_SCOPE = {
    "api-gateway": "node-http",
    "inventory": "reqwest",
    "frontend": "fetch",
}
"""Which instrumentation records a service's spans, when it is not the default
(`logfire`; `fastapi` for servers, `httpx` for clients)."""


def _span(
    name: str,
    service: str,
    parent: int = -1,
    at: float = 0.0,
    length: float = 1.0,
    **options: Any,
) -> Node:
    """A span; `at` and `length` place it within its parent."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    options.setdefault("extras", options["scope"] == "logfire")
    return Node("span", name, service, parent, at, length, **options)


def _server(
    service: str,
    route: str,
    parent: int = -1,
    at: float = 0.0,
    length: float = 1.0,
    **options: Any,
) -> Node:
    """A span serving an HTTP request, such as `GET /orders/{order_id}`."""
    method, path = route.split(" ", 1)
    queries = options.pop("queries", ("",))
    options.setdefault("scope", _SERVER_SCOPE.get(service, "fastapi"))
    http = Http(method, _HOSTS[service], path, True, queries)
    return _span(route, service, parent, at, length, http=http, **options)


def _client(
    service: str,
    request: str,
    parent: int,
    at: float = 0.0,
    length: float = 1.0,
    **options: Any,
) -> Node:
    """A span sending an HTTP request, such as `GET inventory/products/{sku}`.

    The request names a service (for its host) or a full URL.
    """
    method, target = request.split(" ", 1)
    host, _, path = target.partition("/")
    host = _HOSTS.get(host, host if "://" in host else f"https://{host}")
    queries = options.pop("queries", ("",))
    options.setdefault("scope", _CLIENT_SCOPE.get(service, "httpx"))
    options.setdefault(
        "message", f"{method} {host.split('//')[1].split(':')[0]}/{path}"
    )
    http = Http(method, host, f"/{path}", False, queries)
    return _span(method, service, parent, at, length, http=http, **options)


def _log(
    name: str,
    service: str,
    parent: int = -1,
    at: float = 0.0,
    length: float = 0.02,
    **options: Any,
) -> Node:
    """A log; repeated copies spread over [at, at + length) of the parent."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    return Node("log", name, service, parent, at, length, **options)


def _event(name: str, service: str, parent: int, at: float, **options: Any) -> Node:
    """An event recorded on the span `parent`."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    return Node("span_event", name, service, parent, at, 0.02, extras=False, **options)


_PRODUCT_QUERIES = ("", "", "", "ref=home", "utm_source=newsletter&utm_medium=email")
_SEARCH_QUERIES = (
    "q=th%C3%A9",
    "q=mug&page=2",
    "q=caf%C3%A9&sort=price",
    "q=%E6%9D%B1",
)

_PRODUCT_PAGE = (
    _server(
        "api-gateway", "GET /api/products/{sku}", length=0.09, queries=_PRODUCT_QUERIES
    ),
    _client("api-gateway", "GET inventory/products/{sku}", 0, 0.05, 0.85),
    _server("inventory", "GET /products/{sku}", 1, 0.05, 0.9),
    _span("cache lookup {sku}", "inventory", 2, 0.0, 0.05, level=1),
    _span(
        "SELECT products",
        "inventory",
        2,
        0.1,
        0.6,
        level=5,
        scope="sqlx",
        raises="pool_timeout",
    ),
    _log("Cache miss for product {sku}", "inventory", 2, 0.06, level=5),
    _log(
        "Product {sku} served in {duration_ms} ms",
        "api-gateway",
        0,
        0.96,
        when="success",
    ),
)

_SEARCH = (
    _server("api-gateway", "GET /api/search", length=0.2, queries=_SEARCH_QUERIES),
    _client(
        "api-gateway", "GET inventory/search", 0, 0.05, 0.9, queries=_SEARCH_QUERIES
    ),
    _server("inventory", "GET /search", 1, 0.05, 0.9, queries=_SEARCH_QUERIES),
    _span(
        "SELECT products",
        "inventory",
        2,
        0.1,
        0.8,
        level=5,
        scope="sqlx",
        raises="pool_timeout",
    ),
    _log("Search returned {count} products", "inventory", 2, 0.95, when="success"),
)

_ORDER_STATUS = (
    _server(
        "api-gateway",
        "GET /api/orders/{order_id}",
        length=0.12,
        queries=("", "include=items"),
    ),
    _client("api-gateway", "GET checkout/orders/{order_id}", 0, 0.05, 0.9),
    _server("checkout", "GET /orders/{order_id}", 1, 0.05, 0.9),
    _span(
        "SELECT orders",
        "checkout",
        2,
        0.1,
        0.4,
        scope="sqlalchemy",
        raises="db_connection",
    ),
    _log(
        "Order {order_id} loaded for user {id}",
        "checkout",
        2,
        0.6,
        level=5,
        when="success",
    ),
)

_CHECKOUT = (
    _server("api-gateway", "POST /api/checkout", length=0.9),
    _client("api-gateway", "POST checkout/checkout", 0, 0.02, 0.96),
    _server("checkout", "POST /checkout", 1, 0.02, 0.96),
    _span("validate cart {cart_id}", "checkout", 2, 0.02, 0.08),
    _log("Cart {cart_id} holds {count} items", "checkout", 3, 0.5),
    _span("reserve stock for {count} items", "checkout", 2, 0.12, 0.2),
    _client("checkout", "POST inventory/reservations", 5, 0.05, 0.9),
    _server("inventory", "POST /reservations", 6, 0.05, 0.9),
    _span("UPDATE stock", "inventory", 7, 0.1, 0.7, level=5, scope="sqlx"),
    _span("charge {amount} EUR", "checkout", 2, 0.35, 0.5),
    _client("checkout", "POST payments/charges", 9, 0.02, 0.96),
    _server("payments", "POST /charges", 10, 0.02, 0.96),
    _span(
        "charge card via {provider}", "payments", 11, 0.1, 0.8, raises="card_declined"
    ),
    _event("fraud check passed", "payments", 12, 0.3, when="success"),
    _log(
        "Charged {amount} EUR with {card_brand}", "payments", 11, 0.92, when="success"
    ),
    _log(
        "Payment declined by {provider}", "payments", 11, 0.95, level=13, when="failure"
    ),
    _log("Order {order_id} placed", "checkout", 2, 0.9, level=10, when="success"),
    _event("order.created", "checkout", 2, 0.91, when="success"),
    _log(
        "Checkout failed for cart {cart_id}",
        "checkout",
        2,
        0.95,
        level=17,
        when="failure",
        raises="card_declined",
    ),
)

_PAGE_LOAD = (
    _span(
        "documentLoad",
        "frontend",
        length=1.8,
        message="documentLoad {path}",
        http=Http("GET", _HOSTS["frontend"], "{path}", False),
    ),
    _span("documentFetch", "frontend", 0, 0.0, 0.2),
    _span(
        "resourceFetch",
        "frontend",
        0,
        0.22,
        0.4,
        repeat=(3, 12),
        message="resourceFetch {resource}",
    ),
    _client("frontend", "GET api-gateway/api/products/{sku}", 0, 0.62, 0.33),
    _server("api-gateway", "GET /api/products/{sku}", 3, 0.1, 0.8),
    _log("Rendered {path} in {duration_ms} ms", "frontend", 0, 0.97, when="success"),
    _log(
        "Unhandled error on {path}",
        "frontend",
        0,
        0.97,
        level=17,
        when="failure",
        raises="js_type",
    ),
)

_EMAIL_TASK = (
    _span("run send_email", "worker", length=0.5, scope="celery", links=True),
    _span("render template {template}", "worker", 0, 0.05, 0.2, raises="key_error"),
    _span("send email to {email}", "worker", 0, 0.3, 0.65, raises="smtp"),
    _event("retry attempt {attempt}", "worker", 2, 0.4, level=13, when="failure"),
    _log("Email {template} sent to {email}", "worker", 0, 0.97, when="success"),
)

_CATALOGUE_IMPORT = (
    _span("import catalogue {file}", "worker", length=2.5, scope="celery", links=True),
    _span("download {file}", "worker", 0, 0.0, 0.12),
    _log(
        "Imported product {sku}",
        "worker",
        0,
        0.15,
        0.8,
        level=5,
        repeat=(50, 400),
        extras=False,
    ),
    _span("COMMIT", "worker", 0, 0.955, 0.04, scope="sqlalchemy", raises="integrity"),
    _log(
        "Import of {file} finished with {count} rows",
        "worker",
        0,
        0.975,
        level=10,
        when="success",
    ),
)

_STOCK_SYNC = (
    _span("sync supplier stock", "inventory", length=3.0),
    _client(
        "inventory",
        "GET supplier.example.net/feed.json",
        0,
        0.02,
        0.5,
        raises="supplier",
    ),
    _span(
        "UPDATE stock", "inventory", 0, 0.55, 0.4, level=5, scope="sqlx", repeat=(1, 4)
    ),
    _log(
        "Synced {count} products from the supplier",
        "inventory",
        0,
        0.98,
        when="success",
    ),
    _log("Supplier feed unavailable", "inventory", 0, 0.6, level=13, when="failure"),
)

_REFUND_WEBHOOK = (
    _server("payments", "POST /webhooks/{provider}", length=0.15),
    _span("verify signature", "payments", 0, 0.05, 0.1, level=5),
    _span("record refund of {amount} EUR", "payments", 0, 0.2, 0.6, raises="integrity"),
    _event("refund.recorded", "payments", 2, 0.9, when="success"),
    _log("Refund for order {order_id} recorded", "payments", 0, 0.9, when="success"),
)

_BATCH_JOB = (
    _span("batch job {job}", "worker", scope="celery"),
    _span("process shard {shard}", "worker", 0, 0.01, 0.97, repeat=(4, 16)),
    _log(
        "Shard {shard} processed: {count} rows", "worker", 0, 0.02, 0.97, repeat=(4, 16)
    ),
    _log("Batch job {job} finished", "worker", 0, 0.975, level=10, when="success"),
    _log(
        "Batch job {job} failed",
        "worker",
        0,
        0.975,
        level=17,
        when="failure",
        raises="db_connection",
    ),
)


def trace_templates() -> tuple[Template, ...]:
    """Every kind of trace, with its share of traces and how often it fails.

    A root's `length` is its typical duration in seconds; `long` templates (batch
    jobs) run for hours instead, as `traces.draw_traces` draws them.
    """
    return (
        Template("product page", 22, 0.02, _PRODUCT_PAGE),
        Template("search", 6, 0.01, _SEARCH),
        Template("order status", 10, 0.02, _ORDER_STATUS),
        Template("checkout", 7, 0.06, _CHECKOUT),
        Template("page load", 8, 0.03, _PAGE_LOAD),
        Template("email task", 6, 0.04, _EMAIL_TASK),
        Template("catalogue import", 0.25, 0.05, _CATALOGUE_IMPORT),
        Template("stock sync", 4, 0.05, _STOCK_SYNC),
        Template("refund webhook", 4, 0.1, _REFUND_WEBHOOK),
        Template("batch job", 0.5, 0.1, _BATCH_JOB, long=True),
        Template(
            "health check",
            10,
            0.0,
            (_server("api-gateway", "GET /healthz", length=0.002),),
        ),
        Template(
            "cache miss", 8, 0.0, (_log("Cache miss for {key}", "checkout", level=5),)
        ),
        Template(
            "webhook", 3, 0.0, (_log("Webhook from {provider} received", "payments"),)
        ),
        Template(
            "low stock",
            2,
            0.0,
            (_log("Stock low for {sku}: {count} left", "inventory", level=13),),
        ),
        Template(
            "heartbeat",
            6,
            0.0,
            (_log("Heartbeat from {worker}", "worker", level=1, extras=False),),
        ),
        Template(
            "deprecation",
            1.5,
            0.0,
            (_log("Deprecated page {path} requested", "api-gateway", level=13),),
        ),
        Template(
            "out of memory",
            0.2,
            1.0,
            (
                _log(
                    "Worker {worker} ran out of memory",
                    "worker",
                    level=21,
                    raises="memory",
                ),
            ),
        ),
    )
