"""The columns of the sandbox's `records` and `metrics` tables, as Arrow schemas."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Every timestamp column: microseconds, UTC."""


def _text(name: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, pa.string(), nullable=nullable)


RECORDS = pa.schema(
    [
        pa.field("start_timestamp", TIMESTAMP, nullable=False),
        pa.field("end_timestamp", TIMESTAMP, nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        _text("trace_id", nullable=False),
        _text("span_id", nullable=False),
        _text("parent_span_id"),
        _text("kind", nullable=False),
        _text("span_name", nullable=False),
        _text("message", nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("http_response_status_code", pa.int32()),
        pa.field("process_pid", pa.int32()),
        pa.field("duration", pa.float64()),
        pa.field("is_exception", pa.bool_()),
        pa.field("tags", pa.list_(pa.string())),
        _text("attributes"),
        _text("otel_events"),
        _text("otel_links"),
        _text("otel_resource_attributes"),
        _text("otel_scope_attributes"),
        _text("log_body"),
        _text("attributes_json_schema"),
        _text("exception_type"),
        _text("exception_message"),
        _text("exception_stacktrace"),
        _text("otel_status_code"),
        _text("otel_status_message"),
        _text("otel_scope_name"),
        _text("otel_scope_version"),
        _text("service_name", nullable=False),
        _text("service_namespace"),
        _text("service_version"),
        _text("service_instance_id"),
        _text("telemetry_sdk_name"),
        _text("telemetry_sdk_language"),
        _text("telemetry_sdk_version"),
        _text("deployment_environment"),
        _text("http_method"),
        _text("http_route"),
        _text("url_full"),
        _text("url_path"),
        _text("url_query"),
        _text("project_id", nullable=False),
    ]
)

METRICS = pa.schema(
    [
        pa.field("recorded_timestamp", TIMESTAMP),
        pa.field("start_timestamp", TIMESTAMP),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        _text("metric_name", nullable=False),
        _text("metric_type", nullable=False),
        _text("unit", nullable=False),
        _text("metric_description"),
        _text("aggregation_temporality"),
        pa.field("is_monotonic", pa.bool_()),
        pa.field("scalar_value", pa.float64()),
        pa.field("histogram_min", pa.float64()),
        pa.field("histogram_max", pa.float64()),
        pa.field("histogram_sum", pa.float64()),
        pa.field("exp_histogram_zero_threshold", pa.float64()),
        pa.field("histogram_count", pa.int64()),
        pa.field("exp_histogram_scale", pa.int32()),
        pa.field("exp_histogram_zero_count", pa.int64()),
        pa.field("exp_histogram_positive_bucket_counts_offset", pa.int32()),
        pa.field("exp_histogram_negative_bucket_counts_offset", pa.int32()),
        pa.field("process_pid", pa.int32()),
        pa.field("histogram_bucket_counts", pa.list_(pa.int64())),
        pa.field("exp_histogram_positive_bucket_counts", pa.list_(pa.int64())),
        pa.field("exp_histogram_negative_bucket_counts", pa.list_(pa.int64())),
        pa.field("histogram_explicit_bounds", pa.list_(pa.float64())),
        _text("attributes"),
        _text("exemplars"),
        _text("otel_scope_attributes"),
        _text("otel_resource_attributes"),
        _text("attributes_json_schema"),
        _text("otel_scope_name"),
        _text("otel_scope_version"),
        _text("service_name", nullable=False),
        _text("service_namespace"),
        _text("service_version"),
        _text("service_instance_id"),
        _text("telemetry_sdk_name"),
        _text("telemetry_sdk_language"),
        _text("telemetry_sdk_version"),
        _text("deployment_environment"),
        _text("project_id", nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {"records": RECORDS, "metrics": METRICS}
"""Each queryable table's schema, by name."""

BOUND_COLUMN: dict[str, str] = {
    "records": "start_timestamp",
    "metrics": "recorded_timestamp",
}
"""The column that a request's `min_timestamp` and `max_timestamp` bound."""

JSON_COLUMNS: dict[str, frozenset[str]] = {
    "records": frozenset(
        {
            "attributes",
            "otel_events",
            "otel_links",
            "otel_resource_attributes",
            "otel_scope_attributes",
            "log_body",
            "attributes_json_schema",
        }
    ),
    "metrics": frozenset(
        {
            "attributes",
            "exemplars",
            "otel_scope_attributes",
            "otel_resource_attributes",
            "attributes_json_schema",
        }
    ),
}
"""Text columns that hold JSON documents."""

VISIBLE_AT = "_visible_at"
"""A hidden column of the stored tables: when a row becomes visible to queries."""
