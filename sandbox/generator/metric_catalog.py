"""The metrics each service exports, of all four types, and their series.

A metric has a few attribute sets; each service that exports it sends one point
per attribute set (a series) in every export. The catalog renders each metric's
and each series' text once, and lists the series of every service in a run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from sandbox.generator.columns import text_array
from sandbox.generator.services import SCOPES, SERVICES
from sandbox.generator.typing import I64, Bool

MetricType = Literal["gauge", "sum", "histogram", "exponential_histogram"]
_METRIC_TYPES: tuple[MetricType, ...] = (
    "gauge",
    "sum",
    "histogram",
    "exponential_histogram",
)
GAUGE, SUM, HISTOGRAM, EXPONENTIAL = range(4)
"""The metric types as numbers, in the order of `MetricType`."""

_PYTHON = ("checkout", "payments", "worker")
_DEFAULT_BOUNDS = (
    0,
    5,
    10,
    25,
    50,
    75,
    100,
    250,
    500,
    750,
    1000,
    2500,
    5000,
    7500,
    10000,
)
_SECONDS_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ROUTES = (
    {
        "http.method": "GET",
        "http.route": "/api/products/{sku}",
        "http.status_code": 200,
    },
    {"http.method": "POST", "http.route": "/api/checkout", "http.status_code": 201},
    {
        "http.method": "GET",
        "http.route": "/api/orders/{order_id}",
        "http.status_code": 404,
    },
)


@dataclass(frozen=True)
class Metric:
    """One metric: its type, who exports it, and what its points look like."""

    name: str
    type: MetricType
    unit: str
    description: str | None
    services: tuple[str, ...]
    attributes: tuple[dict[str, object], ...]
    scope: str = "system-metrics"
    temporality: Literal["delta", "cumulative"] | None = None
    monotonic: bool | None = None
    value: float = 1.0
    """A gauge's typical value, a sum's rate per second, or a histogram's
    observations per second."""
    bounds: tuple[float, ...] = ()
    median: float = 1.0
    scale: int = 3
    negative: bool = False


METRICS = (
    Metric(
        "nodejs.eventloop.utilization",
        "gauge",
        "1",
        "Event loop utilization",
        ("api-gateway",),
        ({},),
        scope="node-runtime",
        value=0.2,
    ),
    Metric(
        "process.runtime.cpython.memory",
        "gauge",
        "By",
        "Runtime cpython memory",
        _PYTHON,
        ({"type": "rss"}, {"type": "vms"}),
        value=2.4e8,
    ),
    Metric(
        "system.cpu.utilization",
        "gauge",
        "1",
        "System CPU utilization",
        _PYTHON,
        ({"cpu": 0, "state": "user"}, {"cpu": 1, "state": "system"}),
        value=0.3,
    ),
    Metric(
        "queue.depth",
        "gauge",
        "{message}",
        "Messages waiting in a queue",
        ("worker",),
        ({"queue": "emails"}, {"queue": "imports 📦"}),
        scope="shop-metrics",
        value=40.0,
    ),
    Metric(
        "browser.memory.used",
        "gauge",
        "By",
        None,
        ("frontend",),
        ({"page": "/checkout"}, {"page": "/café"}),
        scope="shop-metrics",
        value=5e7,
    ),
    Metric(
        "process.runtime.cpython.gc_count",
        "sum",
        "{count}",
        "Runtime cpython GC count",
        _PYTHON,
        ({"count": "0"}, {"count": "1"}, {"count": "2"}),
        temporality="cumulative",
        monotonic=True,
        value=2.0,
    ),
    Metric(
        "http.server.active_requests",
        "sum",
        "{request}",
        "Number of active HTTP server requests.",
        ("checkout", "payments"),
        (
            {"http.method": "GET", "http.scheme": "http"},
            {"http.method": "POST", "http.scheme": "http"},
        ),
        scope="fastapi",
        temporality="cumulative",
        monotonic=False,
        value=12.0,
    ),
    Metric(
        "orders.placed",
        "sum",
        "{order}",
        "Orders placed, by payment provider",
        ("checkout",),
        ({"provider": "stripe"}, {"provider": "adyen"}, {"provider": "paypal"}),
        scope="shop-metrics",
        temporality="delta",
        monotonic=True,
        value=0.5,
    ),
    Metric(
        "inventory.stock.reserved",
        "sum",
        "{item}",
        None,
        ("inventory",),
        ({"warehouse": "paris"}, {"warehouse": "東京"}),
        scope="shop-metrics",
        temporality="cumulative",
        monotonic=False,
        value=300.0,
    ),
    Metric(
        "http.server.duration",
        "histogram",
        "ms",
        "Measures the duration of inbound HTTP requests.",
        ("checkout", "payments"),
        _ROUTES,
        scope="fastapi",
        temporality="cumulative",
        value=3.0,
        bounds=_DEFAULT_BOUNDS,
        median=45.0,
    ),
    Metric(
        "http.client.duration",
        "histogram",
        "ms",
        "Measures the duration of outbound HTTP requests.",
        ("checkout", "worker"),
        (
            {"http.method": "POST", "net.peer.name": "payments.internal"},
            {"http.method": "GET", "net.peer.name": "inventory.internal"},
        ),
        scope="httpx",
        temporality="cumulative",
        value=1.5,
        bounds=_DEFAULT_BOUNDS,
        median=80.0,
    ),
    Metric(
        "db.client.operation.duration",
        "histogram",
        "s",
        "Duration of database client operations.",
        ("checkout", "payments"),
        (
            {"db.system": "postgresql", "db.operation.name": "SELECT"},
            {"db.system": "postgresql", "db.operation.name": "UPDATE"},
        ),
        scope="sqlalchemy",
        temporality="delta",
        value=8.0,
        bounds=_SECONDS_BOUNDS,
        median=0.02,
    ),
    Metric(
        "http.server.request.duration",
        "exponential_histogram",
        "s",
        "Duration of HTTP server requests.",
        ("api-gateway", "inventory"),
        (
            {"http.request.method": "GET", "http.route": "/products/{sku}"},
            {"http.request.method": "POST", "http.route": "/reservations"},
        ),
        scope="shop-metrics",
        temporality="delta",
        value=4.0,
        median=0.05,
        scale=3,
    ),
    Metric(
        "worker.task.duration",
        "exponential_histogram",
        "s",
        "How long tasks run",
        ("worker",),
        ({"task": "send_email"}, {"task": "import_catalogue"}),
        scope="shop-metrics",
        temporality="cumulative",
        value=0.2,
        median=2.0,
        scale=2,
    ),
    Metric(
        "payments.balance.change",
        "exponential_histogram",
        "EUR",
        "Charges (positive) and refunds (negative)",
        ("payments",),
        ({"currency": "EUR", "provider": "stripe"},),
        scope="shop-metrics",
        temporality="delta",
        value=0.6,
        median=40.0,
        scale=1,
        negative=True,
    ),
)


@dataclass(frozen=True)
class MetricCatalog:
    """The metric definitions and their series, compiled for vectorised use."""

    type: I64
    cumulative: Bool
    name: pa.Array
    type_text: pa.Array
    unit: pa.Array
    description: pa.Array
    temporality: pa.Array
    monotonic: pa.Array
    scope_name: pa.Array
    scope_version: pa.Array
    series_metric: I64
    series_attributes: pa.Array
    series_schema: pa.Array
    service_first: I64
    service_series: I64


@functools.cache
def metric_catalog() -> MetricCatalog:
    """Every metric and series, compiled once."""
    series_metric: list[int] = []
    attributes: list[str] = []
    schemas: list[str] = []
    service_first, service_series = [], []
    for service in SERVICES:
        service_first.append(len(series_metric))
        for m_index, metric in enumerate(METRICS):
            if service.name not in metric.services:
                continue
            for attrs in metric.attributes:
                series_metric.append(m_index)
                attributes.append(json.dumps(attrs, ensure_ascii=False))
                properties: dict[str, object] = {key: {} for key in attrs}
                schemas.append(json.dumps({"type": "object", "properties": properties}))
        service_series.append(len(series_metric) - service_first[-1])

    def texts(values: Sequence[str | None]) -> pa.Array:
        return text_array(values)

    return MetricCatalog(
        type=np.array([_METRIC_TYPES.index(m.type) for m in METRICS], dtype=np.int64),
        cumulative=np.array([m.temporality == "cumulative" for m in METRICS]),
        name=texts([m.name for m in METRICS]),
        type_text=texts([m.type for m in METRICS]),
        unit=texts([m.unit for m in METRICS]),
        description=texts([m.description for m in METRICS]),
        temporality=texts([m.temporality for m in METRICS]),
        monotonic=pa.array([m.monotonic for m in METRICS], type=pa.bool_()),
        scope_name=texts([SCOPES[m.scope][0] for m in METRICS]),
        scope_version=texts([SCOPES[m.scope][1] for m in METRICS]),
        series_metric=np.array(series_metric, dtype=np.int64),
        series_attributes=texts(attributes),
        series_schema=texts(schemas),
        service_first=np.array(service_first, dtype=np.int64),
        service_series=np.array(service_series, dtype=np.int64),
    )
