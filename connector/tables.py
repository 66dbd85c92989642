"""What the connector knows about Logfire's `records` and `metrics` tables.

Each table is described by a :class:`TableSpec`: its documented columns, the
column its requests' time bounds apply to, the total-order key that pages are
read by, the JSON and list columns, and the merge key that lets a re-read
window replace exactly the rows it reads again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "EPOCH_LITERAL",
    "METRICS",
    "RECORDS",
    "TABLES",
    "ColumnKind",
    "KeyColumn",
    "TableName",
    "TableSpec",
]

TableName = Literal["records", "metrics"]

ColumnKind = Literal["timestamp", "date", "integer", "double", "boolean"]
"""A documented column type other than text (text, JSON text and arrays)."""

EPOCH_LITERAL: Final = "1970-01-01T00:00:00Z"
"""The instant that stands in for a null timestamp in a page key."""


@dataclass(frozen=True)
class KeyColumn:
    """One part of a table's total-order key.

    Attributes:
        name: The column.
        kind: `timestamp` or `text`, which decides how its literals are written.
        null_as: What a null compares as, for nullable columns (`COALESCE`);
            None for columns the service documents as never null.
    """

    name: str
    kind: Literal["timestamp", "text"]
    null_as: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """How one Logfire table is read and loaded.

    Attributes:
        name: The table's name in SQL and in the destination.
        columns: Every documented column, in the service's order.
        cursor: The column windows are cut on: when the row was stored.
        bound: The column a request's `min_timestamp` and `max_timestamp`
            bound, and the event time a backfill reads by.
        key: The total order pages are read in; not necessarily unique.
        json_columns: Text columns that hold JSON documents.
        loose_json_columns: JSON columns whose values may be plain text too:
            each of their values is parsed before it is loaded as JSON.
        list_columns: Array columns, loaded as JSON array text.
        merge_key: Columns whose values a re-read window replaces wholesale.
        kinds: The documented type of every column that is not text; the
            others are text, JSON text or arrays.
    """

    name: TableName
    columns: tuple[str, ...]
    cursor: str
    bound: str
    key: tuple[KeyColumn, ...]
    json_columns: frozenset[str]
    list_columns: frozenset[str]
    merge_key: tuple[str, str]
    kinds: Mapping[str, ColumnKind]
    loose_json_columns: frozenset[str] = frozenset()

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The columns every read selects, whatever the user asked for."""
        names = [column.name for column in self.key]
        return tuple(dict.fromkeys([self.cursor, *names, *self.merge_key]))


RECORDS: Final = TableSpec(
    name="records",
    columns=(
        "start_timestamp",
        "end_timestamp",
        "created_at",
        "day",
        "trace_id",
        "span_id",
        "parent_span_id",
        "kind",
        "span_name",
        "message",
        "level",
        "http_response_status_code",
        "process_pid",
        "duration",
        "is_exception",
        "tags",
        "attributes",
        "otel_events",
        "otel_links",
        "otel_resource_attributes",
        "otel_scope_attributes",
        "log_body",
        "attributes_json_schema",
        "exception_type",
        "exception_message",
        "exception_stacktrace",
        "otel_status_code",
        "otel_status_message",
        "otel_scope_name",
        "otel_scope_version",
        "service_name",
        "service_namespace",
        "service_version",
        "service_instance_id",
        "telemetry_sdk_name",
        "telemetry_sdk_language",
        "telemetry_sdk_version",
        "deployment_environment",
        "http_method",
        "http_route",
        "url_full",
        "url_path",
        "url_query",
        "project_id",
    ),
    cursor="created_at",
    bound="start_timestamp",
    # All of these are documented as never null, so no COALESCE is needed.
    key=(
        KeyColumn("created_at", "timestamp"),
        KeyColumn("trace_id", "text"),
        KeyColumn("span_id", "text"),
        KeyColumn("kind", "text"),
        KeyColumn("start_timestamp", "timestamp"),
        KeyColumn("span_name", "text"),
        KeyColumn("message", "text"),
    ),
    json_columns=frozenset(
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
    list_columns=frozenset({"tags"}),
    merge_key=("created_at", "start_timestamp"),
    kinds={
        **dict.fromkeys(
            ("start_timestamp", "end_timestamp", "created_at"), "timestamp"
        ),
        "day": "date",
        **dict.fromkeys(
            ("level", "http_response_status_code", "process_pid"), "integer"
        ),
        "duration": "double",
        "is_exception": "boolean",
    },
    # A log's body is often a JSON document, but the API does not promise it.
    loose_json_columns=frozenset({"log_body"}),
)

METRICS: Final = TableSpec(
    name="metrics",
    columns=(
        "recorded_timestamp",
        "start_timestamp",
        "created_at",
        "day",
        "metric_name",
        "metric_type",
        "unit",
        "metric_description",
        "aggregation_temporality",
        "is_monotonic",
        "scalar_value",
        "histogram_min",
        "histogram_max",
        "histogram_sum",
        "exp_histogram_zero_threshold",
        "histogram_count",
        "exp_histogram_scale",
        "exp_histogram_zero_count",
        "exp_histogram_positive_bucket_counts_offset",
        "exp_histogram_negative_bucket_counts_offset",
        "process_pid",
        "histogram_bucket_counts",
        "exp_histogram_positive_bucket_counts",
        "exp_histogram_negative_bucket_counts",
        "histogram_explicit_bounds",
        "attributes",
        "exemplars",
        "otel_scope_attributes",
        "otel_resource_attributes",
        "attributes_json_schema",
        "otel_scope_name",
        "otel_scope_version",
        "service_name",
        "service_namespace",
        "service_version",
        "service_instance_id",
        "telemetry_sdk_name",
        "telemetry_sdk_language",
        "telemetry_sdk_version",
        "deployment_environment",
        "project_id",
    ),
    cursor="created_at",
    bound="recorded_timestamp",
    key=(
        KeyColumn("created_at", "timestamp"),
        KeyColumn("metric_name", "text"),
        KeyColumn("service_name", "text"),
        KeyColumn("recorded_timestamp", "timestamp", null_as=EPOCH_LITERAL),
        KeyColumn("service_instance_id", "text", null_as=""),
        KeyColumn("attributes", "text", null_as=""),
    ),
    json_columns=frozenset(
        {
            "attributes",
            "exemplars",
            "otel_scope_attributes",
            "otel_resource_attributes",
            "attributes_json_schema",
        }
    ),
    list_columns=frozenset(
        {
            "histogram_bucket_counts",
            "exp_histogram_positive_bucket_counts",
            "exp_histogram_negative_bucket_counts",
            "histogram_explicit_bounds",
        }
    ),
    merge_key=("created_at", "recorded_timestamp"),
    kinds={
        **dict.fromkeys(
            ("recorded_timestamp", "start_timestamp", "created_at"), "timestamp"
        ),
        "day": "date",
        "is_monotonic": "boolean",
        **dict.fromkeys(
            (
                "scalar_value",
                "histogram_min",
                "histogram_max",
                "histogram_sum",
                "exp_histogram_zero_threshold",
            ),
            "double",
        ),
        **dict.fromkeys(
            (
                "histogram_count",
                "exp_histogram_scale",
                "exp_histogram_zero_count",
                "exp_histogram_positive_bucket_counts_offset",
                "exp_histogram_negative_bucket_counts_offset",
                "process_pid",
            ),
            "integer",
        ),
    },
)

TABLES: Final[Mapping[TableName, TableSpec]] = {"records": RECORDS, "metrics": METRICS}
"""Every table the source can sync, by name."""
