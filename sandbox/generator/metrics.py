"""The `metrics` table: export batches of points from every service instance.

Each export carries one point per series of its service. Gauges and sums hold a
scalar; histograms hold bucket counts drawn from a log-normal distribution of
observations; exponential histograms hold positive and, for signed metrics,
negative buckets around the metric's median. As for records, every draw happens
while planning and chunks render in parallel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sandbox import schema
from sandbox.generator.columns import (
    constant,
    days,
    hex_text,
    join,
    random_words,
    scatter,
    take,
    timestamps,
)
from sandbox.generator.metric_catalog import (
    EXPONENTIAL,
    GAUGE,
    HISTOGRAM,
    METRICS,
    Metric,
    MetricCatalog,
    metric_catalog,
)
from sandbox.generator.services import (
    ENVIRONMENT_WEIGHTS,
    ENVIRONMENTS,
    REPLICAS,
    instance_columns,
    instance_index,
    instance_table,
)
from sandbox.generator.tables import build_table, check_arguments
from sandbox.generator.timing import (
    HOUR,
    MINUTE,
    SECOND,
    SKEWED_ROW_SHARE,
    ingest_delays,
    skews,
    visibility_delays,
)
from sandbox.generator.typing import F64, I64, U64, Bool

_METRICS_STORED = schema.METRICS.append(
    pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, nullable=False)
)


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
    lo, hi = check_arguments(n, seed, start, end)
    if n == 0:
        return _METRICS_STORED.empty_table()

    rng = np.random.Generator(np.random.PCG64(seed))
    plan = _plan_metrics(rng, n, lo, hi)
    return build_table(n, _METRICS_STORED, lambda a, b: plan.batch(a, b, project_id))


@dataclass
class _Lists:
    """A list column for all rows: offsets into flat values, and null rows."""

    offsets: I64
    values: npt.NDArray[Any]
    null: Bool

    def column(self, rows: slice, value_type: pa.DataType) -> pa.Array:
        offsets = self.offsets[rows.start : rows.stop + 1]
        values = self.values[offsets[0] : offsets[-1]]
        return pa.ListArray.from_arrays(
            pa.array((offsets - offsets[0]).astype(np.int32)),
            pa.array(values, type=value_type),
            mask=pa.array(self.null[rows]),
        )


def _lists(lengths: I64, null: Bool, dtype: type[np.generic]) -> _Lists:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _Lists(offsets, np.zeros(int(offsets[-1]), dtype=dtype), null)


@dataclass
class _MetricPlan:
    """Every metric point, in `created_at` order; `batch` renders a chunk."""

    catalog: MetricCatalog
    metric: I64
    series: I64
    source: I64
    recorded: I64
    start: I64
    created: I64
    visible: I64
    scalar: F64 = field(init=False)
    count: I64 = field(init=False)
    total: F64 = field(init=False)
    low: F64 = field(init=False)
    high: F64 = field(init=False)
    buckets: _Lists = field(init=False)
    bounds: _Lists = field(init=False)
    scale: I64 = field(init=False)
    zero_count: I64 = field(init=False)
    positive_offset: I64 = field(init=False)
    negative_offset: I64 = field(init=False)
    positive: _Lists = field(init=False)
    negative: _Lists = field(init=False)
    exemplar: Bool = field(init=False)
    exemplar_words: U64 = field(init=False)

    def batch(self, a: int, b: int, project_id: str) -> pa.RecordBatch:
        """Points `a` to `b` as a record batch of the stored schema."""
        columns = _metric_columns(self, slice(a, b), project_id)
        arrays = [columns[f.name] for f in _METRICS_STORED]
        return pa.RecordBatch.from_arrays(arrays, schema=_METRICS_STORED)


def _plan_metrics(rng: np.random.Generator, n: int, lo: int, hi: int) -> _MetricPlan:
    catalog = metric_catalog()
    services = np.flatnonzero(catalog.service_series > 0)
    count = int(n / catalog.service_series[services].mean() * 1.1) + 8
    while True:
        service = rng.choice(services, size=count)
        sizes = catalog.service_series[service]
        if sizes.sum() >= n:
            break
        count *= 2

    environment = rng.choice(len(ENVIRONMENTS), size=count, p=ENVIRONMENT_WEIGHTS)
    source = instance_index(service, environment, rng.integers(0, REPLICAS, count))
    recorded = np.sort(rng.integers(lo, hi, count))
    uptime = rng.integers(10 * MINUTE, 30 * HOUR, count)
    skew = skews(rng, count, SKEWED_ROW_SHARE)
    stored = recorded + ingest_delays(rng, count)
    shown = stored + visibility_delays(rng, count)

    first = np.cumsum(sizes) - sizes
    batch = np.repeat(np.arange(count), sizes)[:n]
    series = catalog.service_first[service[batch]] + np.arange(n) - first[batch]
    order = np.argsort(stored[batch], kind="stable")
    batch, series = batch[order], series[order]

    metric = catalog.series_metric[series]
    kind = catalog.type[metric]
    point = recorded[batch] + skew[batch]
    aggregated = np.where(catalog.cumulative[metric], uptime[batch], MINUTE)
    plan = _MetricPlan(
        catalog=catalog,
        metric=metric,
        series=series,
        source=source[batch],
        recorded=point,
        start=np.where(kind == GAUGE, 0, point - aggregated),
        created=stored[batch],
        visible=shown[batch],
    )
    _measure(rng, plan, uptime[batch] / SECOND)
    return plan


def _measure(rng: np.random.Generator, plan: _MetricPlan, uptime: F64) -> None:
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

    histogram = kind == HISTOGRAM
    exponential = kind == EXPONENTIAL
    bucket_count = np.array([len(m.bounds) + 1 if m.bounds else 0 for m in METRICS])
    widths = bucket_count[plan.metric]
    plan.buckets = _lists(widths, ~histogram, np.int64)
    plan.bounds = _lists(np.maximum(widths - 1, 0), ~histogram, np.float64)

    positive_width = np.where(exponential, rng.integers(1, 21, n), 0)
    signed = np.array([m.negative for m in METRICS])[plan.metric]
    has_negative = signed & (rng.random(n) < 0.4)
    negative_width = np.where(exponential & has_negative, rng.integers(1, 7, n), 0)
    plan.positive = _lists(positive_width, ~exponential, np.int64)
    plan.negative = _lists(negative_width, ~exponential, np.int64)

    for m_index, metric in enumerate(METRICS):
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
    plan.exemplar_words = random_words(rng, (n, 3))


def _observations(rng: np.random.Generator, metric: Metric, uptime: F64) -> F64:
    """How much a point aggregates: an export interval, or the process lifetime."""
    seconds = (
        uptime if metric.temporality == "cumulative" else np.full(len(uptime), 60.0)
    )
    return metric.value * seconds * rng.uniform(0.8, 1.2, len(uptime))


def _scalar_values(rng: np.random.Generator, metric: Metric, observed: F64) -> F64:
    count = len(observed)
    if metric.type == "gauge":
        values = metric.value * rng.lognormal(0.0, 0.3, count)
        return np.minimum(values, 1.0) if metric.unit == "1" else np.round(values, 3)
    if metric.monotonic:
        return np.floor(observed)
    return np.floor(metric.value * rng.uniform(0.0, 2.0, count))


def _lognormal_shares(bounds: tuple[float, ...], median: float) -> F64:
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
    metric: Metric,
    rows: I64,
    observed: F64,
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
    rng: np.random.Generator, plan: _MetricPlan, metric: Metric, rows: I64
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

    offset: I64
    count: I64
    total: F64
    top: F64
    """The upper edge of the highest bucket: the largest magnitude seen."""


def _exponential_side(
    rng: np.random.Generator, lists: _Lists, rows: I64, base: float, centre: int
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
    values: npt.NDArray[Any], null: Bool, value_type: pa.DataType
) -> pa.Array:
    return pa.array(values, mask=null, type=value_type)


def _metric_columns(plan: _MetricPlan, rows: slice, project_id: str) -> dict[str, Any]:
    catalog = plan.catalog
    metric = plan.metric[rows]
    series = plan.series[rows]
    source = plan.source[rows]
    kind = catalog.type[metric]
    scalar = plan.scalar[rows]
    histogram = (kind == HISTOGRAM) | (kind == EXPONENTIAL)
    exponential = kind == EXPONENTIAL
    recorded = plan.recorded[rows]
    count = len(metric)

    columns: dict[str, Any] = {
        "recorded_timestamp": timestamps(recorded),
        "start_timestamp": _nullable(plan.start[rows], kind == GAUGE, schema.TIMESTAMP),
        "created_at": timestamps(plan.created[rows]),
        "day": days(recorded),
        "metric_name": take(catalog.name, metric),
        "metric_type": take(catalog.type_text, metric),
        "unit": take(catalog.unit, metric),
        "metric_description": take(catalog.description, metric),
        "aggregation_temporality": take(catalog.temporality, metric),
        "is_monotonic": take(catalog.monotonic, metric),
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
        "process_pid": take(instance_table().pid, source),
        "histogram_bucket_counts": plan.buckets.column(rows, pa.int64()),
        "exp_histogram_positive_bucket_counts": plan.positive.column(rows, pa.int64()),
        "exp_histogram_negative_bucket_counts": plan.negative.column(rows, pa.int64()),
        "histogram_explicit_bounds": plan.bounds.column(rows, pa.float64()),
        "attributes": take(catalog.series_attributes, series),
        "exemplars": _exemplars(plan, rows),
        "otel_scope_attributes": constant("{}", count),
        "otel_resource_attributes": take(instance_table().resource, source),
        "attributes_json_schema": take(catalog.series_schema, series),
        "otel_scope_name": take(catalog.scope_name, metric),
        "otel_scope_version": take(catalog.scope_version, metric),
        "project_id": constant(project_id, count),
        schema.VISIBLE_AT: timestamps(plan.visible[rows]),
    }
    columns.update(instance_columns(source))
    return columns


def _exemplars(plan: _MetricPlan, rows: slice) -> pa.Array:
    """One exemplar for a share of histogram points, linking to a trace."""
    chosen = plan.exemplar[rows]
    if not chosen.any():
        return constant("[]", len(chosen))
    words = plan.exemplar_words[rows][chosen]
    counts = np.maximum(plan.count[rows][chosen], 1)
    value = np.round(plan.total[rows][chosen] / counts, 4)
    # The span id's bits also place the exemplar up to a minute before the export.
    nanos = (
        plan.recorded[rows][chosen] - (words[:, 2] % MINUTE).astype(np.int64)
    ) * 1000
    exemplars = join(
        '[{"filtered_attributes": {}, "time_unix_nano": ',
        pa.array(nanos).cast(pa.string()),
        ', "span_id": "',
        hex_text(words[:, 2]),
        '", "trace_id": "',
        hex_text(words[:, :2]),
        '", "value": ',
        pa.array(value).cast(pa.string()),
        "}]",
    )
    return pc.fill_null(scatter(exemplars, chosen), "[]")
