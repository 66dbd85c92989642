"""Synthetic telemetry shaped like what Logfire stores.

Records are traces of nested spans, logs and span events from a handful of
services; metrics are points of all four metric types. Everything is built over
whole columns with numpy and Arrow compute, from small vocabularies of
pre-rendered text, so millions of rows take seconds.

Timing follows Logfire's storage rules. A span is stored (`created_at`) a few
seconds after it ends, some minutes later, and long batch jobs hours after they
began. Spans and logs leave a service in export batches whose rows share one
`created_at`; span events are stored with their span. A few browsers' clocks run
ahead of the server. For every row `created_at - 24 h <= start_timestamp <=
created_at + 1 h`, and `_visible_at` falls within 5 minutes after `created_at`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sandbox import schema

_I64 = npt.NDArray[np.int64]
_U64 = npt.NDArray[np.uint64]
_F64 = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]

_SECOND = 1_000_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

_EXPORT_WINDOW = 5 * _SECOND
"""How often an SDK flushes its export queue (OpenTelemetry's default)."""

_EXPORT_BATCH_MAX = 512
"""The most rows one export carries (OpenTelemetry's default)."""

_LONG_JOB_HOURS = (1.2, 20.0)
"""How long a batch job runs: long enough to be stored hours after it began, short
enough that it is stored within the 24 hours Logfire accepts."""

_SKEWED_ROW_SHARE = 0.002
"""The share of records written by a browser whose clock runs ahead."""

_SKEW_MINUTES = (1.0, 50.0)

_CHUNK_ROWS = 250_000
"""Rows per record batch: bounds string buffers and lets chunks build in parallel."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_RECORDS_STORED = schema.RECORDS.append(
    pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, nullable=False)
)
_METRICS_STORED = schema.METRICS.append(
    pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, nullable=False)
)


def generate_records(
    n: int, *, seed: int, start: datetime, end: datetime, project_id: str = "sandbox"
) -> pa.Table:
    """Generate `n` rows of the `records` table.

    Args:
        n: how many rows; the last trace is cut short to make the count exact.
        seed: the same seed gives the same table.
        start: the earliest start of a trace's root span (tz-aware).
        end: root spans start before this (tz-aware); rows may be stored later.
        project_id: the value of the `project_id` column.

    Returns:
        The rows, in `created_at` order, with the `records` schema plus
        `_visible_at`. Spans from browsers with a fast clock may start up to 50
        minutes after `end`.

    Raises:
        ValueError: `n` or `seed` is negative, or the time range is empty or naive.
    """
    lo, hi = _check_arguments(n, seed, start, end)
    if n == 0:
        return _RECORDS_STORED.empty_table()

    rng = np.random.Generator(np.random.PCG64(seed))
    plan = _plan_records(rng, n, lo, hi)
    return _build_table(n, _RECORDS_STORED, lambda a, b: plan.batch(a, b, project_id))


def generate_metrics(
    n: int, *, seed: int, start: datetime, end: datetime, project_id: str = "sandbox"
) -> pa.Table:
    """Generate `n` rows of the `metrics` table.

    Args:
        n: how many metric points; the last export batch is cut short if needed.
        seed: the same seed gives the same table.
        start: the earliest `recorded_timestamp` of an export (tz-aware).
        end: exports are recorded before this (tz-aware); skewed clients aside.
        project_id: the value of the `project_id` column.

    Returns:
        The points, in `created_at` order, with the `metrics` schema plus
        `_visible_at`.

    Raises:
        ValueError: `n` or `seed` is negative, or the time range is empty or naive.
    """
    lo, hi = _check_arguments(n, seed, start, end)
    if n == 0:
        return _METRICS_STORED.empty_table()

    rng = np.random.Generator(np.random.PCG64(seed))
    plan = _plan_metrics(rng, n, lo, hi)
    return _build_table(n, _METRICS_STORED, lambda a, b: plan.batch(a, b, project_id))


def _check_arguments(
    n: int, seed: int, start: datetime, end: datetime
) -> tuple[int, int]:
    if n < 0:
        raise ValueError(f"The row count must be zero or more, not {n}.")
    if seed < 0:
        raise ValueError(f"The seed must be zero or more, not {seed}.")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(
            f"The time range {start} to {end} must be time-zone aware; "
            "pass datetimes with a tzinfo such as UTC."
        )
    lo, hi = _micros(start), _micros(end)
    if hi <= lo:
        raise ValueError(f"The time range must end after it starts: {start} to {end}.")
    return lo, hi


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _SECOND + delta.microseconds


def _build_table(
    n: int, target: pa.Schema, batch: Callable[[int, int], pa.RecordBatch]
) -> pa.Table:
    """Build the table chunk by chunk, on every core; chunks draw no randomness."""
    bounds = [(a, min(a + _CHUNK_ROWS, n)) for a in range(0, n, _CHUNK_ROWS)]
    if len(bounds) == 1:
        return pa.Table.from_batches([batch(0, n)], schema=target)

    workers = min(len(bounds), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = list(pool.map(lambda ab: batch(*ab), bounds))
    return pa.Table.from_batches(batches, schema=target)


# ---------------------------------------------------------------------------
# Column helpers shared by both tables.

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex(words: _U64) -> pa.Array:
    """Lowercase hex text of each row of 64-bit words, 16 characters a word."""
    rows = np.ascontiguousarray(words.reshape(len(words), -1), dtype=">u8")
    raw = rows.view(np.uint8).reshape(len(rows), -1)

    chars = np.empty((len(raw), raw.shape[1] * 2), dtype=np.uint8)
    chars[:, 0::2] = _HEX_DIGITS[raw >> 4]
    chars[:, 1::2] = _HEX_DIGITS[raw & 15]

    width = chars.shape[1]
    offsets = np.arange(0, (len(raw) + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        len(raw), pa.py_buffer(offsets), pa.py_buffer(chars)
    )


def _take(vocabulary: pa.Array, index: npt.NDArray[Any]) -> pa.Array:
    """The vocabulary entries at `index`, a null wherever `index` is negative."""
    if index.size and index.min() < 0:
        return pc.take(vocabulary, pa.array(index, mask=index < 0))
    return pc.take(vocabulary, pa.array(index))


def _join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate text columns row by row; a null part makes a null row."""
    return pc.binary_join_element_wise(*parts, "")


def _scatter(values: pa.Array, mask: _Bool) -> pa.Array:
    """Spread `values` (one per true entry of `mask`) over all rows, nulls between."""
    index = np.cumsum(mask, dtype=np.int64) - 1
    return pc.take(values, pa.array(index, mask=~mask))


def _timestamps(micros: _I64) -> pa.Array:
    return pa.array(micros, type=schema.TIMESTAMP)


def _days(micros: _I64) -> pa.Array:
    return pa.array((micros // _DAY).astype(np.int32), type=pa.date32())


def _text_array(values: Sequence[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _ingest_delays(rng: np.random.Generator, count: int) -> _I64:
    """How long an export takes to be stored: seconds, now and then minutes."""
    seconds = rng.uniform(0.5, 6.0, count)
    late = rng.random(count) < 0.03
    seconds[late] = rng.uniform(60.0, 900.0, int(late.sum()))
    return (seconds * _SECOND).astype(np.int64)


def _visibility_delays(rng: np.random.Generator, count: int) -> _I64:
    """How long a stored row takes to show in queries, always under 5 minutes."""
    draw = rng.random(count)
    seconds = rng.uniform(0.1, 5.0, count)
    slow = draw >= 0.9
    seconds[slow] = rng.uniform(5.0, 60.0, int(slow.sum()))
    slowest = draw >= 0.99
    seconds[slowest] = rng.uniform(60.0, 290.0, int(slowest.sum()))
    return (seconds * _SECOND).astype(np.int64)


def _skews(rng: np.random.Generator, count: int, share: float) -> _I64:
    """How far each unit's clock runs ahead: zero for all but `share` of them."""
    skewed = rng.random(count) < share
    minutes = rng.uniform(*_SKEW_MINUTES, count)
    return np.where(skewed, (minutes * _MINUTE).astype(np.int64), 0)


def _export_batches(source: _I64, ready: _I64) -> tuple[_I64, _I64]:
    """Group rows into exports as an SDK's batch processor would.

    Each source (a service instance) flushes every 5 seconds, at most 512 rows at
    a time. Returns each row's export number and each export's flush time.
    """
    phase = (source * 1_234_577) % _EXPORT_WINDOW
    window = (ready + phase) // _EXPORT_WINDOW
    window_span = int(window.max() - window.min()) + 1
    key = source * window_span + (window - window.min())
    order = np.argsort(key, kind="stable")

    sorted_key = key[order]
    first = np.ones(len(key), dtype=np.bool_)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    group_start = np.flatnonzero(first)
    rank = np.arange(len(key)) - group_start[np.cumsum(first) - 1]
    opens = rank % _EXPORT_BATCH_MAX == 0

    batch = np.empty(len(key), dtype=np.int64)
    batch[order] = np.cumsum(opens) - 1
    opening = order[opens]
    flush = (window[opening] + 1) * _EXPORT_WINDOW - phase[opening]
    return batch, flush.astype(np.int64)


# ---------------------------------------------------------------------------
# Services and the processes that run them.


@dataclass(frozen=True)
class _Service:
    name: str
    namespace: str
    version: str
    language: str
    sdk_version: str
    module: str


_SERVICES = (
    _Service("api-gateway", "shop", "3.8.2", "nodejs", "2.0.1", "src/routes"),
    _Service("checkout", "shop", "1.42.0", "python", "1.38.0", "checkout/service"),
    _Service("payments", "billing", "2.7.1", "python", "1.38.0", "payments/charges"),
    _Service("inventory", "shop", "0.19.4", "rust", "0.30.0", "src/handlers"),
    _Service("worker", "billing", "1.42.0", "python", "1.38.0", "worker/tasks"),
    _Service("frontend", "shop", "2026.5.3", "webjs", "2.0.1", "src/app"),
)
_SERVICE_INDEX = {service.name: i for i, service in enumerate(_SERVICES)}
_ENVIRONMENTS: tuple[str | None, ...] = ("prod", "staging", "dev", None)
_ENVIRONMENT_WEIGHTS = (0.6, 0.2, 0.1, 0.1)
_REPLICAS = 2


def _instance_index(service: _I64, environment: _I64, replica: _I64) -> _I64:
    return (service * len(_ENVIRONMENTS) + environment) * _REPLICAS + replica


@dataclass(frozen=True)
class _Instances:
    """Columns describing each process, indexed by `_instance_index`."""

    service_name: pa.Array
    namespace: pa.Array
    version: pa.Array
    instance_id: pa.Array
    sdk_name: pa.Array
    sdk_language: pa.Array
    sdk_version: pa.Array
    environment: pa.Array
    resource: pa.Array
    pid: pa.Array


@functools.cache
def _instances() -> _Instances:
    rows: list[dict[str, Any]] = []
    for service in _SERVICES:
        for environment in _ENVIRONMENTS:
            for replica in range(_REPLICAS):
                rows.append(_describe_instance(service, environment, replica))

    def text(key: str) -> pa.Array:
        return _text_array([row[key] for row in rows])

    return _Instances(
        service_name=text("service_name"),
        namespace=text("namespace"),
        version=text("version"),
        instance_id=text("instance_id"),
        sdk_name=text("sdk_name"),
        sdk_language=text("sdk_language"),
        sdk_version=text("sdk_version"),
        environment=text("environment"),
        resource=text("resource"),
        pid=pa.array([row["pid"] for row in rows], type=pa.int32()),
    )


def _describe_instance(
    service: _Service, environment: str | None, replica: int
) -> dict[str, Any]:
    digest = hashlib.sha256(f"{service.name}/{environment}/{replica}".encode()).digest()
    hexed = digest.hex()
    instance_id = "-".join(
        (hexed[:8], hexed[8:12], "4" + hexed[13:16], "8" + hexed[17:20], hexed[20:32])
    )
    browser = service.language == "webjs"
    pid = None if browser else 1000 + int.from_bytes(digest[16:18], "big") % 60_000
    version = {
        "staging": f"{service.version}-rc.1",
        "dev": f"{service.version}+dev.{hexed[40:47]}",
    }.get(environment or "", service.version)

    resource: dict[str, object] = {
        "service.name": service.name,
        "service.namespace": service.namespace,
        "service.version": version,
        "service.instance.id": instance_id,
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": service.language,
        "telemetry.sdk.version": service.sdk_version,
    }
    if environment is not None:
        resource["deployment.environment.name"] = environment
    if browser:
        resource["browser.language"] = ("fr-FR", "ja-JP")[replica]
        resource["browser.platform"] = ("macOS", "Windows")[replica]
    else:
        resource["process.pid"] = pid
        resource["host.name"] = f"{service.name}-{hexed[48:53]}-{hexed[53:58]}"

    return {
        "service_name": service.name,
        "namespace": service.namespace,
        "version": version,
        "instance_id": instance_id,
        "sdk_name": "opentelemetry",
        "sdk_language": service.language,
        "sdk_version": service.sdk_version,
        "environment": environment,
        "resource": json.dumps(resource, ensure_ascii=False),
        "pid": pid,
    }


_SCOPES: dict[str, tuple[str, str | None]] = {
    "logfire": ("logfire", "5.4.0"),
    "fastapi": ("opentelemetry.instrumentation.fastapi", "0.59b0"),
    "httpx": ("opentelemetry.instrumentation.httpx", "0.59b0"),
    "sqlalchemy": ("opentelemetry.instrumentation.sqlalchemy", "0.59b0"),
    "celery": ("opentelemetry.instrumentation.celery", "0.59b0"),
    "node-http": ("@opentelemetry/instrumentation-http", "0.203.0"),
    "fetch": ("@opentelemetry/instrumentation-fetch", "0.203.0"),
    "document-load": ("@opentelemetry/instrumentation-document-load", "0.48.0"),
    "tracing": ("tracing-opentelemetry", "0.31.0"),
    "sqlx": ("sqlx", None),
    "reqwest": ("reqwest-tracing", "0.5.8"),
    "system-metrics": ("opentelemetry.instrumentation.system_metrics", "0.59b0"),
    "node-runtime": ("@opentelemetry/instrumentation-runtime-node", "0.17.0"),
    "shop-metrics": ("shop.metrics", "1.0.0"),
}


# ---------------------------------------------------------------------------
# Values that fill message templates, and extra attributes.


def _param_values() -> dict[str, Sequence[int | float | str]]:
    sku = [
        f"{kind}-{i:04d}" for kind in ("CAF", "TEA", "MUG", "BAG") for i in range(500)
    ]
    return {
        "id": list(range(1, 50_000)),
        "order_id": list(range(100_000, 160_000)),
        "sku": sku,
        "cart_id": [f"c_{(i * 2_654_435_761) % 16**6:06x}" for i in range(4096)],
        "count": list(range(1, 60)),
        "amount": [round(0.5 + 1.37 * i, 2) for i in range(1500)],
        "duration_ms": [round(0.4 + 0.731 * i, 1) for i in range(2000)],
        "card_brand": ["visa", "mastercard", "amex", "carte_bancaire"],
        "provider": ["stripe", "adyen", "paypal"],
        "key": [f"user:{i}" for i in range(300)]
        + [f"product:{s}" for s in sku[::20]]
        + ["session:ünïcødé", "ключ:42", "キー:東京"],
        "worker": [f"worker-{i}" for i in range(1, 9)],
        "template": [
            "order_confirmation",
            "password_reset",
            "shipping_update",
            "bienvenue_café",
            "ご注文確認",
        ],
        "email": [
            "zoë@example.com",
            "taro@例え.jp",
            "ana.souza@example.org",
            "mike+orders@example.com",
            "renée@café.fr",
        ],
        "file": [
            "catalogue-2026-05.csv",
            "stock_東京.csv",
            "feed 🚚.json",
            'prices "EU".csv',
        ],
        "shard": list(range(64)),
        "job": ["nightly-reconciliation", "ledger-export", "search-reindex"],
        "path": ["/", "/products", "/cart", "/checkout", "/account/orders", "/café"],
        "resource": [
            "https://cdn.example.com/app.3f9a2c.js",
            "https://cdn.example.com/app.3f9a2c.css",
            "https://cdn.example.com/fonts/inter.woff2",
            "https://cdn.example.com/img/hero@2x.webp",
            "https://www.googletagmanager.com/gtag/js",
        ],
        "attempt": list(range(1, 6)),
    }


def _render_value(value: int | float | str) -> tuple[str, str, str]:
    """A value as message text, as JSON, and escaped to sit inside a JSON string."""
    if isinstance(value, str):
        encoded = json.dumps(value, ensure_ascii=False)
        return value, encoded, encoded[1:-1]
    if isinstance(value, float):
        text = f"{value:.2f}"
        return text, text, text
    return str(value), str(value), str(value)


@dataclass(frozen=True)
class _Params:
    """Every template parameter value; entry 0 is the empty value."""

    text: pa.Array
    json: pa.Array
    escaped: pa.Array
    code: dict[str, int]
    base: _I64
    size: _I64


@functools.cache
def _params() -> _Params:
    text, encoded, escaped = [""], [""], [""]
    code: dict[str, int] = {}
    base: list[int] = []
    size: list[int] = []
    for name, values in _param_values().items():
        code[name] = len(base)
        base.append(len(text))
        size.append(len(values))
        for value in values:
            a, b, c = _render_value(value)
            text.append(a)
            encoded.append(b)
            escaped.append(c)
    return _Params(
        text=_text_array(text),
        json=_text_array(encoded),
        escaped=_text_array(escaped),
        code=code,
        base=np.array(base, dtype=np.int64),
        size=np.array(size, dtype=np.int64),
    )


_EXTRA_POOLS: tuple[tuple[float, tuple[tuple[str, object], ...]], ...] = (
    (
        0.3,
        (
            ("user", {"id": 42, "name": "Zoë", "city": "東京", "vip": True}),
            ("user", {"id": 7, "name": "José", "roles": ["admin", "support"]}),
            ("user", {"id": 1001, "name": "Anaïs", "city": "Montréal", "vip": None}),
            ("user", None),
            ("customer", {"country": "FR", "segment": "cafés ☕", "ltv": 1234.5}),
            ("customer", {"country": "JP", "segment": "小売", "ltv": 0}),
            ("tenant", "acme-corp"),
        ),
    ),
    (
        0.35,
        (
            ("latency_ms", 12.5),
            ("latency_ms", 0.031),
            ("retries", 0),
            ("retries", 3),
            ("cache", {"hit": True, "ttl_s": 300}),
            ("cache", {"hit": False, "ttl_s": None}),
            ("items", [1, 2, 3]),
            ("items", []),
            ("ratio", 0.25),
            ("big_id", 9_007_199_254_740_993),
            ("feature_flags", ["new-checkout", "dark-mode"]),
            ("temperature_c", -3.75),
        ),
    ),
    (
        0.15,
        (
            ("note", "Déjà vu 🎉"),
            ("greeting", "こんにちは世界"),
            ("emoji", "🚀🔥✨"),
            ("escaped", 'line one\nline two "quoted" \\ and\ttab'),
            ("nested", {"a": {"b": {"c": [1, {"d": False}, None]}}}),
            ("mixed", [1, "two", 3.0, None, True, {"six": 6}]),
            ("empty", {}),
            ("nothing", None),
            ("rtl", "مرحبا"),
            ("zero_width", "a\u200bb"),
        ),
    ),
)
"""Optional attributes: each pool adds one of its entries to a share of rows."""


def _value_schema(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {"type": "object"}
    if isinstance(value, list):
        return {"type": "array"}
    return {}


@dataclass(frozen=True)
class _ExtraPool:
    """One pool's attribute fragments, each with its JSON schema fragment.

    Index 0 is "no attribute". Schema fragments come twice: first without a
    leading comma (for the first property), then with one.
    """

    share: float
    size: int
    fragment: pa.Array
    schema: pa.Array


@functools.cache
def _extra_pools() -> tuple[_ExtraPool, ...]:
    pools = []
    for share, entries in _EXTRA_POOLS:
        fragments = [""]
        schemas = [""]
        for key, value in entries:
            pair = f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
            fragments.append(f", {pair}")
            schemas.append(f"{json.dumps(key)}: {json.dumps(_value_schema(value))}")
        schemas += [""] + [f", {entry}" for entry in schemas[1:]]
        pools.append(
            _ExtraPool(
                share, len(entries), _text_array(fragments), _text_array(schemas)
            )
        )
    return tuple(pools)


_TAGS = ("checkout", "payments", "slow", "beta", "experiment-42", "café", "🚀 launch")
_TAG_COUNT_SHARES = (0.65, 0.2, 0.1, 0.05)
"""How many tags a row of a tagged kind carries: none, one, two or three."""

_STATUS_CODES = (0, 200, 201, 204, 301, 400, 404, 500, 503)
_STATUS_OK_SHARES = (0.0, 0.86, 0.04, 0.02, 0.01, 0.03, 0.04, 0.0, 0.0)
_STATUS_FAILED_SHARES = (0.0,) * 7 + (0.8, 0.2)


# ---------------------------------------------------------------------------
# Exceptions.


@dataclass(frozen=True)
class _Failure:
    key: str
    type: str
    messages: tuple[str, ...]
    frames: tuple[tuple[str, int, str, str], ...]
    style: Literal["python", "javascript", "rust"] = "python"


_FAILURES = (
    _Failure(
        "card_declined",
        "payments.errors.CardDeclined",
        (
            "Card declined: insufficient funds",
            "Card declined: do not honor",
            "Carte refusée : fonds insuffisants",
        ),
        (
            (
                "/app/payments/api.py",
                58,
                "create_charge",
                "charge = await charge_card(req)",
            ),
            (
                "/app/payments/charges.py",
                131,
                "charge_card",
                "result = provider.capture(c)",
            ),
            ("/app/payments/providers.py", 77, "capture", "raise CardDeclined(reason)"),
        ),
    ),
    _Failure(
        "read_timeout",
        "httpx.ReadTimeout",
        ("The read operation timed out",),
        (
            ("/app/checkout/service.py", 212, "charge", "response = client.post(url)"),
            (
                "/usr/local/lib/python3.12/site-packages/httpx/_client.py",
                1014,
                "send",
                "response = self._send_handling_auth(request)",
            ),
            (
                "/usr/local/lib/python3.12/site-packages/httpx/_transports/default.py",
                118,
                "map_httpcore_exceptions",
                "raise mapped_exc(message) from exc",
            ),
        ),
    ),
    _Failure(
        "integrity",
        "sqlalchemy.exc.IntegrityError",
        (
            "(psycopg.errors.UniqueViolation) duplicate key value violates unique "
            'constraint "refunds_pkey"\nDETAIL:  Key (id)=(4412) already exists.',
        ),
        (
            ("/app/payments/refunds.py", 44, "record_refund", "session.commit()"),
            (
                "/usr/local/lib/python3.12/site-packages/sqlalchemy/engine/base.py",
                1967,
                "_exec_single_context",
                "self.dialect.do_execute(",
            ),
        ),
    ),
    _Failure(
        "db_connection",
        "sqlalchemy.exc.OperationalError",
        (
            "(psycopg.OperationalError) connection failed: server closed the "
            "connection unexpectedly",
        ),
        (
            (
                "/app/checkout/orders.py",
                91,
                "load_order",
                "row = session.get(Order, id)",
            ),
            (
                "/usr/local/lib/python3.12/site-packages/sqlalchemy/pool/base.py",
                896,
                "__connect",
                "self.dbapi_connection = connection = pool._invoke_creator(self)",
            ),
        ),
    ),
    _Failure(
        "smtp",
        "smtplib.SMTPServerDisconnected",
        ("Connection unexpectedly closed",),
        (
            ("/app/worker/tasks.py", 33, "send_email", "smtp.send_message(message)"),
            ("/usr/local/lib/python3.12/smtplib.py", 405, "getreply", "raise Error()"),
        ),
    ),
    _Failure(
        "memory",
        "MemoryError",
        ("",),
        (("/app/worker/imports.py", 120, "load_feed", "rows = list(reader)"),),
    ),
    _Failure(
        "key_error",
        "KeyError",
        ("'shipping_address'",),
        (
            (
                "/app/worker/tasks.py",
                61,
                "render",
                "address = order['shipping_address']",
            ),
        ),
    ),
    _Failure(
        "js_type",
        "TypeError",
        ("Cannot read properties of undefined (reading 'price')",),
        (
            ("https://cdn.example.com/app.3f9a2c.js", 2, "ProductCard", "14201"),
            ("https://cdn.example.com/app.3f9a2c.js", 2, "renderWithHooks", "88310"),
        ),
        "javascript",
    ),
    _Failure(
        "pool_timeout",
        "sqlx_core::error::Error",
        ("pool timed out while waiting for an open connection",),
        (
            ("src/db.rs", 88, "inventory::db::reserve", "19"),
            ("src/handlers.rs", 142, "inventory::handlers::reserve_stock", "9"),
        ),
        "rust",
    ),
    _Failure(
        "supplier",
        "reqwest::Error",
        (
            "error sending request for url (https://supplier.example.net/feed.json): "
            "operation timed out",
        ),
        (("src/sync.rs", 57, "inventory::sync::fetch_feed", "14"),),
        "rust",
    ),
)


def _stacktrace(failure: _Failure, message: str) -> str:
    head = f"{failure.type}: {message}" if message else failure.type
    if failure.style == "javascript":
        lines = [head]
        lines += [
            f"    at {func} ({file}:{line}:{col})"
            for file, line, func, col in failure.frames
        ]
        return "\n".join(lines)
    if failure.style == "rust":
        lines = [message, "", "Stack backtrace:"]
        for i, (file, line, func, col) in enumerate(failure.frames):
            lines += [f"   {i}: {func}", f"             at ./{file}:{line}:{col}"]
        return "\n".join(lines)
    lines = ["Traceback (most recent call last):"]
    for file, line, func, code in failure.frames:
        lines += [f'  File "{file}", line {line}, in {func}', f"    {code}"]
    return "\n".join([*lines, head])


@dataclass(frozen=True)
class _Failures:
    """Every exception variant; each failure key owns a run of variants."""

    code: dict[str, int]
    first: _I64
    size: _I64
    type: pa.Array
    message: pa.Array
    stacktrace: pa.Array
    status_message: pa.Array
    event_tail: pa.Array


@functools.cache
def _failures() -> _Failures:
    code: dict[str, int] = {}
    first: list[int] = []
    size: list[int] = []
    rows: list[tuple[str, str, str, str, str]] = []
    for failure in _FAILURES:
        code[failure.key] = len(first)
        first.append(len(rows))
        size.append(len(failure.messages))
        for message in failure.messages:
            status = f"{failure.type}: {message}" if message else failure.type
            attributes = {
                "exception.type": failure.type,
                "exception.message": message,
                "exception.escaped": "False",
            }
            tail = f', "attributes": {json.dumps(attributes, ensure_ascii=False)}}}]'
            stack = _stacktrace(failure, message)
            rows.append((failure.type, message, stack, status, tail))

    columns = [_text_array([row[i] for row in rows]) for i in range(5)]
    return _Failures(
        code,
        np.array(first, dtype=np.int64),
        np.array(size, dtype=np.int64),
        *columns,
    )


# ---------------------------------------------------------------------------
# Trace templates: the shapes of the traces each service produces.

_Kind = Literal["span", "log", "span_event"]
_When = Literal["always", "failure", "success"]
_KINDS: tuple[_Kind, ...] = ("span", "log", "span_event")
_WHENS: tuple[_When, ...] = ("always", "failure", "success")


@dataclass(frozen=True)
class _Http:
    method: str
    host: str
    path: str
    server: bool
    queries: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class _Node:
    """One span, log or span event of a template.

    `at` and `length` place it within its parent, as shares of the parent's
    duration; a root's `length` is its typical duration in seconds. A repeated
    node spreads its copies evenly over its place.
    """

    kind: _Kind
    name: str
    service: str
    parent: int = -1
    at: float = 0.0
    length: float = 1.0
    level: int = 9
    scope: str = "logfire"
    message: str | None = None
    http: _Http | None = None
    repeat: tuple[int, int] = (1, 1)
    when: _When = "always"
    raises: str | None = None
    links: bool = False
    extras: bool = True


@dataclass(frozen=True)
class _Template:
    name: str
    weight: float
    failure_rate: float
    nodes: tuple[_Node, ...]
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
) -> _Node:
    """A span; `at` and `length` place it within its parent."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    options.setdefault("extras", options["scope"] == "logfire")
    return _Node("span", name, service, parent, at, length, **options)


def _server(
    service: str,
    route: str,
    parent: int = -1,
    at: float = 0.0,
    length: float = 1.0,
    **options: Any,
) -> _Node:
    """A span serving an HTTP request, such as `GET /orders/{order_id}`."""
    method, path = route.split(" ", 1)
    queries = options.pop("queries", ("",))
    options.setdefault("scope", _SERVER_SCOPE.get(service, "fastapi"))
    http = _Http(method, _HOSTS[service], path, True, queries)
    return _span(route, service, parent, at, length, http=http, **options)


def _client(
    service: str,
    request: str,
    parent: int,
    at: float = 0.0,
    length: float = 1.0,
    **options: Any,
) -> _Node:
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
    http = _Http(method, host, f"/{path}", False, queries)
    return _span(method, service, parent, at, length, http=http, **options)


def _log(
    name: str,
    service: str,
    parent: int = -1,
    at: float = 0.0,
    length: float = 0.02,
    **options: Any,
) -> _Node:
    """A log; repeated copies spread over [at, at + length) of the parent."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    return _Node("log", name, service, parent, at, length, **options)


def _event(name: str, service: str, parent: int, at: float, **options: Any) -> _Node:
    """An event recorded on the span `parent`."""
    options.setdefault("scope", _SCOPE.get(service, "logfire"))
    return _Node("span_event", name, service, parent, at, 0.02, extras=False, **options)


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
        http=_Http("GET", _HOSTS["frontend"], "{path}", False),
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


def _templates() -> tuple[_Template, ...]:
    """Every kind of trace, with its share of traces and how often it fails.

    A root's `length` is its typical duration in seconds; batch jobs draw theirs
    from `_LONG_JOB_HOURS` instead.
    """
    return (
        _Template("product page", 22, 0.02, _PRODUCT_PAGE),
        _Template("search", 6, 0.01, _SEARCH),
        _Template("order status", 10, 0.02, _ORDER_STATUS),
        _Template("checkout", 7, 0.06, _CHECKOUT),
        _Template("page load", 8, 0.03, _PAGE_LOAD),
        _Template("email task", 6, 0.04, _EMAIL_TASK),
        _Template("catalogue import", 0.25, 0.05, _CATALOGUE_IMPORT),
        _Template("stock sync", 4, 0.05, _STOCK_SYNC),
        _Template("refund webhook", 4, 0.1, _REFUND_WEBHOOK),
        _Template("batch job", 0.5, 0.1, _BATCH_JOB, long=True),
        _Template(
            "health check",
            10,
            0.0,
            (_server("api-gateway", "GET /healthz", length=0.002),),
        ),
        _Template(
            "cache miss", 8, 0.0, (_log("Cache miss for {key}", "checkout", level=5),)
        ),
        _Template(
            "webhook", 3, 0.0, (_log("Webhook from {provider} received", "payments"),)
        ),
        _Template(
            "low stock",
            2,
            0.0,
            (_log("Stock low for {sku}: {count} left", "inventory", level=13),),
        ),
        _Template(
            "heartbeat",
            6,
            0.0,
            (_log("Heartbeat from {worker}", "worker", level=1, extras=False),),
        ),
        _Template(
            "deprecation",
            1.5,
            0.0,
            (_log("Deprecated page {path} requested", "api-gateway", level=13),),
        ),
        _Template(
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


_PLACEHOLDER = re.compile(r"\{(\w+)\}")

_STATEMENTS = {
    "SELECT products": "SELECT sku, name, price_cents FROM products WHERE sku = $1",
    "SELECT orders": (
        "SELECT orders.id, orders.status, orders.total FROM orders "
        "WHERE orders.id = %(pk_1)s"
    ),
    "UPDATE stock": "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2",
    "COMMIT": "COMMIT",
}

_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)

_LOG_BODIES: dict[str, tuple[str, str]] = {
    "rust": ('"', '"'),
    "nodejs": ('{"level": 30, "msg": "', '", "hostname": "gateway"}'),
    "webjs": ('{"message": "', '", "source": "console"}'),
}
"""How services that log through OpenTelemetry wrap a message into a log body."""


def _snake(name: str) -> str:
    words = re.findall(r"[a-z0-9]+", _PLACEHOLDER.sub("", name).lower())
    return "_".join(words[:3]) or "handler"


def _lead_attributes(node: _Node, position: int) -> dict[str, object]:
    """The attributes a node's instrumentation always records."""
    service = _SERVICES[_SERVICE_INDEX[node.service]]
    http = node.http
    if http is not None and http.server:
        lead: dict[str, object] = {
            "http.request.method": http.method,
            "http.route": http.path,
            "url.scheme": http.host.split(":")[0],
        }
        if node.scope == "node-http":
            lead["user_agent.original"] = _USER_AGENT
        return lead
    if http is not None:
        address = http.host.split("//")[1].split(":")
        port = int(address[1]) if len(address) > 1 else 443
        return {
            "http.request.method": http.method,
            "server.address": address[0],
            "server.port": port,
        }
    if node.scope in ("sqlalchemy", "sqlx"):
        statement = _STATEMENTS.get(node.name, node.name)
        return {"db.system": "postgresql", "db.name": "shop", "db.statement": statement}
    if node.scope == "celery":
        return {
            "celery.action": "run",
            "celery.task_name": f"worker.tasks.{_snake(node.name)}",
            "messaging.system": "redis",
        }
    if node.scope == "tracing":
        return {
            "code.namespace": "inventory::handlers",
            "code.filepath": "src/handlers.rs",
            "code.lineno": 40 + 9 * position,
            "thread.name": "tokio-runtime-worker",
        }
    if node.scope in ("document-load", "fetch"):
        return {"component": node.scope, "session.id": "s-0f9e"}
    suffix = ".js" if service.language == "nodejs" else ".py"
    return {
        "code.filepath": service.module + suffix,
        "code.function": _snake(node.name),
        "code.lineno": 20 + 7 * position,
    }


@dataclass(frozen=True)
class _NodeTable:
    """Every node of every template, as columns indexed by a global node number."""

    parent: _I64
    depth: _I64
    kind: _I64
    service: _I64
    level: _I64
    at: _F64
    length: _F64
    repeat_low: _I64
    repeat_high: _I64
    when: _I64
    role: _I64
    failure: _I64
    http: _I64
    links: _Bool
    tagged: _Bool
    extras: _Bool
    param: npt.NDArray[np.int64]
    query_base: _I64
    query_size: _I64
    has_schema: _Bool
    has_body: _Bool
    rust: _Bool

    span_name: pa.Array
    literal: tuple[pa.Array, pa.Array, pa.Array]
    literal_escaped: tuple[pa.Array, pa.Array, pa.Array]
    slot_key: tuple[pa.Array, pa.Array]
    slot_schema: tuple[pa.Array, pa.Array]
    attribute_lead: pa.Array
    status_key: pa.Array
    scope_name: pa.Array
    scope_version: pa.Array
    http_method: pa.Array
    http_route: pa.Array
    path_literal: tuple[pa.Array, pa.Array, pa.Array]
    path_slots: _I64
    host: pa.Array
    body_open: pa.Array
    body_close: pa.Array


@dataclass(frozen=True)
class _RecordCatalog:
    """The templates, compiled for vectorised expansion."""

    weight: _F64
    failure_rate: _F64
    long: _Bool
    first_node: _I64
    node_count: _I64
    root_seconds: _F64
    rows_per_trace: float
    skew_share: float
    nodes: _NodeTable
    query_text: pa.Array
    query_suffix: pa.Array


# The roles a node plays when its trace fails.
_ROLE_NONE, _ROLE_RAISES, _ROLE_PROPAGATES, _ROLE_ERROR_STATUS = range(4)


def _failure_roles(template: _Template) -> list[tuple[int, str | None]]:
    """Each node's role in a failing trace and the exception it carries.

    A raising span's exception propagates up through its own service's spans;
    spans of other services above it end with an error status. A raising log
    records the exception without failing its parents.
    """
    roles: list[tuple[int, str | None]] = [(_ROLE_NONE, None)] * len(template.nodes)
    for i, node in enumerate(template.nodes):
        if node.raises is None:
            continue
        roles[i] = (_ROLE_RAISES, node.raises)
        parent = node.parent if node.kind == "span" else -1
        while parent >= 0:
            above = template.nodes[parent]
            role = (
                _ROLE_PROPAGATES
                if above.service == node.service
                else _ROLE_ERROR_STATUS
            )
            if roles[parent][0] == _ROLE_NONE or roles[parent][0] > role:
                roles[parent] = (
                    role,
                    node.raises if role == _ROLE_PROPAGATES else None,
                )
            parent = above.parent
    return roles


def _check_template(template: _Template) -> None:
    """Refuse a template that the vectorised expansion would get wrong."""
    for i, node in enumerate(template.nodes):
        problem = _node_problem(template, i, node)
        if problem:
            raise ValueError(
                f"Node {i} of the {template.name!r} trace template {problem}; "
                "fix the template."
            )


def _node_problem(template: _Template, i: int, node: _Node) -> str | None:
    if i == 0:
        if node.parent != -1 or node.repeat != (1, 1) or node.when != "always":
            return "is the root, so it needs no parent, one copy, and no condition"
        return None
    if not 0 <= node.parent < i:
        return "must name an earlier node as its parent"
    parent = template.nodes[node.parent]
    if parent.kind != "span" or parent.repeat != (1, 1) or parent.when != "always":
        return "must have a parent span that is always there, in one copy"
    if not 0 <= node.at <= node.at + node.length <= 1:
        return "must fit inside its parent: 0 <= at <= at + length <= 1"
    if node.kind == "span_event" and parent.service != node.service:
        return "is an event, so it must belong to a span of its own service"

    names = _PLACEHOLDER.findall(node.message or node.name)
    path = _PLACEHOLDER.findall(node.http.path) if node.http else []
    if len(names) > 2 or len(set(names)) < len(names):
        return "may use at most two distinct parameters"
    if any(name not in _params().code for name in names):
        return f"uses a parameter with no values in _param_values: {names}"
    if path != names[: len(path)]:
        return "must use its message's first parameters, in order, in its URL path"
    if node.raises is not None and node.raises not in _failures().code:
        return f"raises {node.raises!r}, which _FAILURES does not define"
    return None


def _split_template(text: str) -> tuple[list[str], list[str]]:
    """Literal parts (always three) and parameter names (up to two) of a template."""
    parts = _PLACEHOLDER.split(text)
    literals, names = parts[0::2], parts[1::2]
    return literals + [""] * (3 - len(literals)), names


@functools.cache
def _record_catalog() -> _RecordCatalog:
    templates = _templates()
    total = sum(t.weight for t in templates)
    columns: dict[str, list[Any]] = {}
    queries = [""]
    first_node = []
    for template in templates:
        _check_template(template)
        first_node.append(len(columns.get("kind", [])))
        roles = _failure_roles(template)
        depths = _depths(template)
        for i, node in enumerate(template.nodes):
            _compile_node(columns, queries, node, i, depths[i], roles[i])

    rows = sum(t.weight / total * _expected_rows(t) for t in templates)
    browser = sum(t.weight / total * _expected_rows(t, "frontend") for t in templates)
    return _RecordCatalog(
        weight=np.array([t.weight / total for t in templates]),
        failure_rate=np.array([t.failure_rate for t in templates]),
        long=np.array([t.long for t in templates]),
        first_node=np.array(first_node, dtype=np.int64),
        node_count=np.array([len(t.nodes) for t in templates], dtype=np.int64),
        root_seconds=np.array([t.nodes[0].length for t in templates]),
        rows_per_trace=rows,
        skew_share=min(1.0, _SKEWED_ROW_SHARE * rows / browser),
        nodes=_node_table(columns),
        query_text=_text_array([query or None for query in queries]),
        query_suffix=_text_array([f"?{query}" if query else "" for query in queries]),
    )


def _depths(template: _Template) -> list[int]:
    depths: list[int] = []
    for i, node in enumerate(template.nodes):
        depths.append(0 if i == 0 else depths[node.parent] + 1)
    return depths


def _expected_rows(template: _Template, service: str | None = None) -> float:
    """How many rows a trace of this template holds on average."""
    rows = 0.0
    for node in template.nodes:
        if service is not None and node.service != service:
            continue
        present = {"always": 1.0, "failure": template.failure_rate}.get(
            node.when, 1.0 - template.failure_rate
        )
        rows += present * (node.repeat[0] + node.repeat[1]) / 2
    return rows


def _compile_node(
    columns: dict[str, list[Any]],
    queries: list[str],
    node: _Node,
    position: int,
    depth: int,
    role: tuple[int, str | None],
) -> None:
    """Append one node's entries to the node table's columns."""
    entries = {
        **_node_numbers(node, depth, role),
        **_node_texts(node, position),
        **_node_http(node, queries),
    }
    for name, value in entries.items():
        columns.setdefault(name, []).append(value)


def _node_numbers(
    node: _Node, depth: int, role: tuple[int, str | None]
) -> dict[str, Any]:
    language = _SERVICES[_SERVICE_INDEX[node.service]].language
    names = _PLACEHOLDER.findall(node.message or node.name)
    codes = [_params().code[name] for name in names]
    return {
        "parent": node.parent,
        "depth": depth,
        "kind": _KINDS.index(node.kind),
        "service": _SERVICE_INDEX[node.service],
        "level": node.level,
        "at": node.at,
        "length": node.length,
        "repeat_low": node.repeat[0],
        "repeat_high": node.repeat[1],
        "when": _WHENS.index(node.when),
        "role": role[0],
        "failure": _failures().code[role[1]] if role[1] else -1,
        "links": node.links,
        "tagged": node.scope == "logfire",
        "extras": node.extras,
        "param": codes + [-1] * (2 - len(codes)),
        "has_schema": bool(names),
        "has_body": node.kind == "log" and language in _LOG_BODIES,
        "rust": language == "rust",
    }


def _node_texts(node: _Node, position: int) -> dict[str, Any]:
    """The pre-rendered text pieces a node's rows are assembled from."""
    literals, names = _split_template(node.message or node.name)
    keys = [json.dumps(name) for name in names] + [""] * (2 - len(names))
    language = _SERVICES[_SERVICE_INDEX[node.service]].language
    body = _LOG_BODIES.get(language, (None, None)) if node.kind == "log" else None
    lead = json.dumps(_lead_attributes(node, position), ensure_ascii=False)
    scope_name, scope_version = _SCOPES[node.scope]
    return {
        "span_name": node.name,
        "literal": literals,
        "literal_escaped": [json.dumps(p, ensure_ascii=False)[1:-1] for p in literals],
        "slot_key": [f", {key}: " if key else "" for key in keys],
        "slot_schema": [
            f"{keys[0]}: {{}}" if keys[0] else "",
            f", {keys[1]}: {{}}" if keys[1] else "",
        ],
        # The lead's closing brace goes: the other attributes follow it.
        "attribute_lead": lead[:-1],
        "status_key": ', "http.response.status_code": ' if node.http else "",
        "scope_name": scope_name,
        "scope_version": scope_version,
        "body_open": body[0] if body else None,
        "body_close": body[1] if body else None,
    }


def _node_http(node: _Node, queries: list[str]) -> dict[str, Any]:
    """A node's HTTP pieces; its query strings are appended to `queries`."""
    http = node.http
    if http is None:
        return {
            "http": 0,
            "http_method": None,
            "http_route": None,
            "path_literal": [None] * 3,
            "path_slots": 0,
            "host": None,
            "query_base": 0,
            "query_size": 1,
        }

    literals, names = _split_template(http.path)
    base = len(queries)
    queries.extend(http.queries)
    return {
        "http": 1 if http.server else 2,
        "http_method": http.method,
        "http_route": http.path if http.server else None,
        "path_literal": literals,
        "path_slots": len(names),
        "host": http.host,
        "query_base": base,
        "query_size": len(http.queries),
    }


def _node_table(columns: dict[str, list[Any]]) -> _NodeTable:
    def ints(name: str) -> _I64:
        return np.array(columns[name], dtype=np.int64)

    def flags(name: str) -> _Bool:
        return np.array(columns[name], dtype=np.bool_)

    def texts(name: str) -> pa.Array:
        return _text_array(columns[name])

    def text_tuple(name: str, width: int) -> Any:
        return tuple(
            _text_array([row[i] for row in columns[name]]) for i in range(width)
        )

    return _NodeTable(
        parent=ints("parent"),
        depth=ints("depth"),
        kind=ints("kind"),
        service=ints("service"),
        level=ints("level"),
        at=np.array(columns["at"], dtype=np.float64),
        length=np.array(columns["length"], dtype=np.float64),
        repeat_low=ints("repeat_low"),
        repeat_high=ints("repeat_high"),
        when=ints("when"),
        role=ints("role"),
        failure=ints("failure"),
        http=ints("http"),
        links=flags("links"),
        tagged=flags("tagged"),
        extras=flags("extras"),
        param=np.array(columns["param"], dtype=np.int64),
        query_base=ints("query_base"),
        query_size=ints("query_size"),
        has_schema=flags("has_schema"),
        has_body=flags("has_body"),
        rust=flags("rust"),
        span_name=texts("span_name"),
        literal=text_tuple("literal", 3),
        literal_escaped=text_tuple("literal_escaped", 3),
        slot_key=text_tuple("slot_key", 2),
        slot_schema=text_tuple("slot_schema", 2),
        attribute_lead=texts("attribute_lead"),
        status_key=texts("status_key"),
        scope_name=texts("scope_name"),
        scope_version=texts("scope_version"),
        http_method=texts("http_method"),
        http_route=texts("http_route"),
        path_literal=text_tuple("path_literal", 3),
        path_slots=ints("path_slots"),
        host=texts("host"),
        body_open=texts("body_open"),
        body_close=texts("body_close"),
    )


# ---------------------------------------------------------------------------
# Records: lay traces out, time them, store them, then render text per chunk.


@dataclass(frozen=True)
class _Traces:
    """What is drawn once per trace."""

    template: _I64
    start: _I64
    duration: _I64
    failed: _Bool
    environment: _I64
    replica: _I64
    skew: _I64
    ok_status: _I64
    failed_status: _I64
    failure_draw: _F64
    param_draw: npt.NDArray[np.float32]
    words: _U64


@dataclass(frozen=True)
class _Layout:
    """Each row's place: its trace, template node, copy number and parent row."""

    trace: _I64
    node: _I64
    rank: _I64
    copies: _I64
    parent: _I64
    root: _I64
    """The root row of every trace that kept at least one row."""


def _draw_traces(
    rng: np.random.Generator, catalog: _RecordCatalog, count: int, lo: int, hi: int
) -> _Traces:
    template = rng.choice(len(catalog.weight), size=count, p=catalog.weight)
    scale = np.clip(rng.lognormal(0.0, 0.6, count), 0.1, 8.0)
    seconds = catalog.root_seconds[template] * scale
    shortest, longest = (math.log(hours) for hours in _LONG_JOB_HOURS)
    hours = np.exp(rng.uniform(shortest, longest, count))
    seconds = np.where(catalog.long[template], hours * 3600.0, seconds)
    statuses = len(_STATUS_CODES)
    return _Traces(
        template=template,
        start=np.sort(rng.integers(lo, hi, count)),
        duration=(seconds * _SECOND).astype(np.int64),
        failed=rng.random(count) < catalog.failure_rate[template],
        environment=rng.choice(len(_ENVIRONMENTS), size=count, p=_ENVIRONMENT_WEIGHTS),
        replica=rng.integers(0, _REPLICAS, count),
        skew=_skews(rng, count, catalog.skew_share),
        ok_status=rng.choice(statuses, size=count, p=_STATUS_OK_SHARES),
        failed_status=rng.choice(statuses, size=count, p=_STATUS_FAILED_SHARES),
        failure_draw=rng.random(count),
        param_draw=rng.random((count, len(_params().size)), dtype=np.float32),
        words=_random_words(rng, (count, 2)),
    )


def _random_words(rng: np.random.Generator, shape: int | tuple[int, int]) -> _U64:
    return rng.integers(0, 2**64 - 1, size=shape, dtype=np.uint64, endpoint=True)


def _lay_out(
    rng: np.random.Generator, catalog: _RecordCatalog, traces: _Traces, n: int
) -> _Layout | None:
    """Expand traces into their first `n` rows, or None if they hold fewer."""
    nodes = catalog.nodes
    per_trace = catalog.node_count[traces.template]
    trace_first_pair = np.cumsum(per_trace) - per_trace
    pair_trace = np.repeat(np.arange(len(per_trace)), per_trace)
    pair_local = np.arange(len(pair_trace)) - trace_first_pair[pair_trace]
    pair_node = catalog.first_node[traces.template][pair_trace] + pair_local

    copies = rng.integers(nodes.repeat_low[pair_node], nodes.repeat_high[pair_node] + 1)
    when = nodes.when[pair_node]
    failed = traces.failed[pair_trace]
    absent = ((when == 1) & ~failed) | ((when == 2) & failed)
    copies = np.where(absent, 0, copies)
    if copies.sum() < n:
        return None

    pair_first_row = np.cumsum(copies) - copies
    row_pair = np.repeat(np.arange(len(copies)), copies)[:n]
    trace = pair_trace[row_pair]
    node = pair_node[row_pair]
    parent_local = nodes.parent[node]
    parent_pair = trace_first_pair[trace] + np.maximum(parent_local, 0)
    kept = int(trace[-1]) + 1
    return _Layout(
        trace=trace,
        node=node,
        rank=np.arange(n) - pair_first_row[row_pair],
        copies=copies[row_pair],
        parent=np.where(parent_local >= 0, pair_first_row[parent_pair], -1),
        root=pair_first_row[trace_first_pair[:kept]],
    )


def _place(
    rng: np.random.Generator, catalog: _RecordCatalog, traces: _Traces, rows: _Layout
) -> tuple[_I64, _I64]:
    """Start and end of every row, each child inside its parent."""
    nodes = catalog.nodes
    n = len(rows.node)
    spans = nodes.kind[rows.node] == 0
    slot = nodes.length[rows.node] / rows.copies
    slot_start = nodes.at[rows.node] + slot * rows.rank
    jitter, stretch = rng.random(n), rng.random(n)
    offset = np.where(
        spans, slot_start + slot * 0.15 * jitter, slot_start + slot * jitter
    )
    share = np.where(spans, slot * (0.45 + 0.4 * stretch), 0.0)

    start = np.empty(n, dtype=np.int64)
    duration = np.empty(n, dtype=np.int64)
    depth = nodes.depth[rows.node]
    roots = np.flatnonzero(depth == 0)
    start[roots] = traces.start[rows.trace[roots]]
    duration[roots] = np.where(spans[roots], traces.duration[rows.trace[roots]], 0)
    for level in range(1, int(depth.max()) + 1):
        rows_here = np.flatnonzero(depth == level)
        parent = rows.parent[rows_here]
        start[rows_here] = start[parent] + (
            offset[rows_here] * duration[parent]
        ).astype(np.int64)
        duration[rows_here] = (share[rows_here] * duration[parent]).astype(np.int64)
    return start, start + duration


def _store(
    rng: np.random.Generator,
    catalog: _RecordCatalog,
    traces: _Traces,
    rows: _Layout,
    times: tuple[_I64, _I64],
) -> tuple[_I64, _I64, _I64]:
    """Each row's source instance, `created_at` and `_visible_at`.

    Spans and logs leave their instance in export batches; a span event is stored
    with its span.
    """
    nodes = catalog.nodes
    kind = nodes.kind[rows.node]
    source = _instance_index(
        nodes.service[rows.node],
        traces.environment[rows.trace],
        traces.replica[rows.trace],
    )
    exported = kind != 2
    ready = np.where(kind == 0, times[1], times[0])
    batch, flush = _export_batches(source[exported], ready[exported])
    stored = flush + _ingest_delays(rng, len(flush))
    shown = stored + _visibility_delays(rng, len(flush))

    created = np.empty(len(kind), dtype=np.int64)
    visible = np.empty(len(kind), dtype=np.int64)
    created[exported] = stored[batch]
    visible[exported] = shown[batch]
    events = np.flatnonzero(~exported)
    created[events] = created[rows.parent[events]]
    visible[events] = visible[rows.parent[events]]
    return source, created, visible


def _identify(
    rng: np.random.Generator, catalog: _RecordCatalog, rows: _Layout
) -> tuple[_U64, _U64, _Bool]:
    """Span ids, parent span ids and which rows have a parent.

    A span event carries the ids of the span it belongs to.
    """
    span = _random_words(rng, len(rows.node))
    parent_span = np.zeros(len(span), dtype=np.uint64)
    has_parent = rows.parent >= 0
    events = catalog.nodes.kind[rows.node] == 2

    children = np.flatnonzero(has_parent & ~events)
    parent_span[children] = span[rows.parent[children]]
    owners = rows.parent[events]
    span[events] = span[owners]
    parent_span[events] = parent_span[owners]
    has_parent[events] = has_parent[owners]
    return span, parent_span, has_parent


@dataclass
class _RecordPlan:
    """Every record's structure, timing and choices, in `created_at` order.

    Text columns are rendered from this per chunk by `batch`, which draws no
    randomness, so chunks can be built in parallel.
    """

    catalog: _RecordCatalog
    node: _I64
    trace: _I64
    source: _I64
    start: _I64
    end: _I64
    created: _I64
    visible: _I64
    span: _U64
    parent_span: _U64
    has_parent: _Bool
    level: _I64
    status: _I64
    role: _I64
    failure: _I64
    slots: _I64 = field(init=False)
    extras: _I64 = field(init=False)
    tag_count: _I64 = field(init=False)
    tag_first: _I64 = field(init=False)
    query: _I64 = field(init=False)
    link: _I64 = field(init=False)
    trace_words: _U64 = field(init=False)
    root_span: _U64 = field(init=False)

    def batch(self, a: int, b: int, project_id: str) -> pa.RecordBatch:
        """Rows `a` to `b` as a record batch of the stored schema."""
        columns = _record_columns(self, slice(a, b), project_id)
        arrays = [columns[f.name] for f in _RECORDS_STORED]
        return pa.RecordBatch.from_arrays(arrays, schema=_RECORDS_STORED)


def _plan_records(rng: np.random.Generator, n: int, lo: int, hi: int) -> _RecordPlan:
    catalog = _record_catalog()
    count = int(n / catalog.rows_per_trace * 1.1) + 16
    while True:
        traces = _draw_traces(rng, catalog, count, lo, hi)
        rows = _lay_out(rng, catalog, traces, n)
        if rows is not None:
            break
        count *= 2

    times = _place(rng, catalog, traces, rows)
    source, created, visible = _store(rng, catalog, traces, rows, times)
    frontend = catalog.nodes.service[rows.node] == _SERVICE_INDEX["frontend"]
    skew = np.where(frontend, traces.skew[rows.trace], 0)
    span, parent_span, has_parent = _identify(rng, catalog, rows)
    level, status, role, failure = _outcomes(catalog, traces, rows)

    order = np.argsort(created, kind="stable")
    plan = _RecordPlan(
        catalog=catalog,
        node=rows.node[order],
        trace=rows.trace[order],
        source=source[order],
        start=(times[0] + skew)[order],
        end=(times[1] + skew)[order],
        created=created[order],
        visible=visible[order],
        span=span[order],
        parent_span=parent_span[order],
        has_parent=has_parent[order],
        level=level[order],
        status=status[order],
        role=role[order],
        failure=failure[order],
    )
    plan.trace_words = traces.words
    plan.root_span = span[rows.root]
    _choose_details(rng, plan, traces, rows.rank[order], len(rows.root))
    return plan


def _outcomes(
    catalog: _RecordCatalog, traces: _Traces, rows: _Layout
) -> tuple[_I64, _I64, _I64, _I64]:
    """Level, HTTP status, failure role and exception variant of every row."""
    nodes = catalog.nodes
    failures = _failures()
    role = np.where(traces.failed[rows.trace], nodes.role[rows.node], _ROLE_NONE)
    group = nodes.failure[rows.node]
    carries = (role == _ROLE_RAISES) | (role == _ROLE_PROPAGATES)
    safe_group = np.maximum(group, 0)
    variant = (traces.failure_draw[rows.trace] * failures.size[safe_group]).astype(
        np.int64
    )
    failure = np.where(carries & (group >= 0), failures.first[safe_group] + variant, -1)

    http = nodes.http[rows.node] > 0
    errored = role != _ROLE_NONE
    trace_status = np.where(
        errored, traces.failed_status[rows.trace], traces.ok_status[rows.trace]
    )
    status = np.where(http, trace_status, 0)

    level = nodes.level[rows.node]
    level = np.where(errored, np.maximum(level, 17), level)
    client_error = (status == _STATUS_CODES.index(400)) | (
        status == _STATUS_CODES.index(404)
    )
    level = np.where(client_error, np.maximum(level, 13), level)
    return level, status, role, failure


def _choose_details(
    rng: np.random.Generator, plan: _RecordPlan, traces: _Traces, rank: _I64, kept: int
) -> None:
    """Draw what only changes the rendered text: values, extras, tags, links."""
    nodes = plan.catalog.nodes
    params = _params()
    n = len(plan.node)

    slots = np.zeros((n, 2), dtype=np.int64)
    for j in range(2):
        code = nodes.param[plan.node, j]
        safe = np.maximum(code, 0)
        draw = traces.param_draw[plan.trace, safe]
        pick = ((draw * params.size[safe]).astype(np.int64) + rank) % params.size[safe]
        slots[:, j] = np.where(code >= 0, params.base[safe] + pick, 0)
    plan.slots = slots

    extras = np.zeros((n, len(_extra_pools())), dtype=np.int64)
    allowed = nodes.extras[plan.node]
    for k, pool in enumerate(_extra_pools()):
        present = allowed & (rng.random(n) < pool.share)
        extras[:, k] = np.where(present, 1 + rng.integers(0, pool.size, n), 0)
    plan.extras = extras

    tag_counts = np.searchsorted(np.cumsum(_TAG_COUNT_SHARES), rng.random(n), "right")
    plan.tag_count = np.where(nodes.tagged[plan.node], np.minimum(tag_counts, 3), 0)
    plan.tag_first = rng.integers(0, len(_TAGS), n)

    query_draw = rng.random(n) * nodes.query_size[plan.node]
    plan.query = nodes.query_base[plan.node] + query_draw.astype(np.int64)

    linked = nodes.links[plan.node] & (rng.random(n) < 0.6)
    plan.link = np.where(linked, rng.integers(0, kept, n), -1)


_KIND_TEXT = _text_array(_KINDS)
_STATUS_TEXT = _text_array(["", *(str(code) for code in _STATUS_CODES[1:])])
_STATUS_VALUES = np.array(_STATUS_CODES, dtype=np.int32)
_OTEL_STATUS = _text_array(["UNSET", "OK", "ERROR"])
_TAG_TEXT = _text_array(_TAGS)
_SCHEMA_OPEN = _text_array([None, '{"type": "object", "properties": {'])
_EXCEPTION_EVENT = '[{"name": "exception", "time_unix_nano": '


def _constant(value: str, count: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type=pa.string()), count)


def _record_columns(plan: _RecordPlan, rows: slice, project_id: str) -> dict[str, Any]:
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    kind = nodes.kind[node]
    instances = _instances()
    source = plan.source[rows]
    start, end = plan.start[rows], plan.end[rows]
    status = plan.status[rows]
    failure = plan.failure[rows]
    count = len(node)

    columns: dict[str, Any] = {
        "start_timestamp": _timestamps(start),
        "end_timestamp": _timestamps(end),
        "created_at": _timestamps(plan.created[rows]),
        "day": _days(start),
        "trace_id": _hex(plan.trace_words[plan.trace[rows]]),
        "span_id": _hex(plan.span[rows]),
        "parent_span_id": pc.if_else(
            pa.array(plan.has_parent[rows]),
            _hex(plan.parent_span[rows]),
            pa.scalar(None, type=pa.string()),
        ),
        "kind": _take(_KIND_TEXT, kind),
        "span_name": _take(nodes.span_name, node),
        "message": _message(plan, rows, escaped=False),
        "level": pa.array(plan.level[rows].astype(np.int32)),
        "http_response_status_code": pa.array(_STATUS_VALUES[status], mask=status == 0),
        "process_pid": _take(instances.pid, source),
        "duration": pa.array((end - start) / _SECOND, mask=kind != 0),
        "is_exception": pa.array(failure >= 0),
        "tags": _tags(plan.tag_count[rows], plan.tag_first[rows]),
        "attributes": _attributes(plan, rows),
        "otel_events": _exception_events(failure, end),
        "otel_links": _links(plan, plan.link[rows]),
        "otel_resource_attributes": _take(instances.resource, source),
        "otel_scope_attributes": _constant("{}", count),
        "log_body": _log_body(plan, rows),
        "attributes_json_schema": _attributes_schema(plan, rows),
        "exception_type": _take(_failures().type, failure),
        "exception_message": _take(_failures().message, failure),
        "exception_stacktrace": _take(_failures().stacktrace, failure),
        "otel_status_code": _take(_OTEL_STATUS, _otel_status(plan, rows)),
        "otel_status_message": _take(_failures().status_message, failure),
        "otel_scope_name": _take(nodes.scope_name, node),
        "otel_scope_version": _take(nodes.scope_version, node),
        "http_method": _take(nodes.http_method, node),
        "http_route": _take(nodes.http_route, node),
        "project_id": _constant(project_id, count),
        schema.VISIBLE_AT: _timestamps(plan.visible[rows]),
    }
    columns.update(_instance_columns(source))
    columns.update(_urls(plan, rows))
    return columns


def _instance_columns(source: _I64) -> dict[str, pa.Array]:
    instances = _instances()
    return {
        "service_name": _take(instances.service_name, source),
        "service_namespace": _take(instances.namespace, source),
        "service_version": _take(instances.version, source),
        "service_instance_id": _take(instances.instance_id, source),
        "telemetry_sdk_name": _take(instances.sdk_name, source),
        "telemetry_sdk_language": _take(instances.sdk_language, source),
        "telemetry_sdk_version": _take(instances.sdk_version, source),
        "deployment_environment": _take(instances.environment, source),
    }


def _message(plan: _RecordPlan, rows: slice | _I64, *, escaped: bool) -> pa.Array:
    """The formatted message; `escaped` renders it ready to sit in a JSON string."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    params = _params()
    literals = nodes.literal_escaped if escaped else nodes.literal
    values = params.escaped if escaped else params.text
    slots = plan.slots[rows]
    return _join(
        _take(literals[0], node),
        _take(values, slots[:, 0]),
        _take(literals[1], node),
        _take(values, slots[:, 1]),
        _take(literals[2], node),
    )


def _attributes(plan: _RecordPlan, rows: slice) -> pa.Array:
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    params = _params()
    slots = plan.slots[rows]
    extras = plan.extras[rows]
    fragments = [
        _take(pool.fragment, extras[:, k]) for k, pool in enumerate(_extra_pools())
    ]
    return _join(
        _take(nodes.attribute_lead, node),
        _take(nodes.slot_key[0], node),
        _take(params.json, slots[:, 0]),
        _take(nodes.slot_key[1], node),
        _take(params.json, slots[:, 1]),
        _take(nodes.status_key, node),
        _take(_STATUS_TEXT, plan.status[rows]),
        *fragments,
        "}",
    )


def _attributes_schema(plan: _RecordPlan, rows: slice) -> pa.Array:
    """The JSON schema of a row's own attributes; null when it has none."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    extras = plan.extras[rows]
    described = nodes.has_schema[node].copy()
    parts = []
    for k, pool in enumerate(_extra_pools()):
        pick = extras[:, k]
        parts.append(
            _take(pool.schema, np.where(described, pick + pool.size + 1, pick))
        )
        described |= pick > 0
    return _join(
        _take(_SCHEMA_OPEN, described.astype(np.int64)),
        _take(nodes.slot_schema[0], node),
        _take(nodes.slot_schema[1], node),
        *parts,
        "}}",
    )


def _tags(count: _I64, first: _I64) -> pa.Array:
    offsets = np.zeros(len(count) + 1, dtype=np.int32)
    np.cumsum(count, out=offsets[1:])
    total = int(offsets[-1])
    within = np.arange(total) - np.repeat(offsets[:-1], count)
    values = (np.repeat(first, count) + within) % len(_TAGS)
    return pa.ListArray.from_arrays(pa.array(offsets), _take(_TAG_TEXT, values))


def _exception_events(failure: _I64, end: _I64) -> pa.Array:
    """The `exception` event recorded with each failing row, else an empty list."""
    failing = failure >= 0
    if not failing.any():
        return _constant("[]", len(failure))
    nanos = pa.array(end[failing] * 1000).cast(pa.string())
    events = _join(
        _EXCEPTION_EVENT, nanos, _take(_failures().event_tail, failure[failing])
    )
    return pc.fill_null(_scatter(events, failing), "[]")


def _links(plan: _RecordPlan, link: _I64) -> pa.Array:
    """A link to the trace that enqueued a task, else an empty list."""
    linked = link >= 0
    if not linked.any():
        return _constant("[]", len(link))
    target = link[linked]
    links = _join(
        '[{"context": {"trace_id": "',
        _hex(plan.trace_words[target]),
        '", "span_id": "',
        _hex(plan.root_span[target]),
        '"}, "attributes": {"messaging.operation": "receive"}}]',
    )
    return pc.fill_null(_scatter(links, linked), "[]")


def _log_body(plan: _RecordPlan, rows: slice) -> pa.Array:
    """The OpenTelemetry log body of logs from non-Python services, else null."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    has_body = nodes.has_body[node]
    if not has_body.any():
        return pa.nulls(len(node), type=pa.string())

    message = _message(plan, np.flatnonzero(has_body) + rows.start, escaped=True)
    chosen = node[has_body]
    body = _join(
        _take(nodes.body_open, chosen), message, _take(nodes.body_close, chosen)
    )
    return _scatter(body, has_body)


def _otel_status(plan: _RecordPlan, rows: slice) -> _I64:
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    ok = nodes.rust[node] & (nodes.kind[node] == 0)
    return np.where(plan.role[rows] != _ROLE_NONE, 2, np.where(ok, 1, 0))


def _urls(plan: _RecordPlan, rows: slice) -> dict[str, pa.Array]:
    """The URL columns of HTTP spans; null on every other row."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    http = nodes.http[node] > 0
    if not http.any():
        empty = pa.nulls(len(node), type=pa.string())
        return {"url_full": empty, "url_path": empty, "url_query": empty}

    chosen = node[http]
    slots = plan.slots[rows][http]
    in_path = nodes.path_slots[chosen]
    text = _params().text
    path = _join(
        _take(nodes.path_literal[0], chosen),
        _take(text, np.where(in_path > 0, slots[:, 0], 0)),
        _take(nodes.path_literal[1], chosen),
        _take(text, np.where(in_path > 1, slots[:, 1], 0)),
        _take(nodes.path_literal[2], chosen),
    )
    query = plan.query[rows][http]
    catalog = plan.catalog
    full = _join(_take(nodes.host, chosen), path, _take(catalog.query_suffix, query))
    return {
        "url_full": _scatter(full, http),
        "url_path": _scatter(path, http),
        "url_query": _scatter(_take(catalog.query_text, query), http),
    }


# ---------------------------------------------------------------------------
# Metrics: export batches of points, one point per series of an instance.

_MetricType = Literal["gauge", "sum", "histogram", "exponential_histogram"]
_METRIC_TYPES: tuple[_MetricType, ...] = (
    "gauge",
    "sum",
    "histogram",
    "exponential_histogram",
)
_GAUGE, _SUM, _HISTOGRAM, _EXPONENTIAL = range(4)

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
class _Metric:
    name: str
    type: _MetricType
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


_METRICS = (
    _Metric(
        "nodejs.eventloop.utilization",
        "gauge",
        "1",
        "Event loop utilization",
        ("api-gateway",),
        ({},),
        scope="node-runtime",
        value=0.2,
    ),
    _Metric(
        "process.runtime.cpython.memory",
        "gauge",
        "By",
        "Runtime cpython memory",
        _PYTHON,
        ({"type": "rss"}, {"type": "vms"}),
        value=2.4e8,
    ),
    _Metric(
        "system.cpu.utilization",
        "gauge",
        "1",
        "System CPU utilization",
        _PYTHON,
        ({"cpu": 0, "state": "user"}, {"cpu": 1, "state": "system"}),
        value=0.3,
    ),
    _Metric(
        "queue.depth",
        "gauge",
        "{message}",
        "Messages waiting in a queue",
        ("worker",),
        ({"queue": "emails"}, {"queue": "imports 📦"}),
        scope="shop-metrics",
        value=40.0,
    ),
    _Metric(
        "browser.memory.used",
        "gauge",
        "By",
        None,
        ("frontend",),
        ({"page": "/checkout"}, {"page": "/café"}),
        scope="shop-metrics",
        value=5e7,
    ),
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
    _Metric(
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
class _MetricCatalog:
    """The metric definitions and their series, compiled for vectorised use."""

    type: _I64
    cumulative: _Bool
    name: pa.Array
    type_text: pa.Array
    unit: pa.Array
    description: pa.Array
    temporality: pa.Array
    monotonic: pa.Array
    scope_name: pa.Array
    scope_version: pa.Array
    series_metric: _I64
    series_attributes: pa.Array
    series_schema: pa.Array
    service_first: _I64
    service_series: _I64


@functools.cache
def _metric_catalog() -> _MetricCatalog:
    series_metric: list[int] = []
    attributes: list[str] = []
    schemas: list[str] = []
    service_first, service_series = [], []
    for service in _SERVICES:
        service_first.append(len(series_metric))
        for m_index, metric in enumerate(_METRICS):
            if service.name not in metric.services:
                continue
            for attrs in metric.attributes:
                series_metric.append(m_index)
                attributes.append(json.dumps(attrs, ensure_ascii=False))
                properties: dict[str, object] = {key: {} for key in attrs}
                schemas.append(json.dumps({"type": "object", "properties": properties}))
        service_series.append(len(series_metric) - service_first[-1])

    def texts(values: Sequence[str | None]) -> pa.Array:
        return _text_array(values)

    return _MetricCatalog(
        type=np.array([_METRIC_TYPES.index(m.type) for m in _METRICS], dtype=np.int64),
        cumulative=np.array([m.temporality == "cumulative" for m in _METRICS]),
        name=texts([m.name for m in _METRICS]),
        type_text=texts([m.type for m in _METRICS]),
        unit=texts([m.unit for m in _METRICS]),
        description=texts([m.description for m in _METRICS]),
        temporality=texts([m.temporality for m in _METRICS]),
        monotonic=pa.array([m.monotonic for m in _METRICS], type=pa.bool_()),
        scope_name=texts([_SCOPES[m.scope][0] for m in _METRICS]),
        scope_version=texts([_SCOPES[m.scope][1] for m in _METRICS]),
        series_metric=np.array(series_metric, dtype=np.int64),
        series_attributes=texts(attributes),
        series_schema=texts(schemas),
        service_first=np.array(service_first, dtype=np.int64),
        service_series=np.array(service_series, dtype=np.int64),
    )


@dataclass
class _Lists:
    """A list column for all rows: offsets into flat values, and null rows."""

    offsets: _I64
    values: npt.NDArray[Any]
    null: _Bool

    def column(self, rows: slice, value_type: pa.DataType) -> pa.Array:
        offsets = self.offsets[rows.start : rows.stop + 1]
        values = self.values[offsets[0] : offsets[-1]]
        return pa.ListArray.from_arrays(
            pa.array((offsets - offsets[0]).astype(np.int32)),
            pa.array(values, type=value_type),
            mask=pa.array(self.null[rows]),
        )


def _lists(lengths: _I64, null: _Bool, dtype: type[np.generic]) -> _Lists:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _Lists(offsets, np.zeros(int(offsets[-1]), dtype=dtype), null)


@dataclass
class _MetricPlan:
    """Every metric point, in `created_at` order; `batch` renders a chunk."""

    catalog: _MetricCatalog
    metric: _I64
    series: _I64
    source: _I64
    recorded: _I64
    start: _I64
    created: _I64
    visible: _I64
    scalar: _F64 = field(init=False)
    count: _I64 = field(init=False)
    total: _F64 = field(init=False)
    low: _F64 = field(init=False)
    high: _F64 = field(init=False)
    buckets: _Lists = field(init=False)
    bounds: _Lists = field(init=False)
    scale: _I64 = field(init=False)
    zero_count: _I64 = field(init=False)
    positive_offset: _I64 = field(init=False)
    negative_offset: _I64 = field(init=False)
    positive: _Lists = field(init=False)
    negative: _Lists = field(init=False)
    exemplar: _Bool = field(init=False)
    exemplar_words: _U64 = field(init=False)

    def batch(self, a: int, b: int, project_id: str) -> pa.RecordBatch:
        """Points `a` to `b` as a record batch of the stored schema."""
        columns = _metric_columns(self, slice(a, b), project_id)
        arrays = [columns[f.name] for f in _METRICS_STORED]
        return pa.RecordBatch.from_arrays(arrays, schema=_METRICS_STORED)


def _plan_metrics(rng: np.random.Generator, n: int, lo: int, hi: int) -> _MetricPlan:
    catalog = _metric_catalog()
    services = np.flatnonzero(catalog.service_series > 0)
    count = int(n / catalog.service_series[services].mean() * 1.1) + 8
    while True:
        service = rng.choice(services, size=count)
        sizes = catalog.service_series[service]
        if sizes.sum() >= n:
            break
        count *= 2

    environment = rng.choice(len(_ENVIRONMENTS), size=count, p=_ENVIRONMENT_WEIGHTS)
    source = _instance_index(service, environment, rng.integers(0, _REPLICAS, count))
    recorded = np.sort(rng.integers(lo, hi, count))
    uptime = rng.integers(10 * _MINUTE, 30 * _HOUR, count)
    skew = _skews(rng, count, _SKEWED_ROW_SHARE)
    stored = recorded + _ingest_delays(rng, count)
    shown = stored + _visibility_delays(rng, count)

    first = np.cumsum(sizes) - sizes
    batch = np.repeat(np.arange(count), sizes)[:n]
    series = catalog.service_first[service[batch]] + np.arange(n) - first[batch]
    order = np.argsort(stored[batch], kind="stable")
    batch, series = batch[order], series[order]

    metric = catalog.series_metric[series]
    kind = catalog.type[metric]
    point = recorded[batch] + skew[batch]
    aggregated = np.where(catalog.cumulative[metric], uptime[batch], _MINUTE)
    plan = _MetricPlan(
        catalog=catalog,
        metric=metric,
        series=series,
        source=source[batch],
        recorded=point,
        start=np.where(kind == _GAUGE, 0, point - aggregated),
        created=stored[batch],
        visible=shown[batch],
    )
    _measure(rng, plan, uptime[batch] / _SECOND)
    return plan


def _measure(rng: np.random.Generator, plan: _MetricPlan, uptime: _F64) -> None:
    """Draw every point's values, metric by metric."""
    n = len(plan.metric)
    kind = plan.catalog.type[plan.metric]
    plan.scalar = np.full(n, np.nan)
    plan.count = np.zeros(n, dtype=np.int64)
    plan.total = np.full(n, np.nan)
    plan.low = np.full(n, np.nan)
    plan.high = np.full(n, np.nan)
    plan.scale = np.zeros(n, dtype=np.int64)
    plan.zero_count = np.zeros(n, dtype=np.int64)
    plan.positive_offset = np.zeros(n, dtype=np.int64)
    plan.negative_offset = np.zeros(n, dtype=np.int64)

    histogram = kind == _HISTOGRAM
    exponential = kind == _EXPONENTIAL
    bucket_count = np.array([len(m.bounds) + 1 if m.bounds else 0 for m in _METRICS])
    widths = bucket_count[plan.metric]
    plan.buckets = _lists(widths, ~histogram, np.int64)
    plan.bounds = _lists(np.maximum(widths - 1, 0), ~histogram, np.float64)

    positive_width = np.where(exponential, rng.integers(1, 21, n), 0)
    signed = np.array([m.negative for m in _METRICS])[plan.metric]
    has_negative = signed & (rng.random(n) < 0.4)
    negative_width = np.where(exponential & has_negative, rng.integers(1, 7, n), 0)
    plan.positive = _lists(positive_width, ~exponential, np.int64)
    plan.negative = _lists(negative_width, ~exponential, np.int64)

    for m_index, metric in enumerate(_METRICS):
        rows = np.flatnonzero(plan.metric == m_index)
        if not len(rows):
            continue
        observed = _observations(rng, metric, uptime[rows])
        if metric.type in ("gauge", "sum"):
            plan.scalar[rows] = _scalar_values(rng, metric, observed)
        elif metric.type == "histogram":
            _explicit_histogram(rng, plan, metric, rows, observed)
        else:
            _exponential_histogram(rng, plan, metric, rows)

    plan.exemplar = (histogram | exponential) & (rng.random(n) < 0.25)
    plan.exemplar_words = _random_words(rng, (n, 3))


def _observations(rng: np.random.Generator, metric: _Metric, uptime: _F64) -> _F64:
    """How much a point aggregates: an export interval, or the process lifetime."""
    seconds = (
        uptime if metric.temporality == "cumulative" else np.full(len(uptime), 60.0)
    )
    return metric.value * seconds * rng.uniform(0.8, 1.2, len(uptime))


def _scalar_values(rng: np.random.Generator, metric: _Metric, observed: _F64) -> _F64:
    count = len(observed)
    if metric.type == "gauge":
        values = metric.value * rng.lognormal(0.0, 0.3, count)
        return np.minimum(values, 1.0) if metric.unit == "1" else np.round(values, 3)
    if metric.monotonic:
        return np.floor(observed)
    return np.floor(metric.value * rng.uniform(0.0, 2.0, count))


def _lognormal_shares(bounds: tuple[float, ...], median: float) -> _F64:
    """The share of observations in each bucket, for log-normal observations."""

    def below(bound: float) -> float:
        if bound <= 0:
            return 0.0
        return 0.5 * (1 + math.erf(math.log(bound / median) / math.sqrt(2)))

    edges = [0.0, *(below(b) for b in bounds), 1.0]
    shares = np.diff(np.array(edges))
    return np.asarray(shares / shares.sum(), dtype=np.float64)


def _explicit_histogram(
    rng: np.random.Generator,
    plan: _MetricPlan,
    metric: _Metric,
    rows: _I64,
    observed: _F64,
) -> None:
    totals = np.maximum(observed.astype(np.int64), 1)
    counts = rng.multinomial(totals, _lognormal_shares(metric.bounds, metric.median))
    width = counts.shape[1]
    places = plan.buckets.offsets[rows][:, None] + np.arange(width)
    plan.buckets.values[places] = counts
    bounds = np.array(metric.bounds, dtype=np.float64)
    plan.bounds.values[plan.bounds.offsets[rows][:, None] + np.arange(width - 1)] = (
        bounds
    )

    lower = np.concatenate([[0.0], bounds])
    upper = np.concatenate([bounds, [bounds[-1] * 2]])
    middle = (lower + upper) / 2
    filled = counts > 0
    first = filled.argmax(axis=1)
    last = width - 1 - filled[:, ::-1].argmax(axis=1)
    low = lower[first] + (upper[first] - lower[first]) * rng.random(len(rows)) * 0.5
    high = upper[last] - (upper[last] - lower[last]) * rng.random(len(rows)) * 0.5
    plan.count[rows] = totals
    plan.low[rows] = np.round(low, 4)
    plan.high[rows] = np.round(np.maximum(high, low), 4)
    plan.total[rows] = np.round(
        np.clip(counts @ middle, low * totals, high * totals), 4
    )


def _exponential_histogram(
    rng: np.random.Generator, plan: _MetricPlan, metric: _Metric, rows: _I64
) -> None:
    base = 2.0 ** (2.0**-metric.scale)
    centre = math.floor(math.log2(metric.median) * 2**metric.scale)
    positive = _exponential_side(rng, plan.positive, rows, base, centre)
    negative = _exponential_side(rng, plan.negative, rows, base, centre)
    zero = np.where(rng.random(len(rows)) < 0.2, rng.integers(1, 4, len(rows)), 0)

    plan.scale[rows] = metric.scale
    plan.zero_count[rows] = zero
    plan.positive_offset[rows] = positive.offset
    plan.negative_offset[rows] = negative.offset
    plan.count[rows] = zero + positive.count + negative.count
    plan.total[rows] = np.round(positive.total - negative.total, 4)
    smallest = np.where(zero > 0, 0.0, base**positive.offset)
    plan.low[rows] = np.round(np.where(negative.count > 0, -negative.top, smallest), 6)
    plan.high[rows] = np.round(positive.top, 6)


@dataclass(frozen=True)
class _Side:
    """One side (positive or negative) of exponential histogram points."""

    offset: _I64
    count: _I64
    total: _F64
    top: _F64
    """The upper edge of the highest bucket: the largest magnitude seen."""


def _exponential_side(
    rng: np.random.Generator, lists: _Lists, rows: _I64, base: float, centre: int
) -> _Side:
    """Fill one side's bucket counts for `rows`, centred on bucket `centre`."""
    width = lists.offsets[rows + 1] - lists.offsets[rows]
    jitter = rng.integers(-2, 3, len(rows))
    offset = np.where(width > 0, centre - width // 2 + jitter, 0).astype(np.int64)

    owner = np.repeat(np.arange(len(rows)), width)
    index = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
    counts = rng.integers(0, 30, len(index))
    # The lowest and highest buckets hold something, so they bound the values.
    counts[index == 0] += 1
    counts[index == np.repeat(width - 1, width)] += 1
    lists.values[np.repeat(lists.offsets[rows], width) + index] = counts

    middle = base ** (np.repeat(offset, width) + index + 0.5)
    total = np.bincount(owner, weights=counts * middle, minlength=len(rows))
    count = np.bincount(owner, weights=counts, minlength=len(rows))
    return _Side(
        offset=offset,
        count=count.astype(np.int64),
        total=np.asarray(total, dtype=np.float64),
        top=np.asarray(base ** (offset + width), dtype=np.float64),
    )


def _nullable(
    values: npt.NDArray[Any], null: _Bool, value_type: pa.DataType
) -> pa.Array:
    return pa.array(values, mask=null, type=value_type)


def _metric_columns(plan: _MetricPlan, rows: slice, project_id: str) -> dict[str, Any]:
    catalog = plan.catalog
    metric = plan.metric[rows]
    series = plan.series[rows]
    source = plan.source[rows]
    kind = catalog.type[metric]
    scalar = plan.scalar[rows]
    histogram = (kind == _HISTOGRAM) | (kind == _EXPONENTIAL)
    exponential = kind == _EXPONENTIAL
    recorded = plan.recorded[rows]
    count = len(metric)

    columns: dict[str, Any] = {
        "recorded_timestamp": _timestamps(recorded),
        "start_timestamp": _nullable(
            plan.start[rows], kind == _GAUGE, schema.TIMESTAMP
        ),
        "created_at": _timestamps(plan.created[rows]),
        "day": _days(recorded),
        "metric_name": _take(catalog.name, metric),
        "metric_type": _take(catalog.type_text, metric),
        "unit": _take(catalog.unit, metric),
        "metric_description": _take(catalog.description, metric),
        "aggregation_temporality": _take(catalog.temporality, metric),
        "is_monotonic": _take(catalog.monotonic, metric),
        "scalar_value": _nullable(scalar, np.isnan(scalar), pa.float64()),
        "histogram_min": _nullable(plan.low[rows], ~histogram, pa.float64()),
        "histogram_max": _nullable(plan.high[rows], ~histogram, pa.float64()),
        "histogram_sum": _nullable(plan.total[rows], ~histogram, pa.float64()),
        "exp_histogram_zero_threshold": _nullable(
            np.zeros(count), ~exponential, pa.float64()
        ),
        "histogram_count": _nullable(plan.count[rows], ~histogram, pa.int64()),
        "exp_histogram_scale": _nullable(plan.scale[rows], ~exponential, pa.int32()),
        "exp_histogram_zero_count": _nullable(
            plan.zero_count[rows], ~exponential, pa.int64()
        ),
        "exp_histogram_positive_bucket_counts_offset": _nullable(
            plan.positive_offset[rows], ~exponential, pa.int32()
        ),
        "exp_histogram_negative_bucket_counts_offset": _nullable(
            plan.negative_offset[rows], ~exponential, pa.int32()
        ),
        "process_pid": _take(_instances().pid, source),
        "histogram_bucket_counts": plan.buckets.column(rows, pa.int64()),
        "exp_histogram_positive_bucket_counts": plan.positive.column(rows, pa.int64()),
        "exp_histogram_negative_bucket_counts": plan.negative.column(rows, pa.int64()),
        "histogram_explicit_bounds": plan.bounds.column(rows, pa.float64()),
        "attributes": _take(catalog.series_attributes, series),
        "exemplars": _exemplars(plan, rows),
        "otel_scope_attributes": _constant("{}", count),
        "otel_resource_attributes": _take(_instances().resource, source),
        "attributes_json_schema": _take(catalog.series_schema, series),
        "otel_scope_name": _take(catalog.scope_name, metric),
        "otel_scope_version": _take(catalog.scope_version, metric),
        "project_id": _constant(project_id, count),
        schema.VISIBLE_AT: _timestamps(plan.visible[rows]),
    }
    columns.update(_instance_columns(source))
    return columns


def _exemplars(plan: _MetricPlan, rows: slice) -> pa.Array:
    """One exemplar for a share of histogram points, linking to a trace."""
    chosen = plan.exemplar[rows]
    if not chosen.any():
        return _constant("[]", len(chosen))
    words = plan.exemplar_words[rows][chosen]
    counts = np.maximum(plan.count[rows][chosen], 1)
    value = np.round(plan.total[rows][chosen] / counts, 4)
    # The span id's bits also place the exemplar up to a minute before the export.
    nanos = (
        plan.recorded[rows][chosen] - (words[:, 2] % _MINUTE).astype(np.int64)
    ) * 1000
    exemplars = _join(
        '[{"filtered_attributes": {}, "time_unix_nano": ',
        pa.array(nanos).cast(pa.string()),
        ', "span_id": "',
        _hex(words[:, 2]),
        '", "trace_id": "',
        _hex(words[:, :2]),
        '", "value": ',
        pa.array(value).cast(pa.string()),
        "}]",
    )
    return pc.fill_null(_scatter(exemplars, chosen), "[]")
