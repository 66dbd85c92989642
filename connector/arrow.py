"""Shaping Arrow batches from the service for loading into a destination.

Destinations differ in what Arrow types they take. dlt has no array type and
PostgreSQL refuses Arrow lists outright, so list columns become JSON array text
(hinted as JSON, they arrive as indexable JSON arrays everywhere). Timestamps
are made timezone-aware microseconds in UTC and text plain strings (from string
views and large strings too), and dictionary-encoded columns, which a service
may stream, are decoded as they arrive: every page of a table then holds the
same types, which dlt needs. Every step is vectorised.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TIMESTAMP", "list_to_json", "plain_columns", "prepare_batch"]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
"""The type every timestamp is loaded as."""

_JSON_ESCAPES: Final = {
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    **{
        chr(code): f"\\u{code:04x}"
        for code in range(0x20)
        if code not in (8, 9, 10, 12, 13)
    },
}


def prepare_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with lists as JSON text, UTC microsecond timestamps, plain strings."""
    columns = []
    fields = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        converted = _convert(column)
        columns.append(converted)
        fields.append(pa.field(field.name, converted.type, field.nullable))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def plain_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with encoded columns decoded, text plain, timestamps in microseconds.

    The Arrow stream format lets a service send any column as a dictionary, and
    with any index type from one response to the next; DataFusion, which
    Logfire runs, sends text as string views by default. Key and window checks
    need plain values in types pyarrow's kernels all take, and dlt refuses
    pages whose types differ.
    """
    if not any(_needs_plain(field.type) for field in batch.schema):
        return batch
    columns = [_plain(column) for column in batch.columns]
    fields = [
        field.with_type(column.type)
        for field, column in zip(batch.schema, columns, strict=True)
    ]
    schema = pa.schema(fields, metadata=batch.schema.metadata)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _needs_plain(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_dictionary(kind)
        or pa.types.is_run_end_encoded(kind)
        or _is_wide_text(kind)
        or (pa.types.is_timestamp(kind) and kind.unit != "us")
    )


def _plain(column: pa.Array) -> pa.Array:
    if pa.types.is_run_end_encoded(column.type):
        column = pc.run_end_decode(column)
    if pa.types.is_dictionary(column.type):
        if _is_wide_text(column.type.value_type):
            # No kernel takes from string views, so the values go first.
            column = pa.DictionaryArray.from_arrays(
                column.indices, column.dictionary.cast(pa.string())
            )
        column = column.dictionary_decode()
    if _is_wide_text(column.type):
        column = column.cast(pa.string())
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.unit != "us":
        # Logfire's timestamps are microseconds; finer digits would not survive
        # the cursor's literal nor the destination.
        column = column.cast(pa.timestamp("us", tz=kind.tz), safe=False)
    return column


def _is_wide_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string_view(kind) or pa.types.is_large_string(kind))


def list_to_json(array: pa.Array) -> pa.Array:
    """A list array as JSON array text, such as ``["a","b"]``; nulls stay null."""
    lengths = pc.fill_null(pc.list_value_length(array), 0)
    offsets = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cumulative_sum(lengths).cast(pa.int32())]
    )
    values = pc.fill_null(_json_values(array.flatten()), "null")
    texts = pa.ListArray.from_arrays(offsets, values, mask=array.is_null())
    joined = pc.binary_join(texts, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _convert(column: pa.Array) -> pa.Array:
    """One column in the type it is loaded as."""
    column = _plain(column)
    kind = column.type
    if _is_list(kind):
        return list_to_json(column)
    if pa.types.is_timestamp(kind) and kind != TIMESTAMP:
        if kind.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return column.cast(TIMESTAMP, safe=False)
    return column


def _is_list(kind: pa.DataType) -> bool:
    """Whether `kind` is a list type of any size."""
    return bool(
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_list_view(kind)
    )


def _json_values(values: pa.Array) -> pa.Array:
    """List elements as JSON text: strings quoted, non-finite numbers null."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _json_strings(values.cast(pa.string()))
    if pa.types.is_string_view(kind):
        return _json_strings(values.cast(pa.string()))
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        return pc.if_else(
            finite, values.cast(pa.string()), pa.scalar(None, pa.string())
        )
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        return values.cast(pa.string())
    if _is_list(kind):
        return list_to_json(values)
    # Anything else (timestamps, decimals) is quoted text, still valid JSON.
    return _json_strings(values.cast(pa.string()))


def _json_strings(values: pa.Array) -> pa.Array:
    """Strings as JSON string literals, escaped per RFC 8259."""
    escaped = pc.replace_substring(values, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if pc.any(pc.match_substring_regex(escaped, r"[\x00-\x1f]")).as_py():
        for character, escape in _JSON_ESCAPES.items():
            escaped = pc.replace_substring(escaped, character, escape)
    return pc.binary_join_element_wise('"', escaped, '"', "")
