from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox import schema
from sandbox.generator import generate_metrics, generate_records

END = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=6)
HOUR = 3_600_000_000
MINUTE = 60_000_000


@pytest.fixture(scope="module")
def records() -> pa.Table:
    return generate_records(30_000, seed=7, start=START, end=END)


@pytest.fixture(scope="module")
def metrics() -> pa.Table:
    return generate_metrics(6_000, seed=7, start=START, end=END)


def micros(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    values = table.column(column).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.int64)


def where(table: pa.Table, column: str, value: object) -> pa.Table:
    return table.filter(pc.equal(table.column(column), value))


def pairs(table: pa.Table, first: str, second: str) -> list[tuple[object, object]]:
    columns = (table.column(first).to_pylist(), table.column(second).to_pylist())
    return list(zip(*columns, strict=True))


def stored(public: pa.Schema) -> pa.Schema:
    return public.append(pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, nullable=False))


# Determinism, counts and schemas.


def test_records_are_the_same_for_the_same_seed() -> None:
    first = generate_records(2_000, seed=11, start=START, end=END)
    second = generate_records(2_000, seed=11, start=START, end=END)
    assert first.equals(second)


def test_records_differ_between_seeds() -> None:
    first = generate_records(2_000, seed=11, start=START, end=END)
    second = generate_records(2_000, seed=12, start=START, end=END)
    assert not first.equals(second)


def test_metrics_are_the_same_for_the_same_seed() -> None:
    first = generate_metrics(1_000, seed=11, start=START, end=END)
    second = generate_metrics(1_000, seed=11, start=START, end=END)
    assert first.equals(second)


def test_metrics_differ_between_seeds() -> None:
    first = generate_metrics(1_000, seed=11, start=START, end=END)
    second = generate_metrics(1_000, seed=12, start=START, end=END)
    assert not first.equals(second)


@pytest.mark.parametrize("n", [0, 1, 2, 17, 999, 4_321])
def test_records_have_exactly_the_requested_row_count(n: int) -> None:
    assert generate_records(n, seed=1, start=START, end=END).num_rows == n


@pytest.mark.parametrize("n", [0, 1, 2, 17, 999, 4_321])
def test_metrics_have_exactly_the_requested_row_count(n: int) -> None:
    assert generate_metrics(n, seed=1, start=START, end=END).num_rows == n


def test_records_have_the_records_schema_and_visible_at(records: pa.Table) -> None:
    assert records.schema.equals(stored(schema.RECORDS))


def test_metrics_have_the_metrics_schema_and_visible_at(metrics: pa.Table) -> None:
    assert metrics.schema.equals(stored(schema.METRICS))


def test_empty_records_still_have_the_schema() -> None:
    empty = generate_records(0, seed=1, start=START, end=END)
    assert empty.schema.equals(stored(schema.RECORDS))


@pytest.mark.parametrize(
    "generate", [generate_records, generate_metrics], ids=["records", "metrics"]
)
def test_required_columns_hold_no_nulls(generate: Callable[..., pa.Table]) -> None:
    table = generate(3_000, seed=5, start=START, end=END)
    for field in table.schema:
        if not field.nullable:
            assert table.column(field.name).null_count == 0, field.name


def test_project_id_is_the_one_asked_for() -> None:
    table = generate_records(100, seed=1, start=START, end=END, project_id="p-42")
    assert set(table.column("project_id").to_pylist()) == {"p-42"}


@pytest.mark.parametrize(
    ("n", "seed", "start", "end"),
    [
        (-1, 1, START, END),
        (10, -1, START, END),
        (10, 1, END, START),
        (10, 1, START.replace(tzinfo=None), END),
    ],
    ids=["negative count", "negative seed", "empty range", "naive time"],
)
def test_bad_arguments_raise_value_error(
    n: int, seed: int, start: datetime, end: datetime
) -> None:
    with pytest.raises(ValueError, match=r"\."):
        generate_records(n, seed=seed, start=start, end=end)


# Timing, as Logfire stores data.


def test_records_are_ordered_by_created_at(records: pa.Table) -> None:
    assert np.all(np.diff(micros(records, "created_at")) >= 0)


def test_metrics_are_ordered_by_created_at(metrics: pa.Table) -> None:
    assert np.all(np.diff(micros(metrics, "created_at")) >= 0)


def test_every_record_starts_within_the_ingest_window(records: pa.Table) -> None:
    created = micros(records, "created_at")
    start = micros(records, "start_timestamp")
    assert np.all(created - 24 * HOUR <= start)
    assert np.all(start <= created + HOUR)


def test_every_metric_point_is_recorded_within_the_ingest_window(
    metrics: pa.Table,
) -> None:
    created = micros(metrics, "created_at")
    recorded = micros(metrics, "recorded_timestamp")
    assert np.all(created - 24 * HOUR <= recorded)
    assert np.all(recorded <= created + HOUR)


def test_no_record_ends_before_it_starts(records: pa.Table) -> None:
    assert np.all(
        micros(records, "end_timestamp") >= micros(records, "start_timestamp")
    )


@pytest.mark.parametrize("table_name", ["records", "metrics"])
def test_rows_become_visible_within_five_minutes_of_being_stored(
    table_name: str, request: pytest.FixtureRequest
) -> None:
    table = request.getfixturevalue(table_name)
    delay = micros(table, schema.VISIBLE_AT) - micros(table, "created_at")
    assert delay.min() >= 0
    assert delay.max() <= 5 * MINUTE


def test_spans_are_stored_after_they_end(records: pa.Table) -> None:
    spans = where(records, "kind", "span")
    lag = micros(spans, "created_at") - micros(spans, "end_timestamp")
    ahead = micros(spans, "start_timestamp") > micros(spans, "created_at")
    assert np.all(lag[~ahead] > 0)


def test_some_spans_are_stored_more_than_an_hour_after_they_start(
    records: pa.Table,
) -> None:
    spans = where(records, "kind", "span")
    age = micros(spans, "created_at") - micros(spans, "start_timestamp")
    assert (age > HOUR).sum() >= 5


def test_some_records_start_after_they_are_stored(records: pa.Table) -> None:
    ahead = micros(records, "start_timestamp") > micros(records, "created_at")
    assert 0 < ahead.mean() < 0.01


def test_root_spans_start_in_the_range_unless_their_clock_runs_ahead(
    records: pa.Table,
) -> None:
    roots = records.filter(pc.is_null(records.column("parent_span_id")))
    start = micros(roots, "start_timestamp")
    end = int(pa.scalar(END, type=schema.TIMESTAMP).cast(pa.int64()).as_py())
    late = start >= end
    services = np.array(roots.column("service_name").to_pylist())
    assert start.min() >= end - 6 * HOUR
    assert set(services[late]) <= {"frontend"}
    assert np.all(start[late] < end + 50 * MINUTE)


def test_more_than_a_hundred_rows_often_share_one_created_at(
    records: pa.Table,
) -> None:
    sizes = Counter(micros(records, "created_at").tolist())
    assert sum(1 for size in sizes.values() if size > 100) >= 3


def test_metric_points_of_one_export_share_created_at(metrics: pa.Table) -> None:
    sizes = Counter(micros(metrics, "created_at").tolist())
    assert np.median(list(sizes.values())) > 3


# Shape of the records.


def test_ids_are_lowercase_hex_of_the_right_length(records: pa.Table) -> None:
    columns = {"trace_id": 32, "span_id": 16, "parent_span_id": 16}
    for column, width in columns.items():
        pattern = f"^[0-9a-f]{{{width}}}$"
        values = records.column(column).drop_null()
        assert pc.all(pc.match_substring_regex(values, pattern)).as_py(), column


def test_span_ids_are_unique_among_spans_and_logs(records: pa.Table) -> None:
    own_ids = records.filter(pc.not_equal(records.column("kind"), "span_event"))
    assert pc.count_distinct(own_ids.column("span_id")).as_py() == own_ids.num_rows


def test_span_events_reuse_the_span_id_of_a_span_in_their_trace(
    records: pa.Table,
) -> None:
    spans = where(records, "kind", "span")
    events = where(records, "kind", "span_event")
    span_keys = set(pairs(spans, "trace_id", "span_id"))
    assert events.num_rows > 0
    assert set(pairs(events, "trace_id", "span_id")) <= span_keys


def test_parents_are_spans_of_the_same_trace(records: pa.Table) -> None:
    spans = where(records, "kind", "span")
    span_keys = set(pairs(spans, "trace_id", "span_id"))
    children = records.filter(pc.is_valid(records.column("parent_span_id")))
    assert set(pairs(children, "trace_id", "parent_span_id")) <= span_keys


def test_some_traces_cross_services(records: pa.Table) -> None:
    services = pc.binary_join_element_wise(
        records.column("trace_id"), records.column("service_name"), ":"
    )
    per_trace = Counter(key.split(":")[0] for key in set(services.to_pylist()))
    assert sum(1 for count in per_trace.values() if count > 1) > 100


def test_logs_and_events_have_no_duration_and_end_as_they_start(
    records: pa.Table,
) -> None:
    moments = records.filter(pc.not_equal(records.column("kind"), "span"))
    assert moments.column("duration").null_count == moments.num_rows
    assert moments.column("start_timestamp").equals(moments.column("end_timestamp"))


def test_span_duration_is_end_minus_start_in_seconds(records: pa.Table) -> None:
    spans = where(records, "kind", "span")
    elapsed = micros(spans, "end_timestamp") - micros(spans, "start_timestamp")
    duration = spans.column("duration").to_numpy()
    assert np.allclose(duration, elapsed / 1e6)


def test_day_is_the_utc_date_of_the_start(records: pa.Table) -> None:
    days = micros(records, "start_timestamp") // (24 * HOUR)
    assert np.array_equal(records.column("day").cast(pa.int32()).to_numpy(), days)


def test_all_kinds_levels_and_environments_appear(records: pa.Table) -> None:
    assert set(records.column("kind").to_pylist()) == {"span", "log", "span_event"}
    assert set(records.column("level").to_pylist()) == {1, 5, 9, 10, 13, 17, 21}
    environments = set(records.column("deployment_environment").to_pylist())
    assert environments == {"prod", "staging", "dev", None}


def test_info_is_the_most_common_level(records: pa.Table) -> None:
    levels = Counter(records.column("level").to_pylist())
    assert levels.most_common(1)[0][0] == 9


def test_messages_fill_in_the_span_name_template(records: pa.Table) -> None:
    rows = where(records, "span_name", "GET /api/products/{sku}")
    for message in rows.column("message").to_pylist()[:200]:
        assert re.fullmatch(r"GET /api/products/[A-Z]{3}-\d{4}", message)


def test_exceptions_carry_type_message_stacktrace_and_error_status(
    records: pa.Table,
) -> None:
    failed = records.filter(records.column("is_exception"))
    assert failed.num_rows > 0
    for column in ("exception_type", "exception_stacktrace", "otel_status_message"):
        assert failed.column(column).null_count == 0, column
    assert set(failed.column("otel_status_code").to_pylist()) == {"ERROR"}
    assert all("\n" in trace for trace in failed["exception_stacktrace"].to_pylist())


def test_rows_without_exceptions_have_no_exception_columns(records: pa.Table) -> None:
    fine = records.filter(pc.invert(records.column("is_exception")))
    assert fine.column("exception_type").null_count == fine.num_rows
    statuses = set(fine.column("otel_status_code").to_pylist())
    assert {"UNSET", "OK"} <= statuses


def test_http_server_spans_fill_the_http_columns(records: pa.Table) -> None:
    servers = records.filter(pc.is_valid(records.column("http_route")))
    for column in ("http_method", "url_full", "url_path"):
        assert servers.column(column).null_count == 0, column
    codes = Counter(servers.column("http_response_status_code").to_pylist())
    assert codes.most_common(1)[0][0] == 200
    assert {201, 204, 301, 400, 404, 500, 503} <= set(codes)


def test_url_full_joins_host_path_and_query(records: pa.Table) -> None:
    queried = records.filter(pc.is_valid(records.column("url_query")))
    for full, path, query in zip(
        queried["url_full"].to_pylist(),
        queried["url_path"].to_pylist(),
        queried["url_query"].to_pylist(),
        strict=True,
    ):
        assert full.endswith(f"{path}?{query}")


def test_tags_are_mostly_empty_and_never_more_than_three(records: pa.Table) -> None:
    lengths = pc.list_value_length(records.column("tags")).to_numpy()
    assert (lengths == 0).mean() > 0.5
    assert lengths.max() == 3


def test_some_logs_have_a_json_body(records: pa.Table) -> None:
    bodies = where(records, "kind", "log").column("log_body").drop_null()
    assert len(bodies) > 0


@pytest.mark.parametrize("table_name", ["records", "metrics"])
def test_every_json_column_parses(
    table_name: str, request: pytest.FixtureRequest
) -> None:
    table = request.getfixturevalue(table_name)
    for column in schema.JSON_COLUMNS[table_name]:
        for text in table.column(column).drop_null().to_pylist():
            json.loads(text)


def test_attributes_hold_nested_unicode_and_every_json_type(
    records: pa.Table,
) -> None:
    found: set[type] = set()

    def collect(value: object) -> None:
        found.add(type(value))
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            for child in value:
                collect(child)

    texts = records.column("attributes").to_pylist()
    for text in texts[:5_000]:
        collect(json.loads(text))
    assert {dict, list, str, int, float, bool, type(None)} <= found
    assert any("東京" in text for text in texts)
    assert any("🚀" in text for text in texts)


def test_attributes_json_schema_describes_the_attributes(records: pa.Table) -> None:
    rows = records.filter(pc.is_valid(records.column("attributes_json_schema")))
    for attributes, described in pairs(rows, "attributes", "attributes_json_schema"):
        properties = json.loads(str(described))["properties"]
        assert set(properties) <= set(json.loads(str(attributes)))


def test_sdks_of_several_languages_appear(records: pa.Table) -> None:
    languages = set(records.column("telemetry_sdk_language").to_pylist())
    assert {"python", "rust", "nodejs", "webjs"} <= languages


# Shape of the metrics.


def test_every_metric_type_appears(metrics: pa.Table) -> None:
    assert set(metrics.column("metric_type").to_pylist()) == {
        "gauge",
        "sum",
        "histogram",
        "exponential_histogram",
    }


def test_gauges_hold_a_value_and_no_aggregation_start(metrics: pa.Table) -> None:
    gauges = where(metrics, "metric_type", "gauge")
    assert gauges.column("scalar_value").null_count == 0
    assert gauges.column("start_timestamp").null_count == gauges.num_rows
    assert gauges.column("aggregation_temporality").null_count == gauges.num_rows


def test_sums_hold_a_value_temporality_and_monotonicity(metrics: pa.Table) -> None:
    sums = where(metrics, "metric_type", "sum")
    assert sums.column("scalar_value").null_count == 0
    temporalities = set(sums.column("aggregation_temporality").to_pylist())
    assert temporalities == {"delta", "cumulative"}
    assert set(sums.column("is_monotonic").to_pylist()) == {True, False}
    start = micros(sums, "start_timestamp")
    assert np.all(start < micros(sums, "recorded_timestamp"))


def test_histograms_hold_one_more_bucket_than_bounds(metrics: pa.Table) -> None:
    histograms = where(metrics, "metric_type", "histogram")
    buckets = histograms["histogram_bucket_counts"].to_pylist()
    bounds = histograms["histogram_explicit_bounds"].to_pylist()
    counts = histograms["histogram_count"].to_pylist()
    assert histograms.num_rows > 0
    for bucket, bound, count in zip(buckets, bounds, counts, strict=True):
        assert len(bucket) == len(bound) + 1
        assert sum(bucket) == count
    assert histograms.column("scalar_value").null_count == histograms.num_rows


def test_exponential_histograms_hold_bucket_arrays_and_offsets(
    metrics: pa.Table,
) -> None:
    exponential = where(metrics, "metric_type", "exponential_histogram")
    for column in (
        "exp_histogram_scale",
        "exp_histogram_zero_count",
        "exp_histogram_positive_bucket_counts",
        "exp_histogram_negative_bucket_counts",
        "exp_histogram_positive_bucket_counts_offset",
        "exp_histogram_negative_bucket_counts_offset",
    ):
        assert exponential.column(column).null_count == 0, column
    rows = exponential.select(
        [
            "exp_histogram_zero_count",
            "exp_histogram_positive_bucket_counts",
            "exp_histogram_negative_bucket_counts",
            "histogram_count",
        ]
    ).to_pylist()
    for row in rows:
        total = row["exp_histogram_zero_count"]
        total += sum(row["exp_histogram_positive_bucket_counts"])
        total += sum(row["exp_histogram_negative_bucket_counts"])
        assert total == row["histogram_count"]
    assert any(row["exp_histogram_negative_bucket_counts"] for row in rows)


def test_histogram_minimum_is_at_most_its_maximum(metrics: pa.Table) -> None:
    low = metrics.column("histogram_min").to_numpy(zero_copy_only=False)
    high = metrics.column("histogram_max").to_numpy(zero_copy_only=False)
    known = ~np.isnan(low)
    assert known.any()
    assert np.all(low[known] <= high[known])


def test_some_histogram_points_carry_exemplars(metrics: pa.Table) -> None:
    exemplars = [json.loads(text) for text in metrics["exemplars"].to_pylist()]
    linked = [item for entries in exemplars for item in entries]
    assert linked
    assert all(len(item["trace_id"]) == 32 for item in linked)
