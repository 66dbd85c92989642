"""Streaming encoders for the query API's four response formats.

Each encoder turns a result schema and its record batches into body chunks, one
chunk per batch, so a response is never built whole in memory:

- JSON: `{"schema": ..., "data": [...]}`; with `explain`, the plans are the
  top-level keys `logical_plan`, `physical_plan` and `physical_plan_with_metrics`
  (where the official SDK looks for them).
- NDJSON: a `schema` line, an `explain` line when asked, a `data` line per batch
  and an `end` line; a failure mid-stream writes an `error` line instead.
- Arrow: the IPC stream format, ending with the end-of-stream marker (left
  out with `arrow_end_marker=False`, like a service that never writes it).
- CSV: a header line always, then the rows; lists are written as JSON.

Schemas in JSON and NDJSON describe each type the way the Rust Arrow crate
serialises it (`"Utf8"`, `{"Timestamp": ["Microsecond", "UTC"]}`, ...), and
timestamps are written as RFC 3339 text (`2026-05-27T13:16:36.517321Z`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

Format = Literal["json", "ndjson", "arrow", "csv"]

MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "arrow": "application/vnd.apache.arrow.stream",
    "csv": "text/csv; charset=utf-8",
}
"""The `Content-Type` each format is served with."""

_ACCEPTED: dict[str, Format] = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/vnd.apache.arrow.stream": "arrow",
    "text/csv": "csv",
}

PLAN_KEYS = ("logical_plan", "physical_plan", "physical_plan_with_metrics")
"""The keys of the query plans returned with `explain`."""

_UTC_NAMES = frozenset({"UTC", "utc", "+00:00", "Z", "Etc/UTC"})

_SIMPLE_TYPES: dict[pa.DataType, str] = {
    pa.null(): "Null",
    pa.bool_(): "Boolean",
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.float16(): "Float16",
    pa.float32(): "Float32",
    pa.float64(): "Float64",
    pa.string(): "Utf8",
    pa.large_string(): "LargeUtf8",
    pa.string_view(): "Utf8View",
    pa.binary(): "Binary",
    pa.large_binary(): "LargeBinary",
    pa.binary_view(): "BinaryView",
    pa.date32(): "Date32",
    pa.date64(): "Date64",
}

_UNITS = {"s": "Second", "ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


def choose_format(accept: str | None) -> Format:
    """The format asked for by the first media type of an `Accept` header.

    Quality values are ignored. A missing header, `*/*` and types the service
    does not produce all get JSON, as a FastAPI service would answer.
    """
    first = (accept or "").split(",", 1)[0]
    media_type = first.split(";", 1)[0].strip().lower()
    return _ACCEPTED.get(media_type, "json")


def data_type_json(data_type: pa.DataType) -> object:
    """An Arrow type as the Rust Arrow crate's serde writes it."""
    simple = _SIMPLE_TYPES.get(data_type)
    if simple is not None:
        return simple
    if pa.types.is_timestamp(data_type):
        return {"Timestamp": [_UNITS[data_type.unit], data_type.tz]}
    if pa.types.is_time(data_type):
        name = "Time32" if pa.types.is_time32(data_type) else "Time64"
        return {name: _UNITS[data_type.unit]}
    if pa.types.is_duration(data_type):
        return {"Duration": _UNITS[data_type.unit]}
    if pa.types.is_decimal(data_type):
        name = f"Decimal{data_type.bit_width}"
        return {name: [data_type.precision, data_type.scale]}
    if pa.types.is_fixed_size_binary(data_type):
        return {"FixedSizeBinary": data_type.byte_width}
    return _nested_type_json(data_type)


def _nested_type_json(data_type: pa.DataType) -> object:
    if pa.types.is_list(data_type):
        return {"List": field_json(data_type.value_field)}
    if pa.types.is_large_list(data_type):
        return {"LargeList": field_json(data_type.value_field)}
    if pa.types.is_fixed_size_list(data_type):
        return {
            "FixedSizeList": [field_json(data_type.value_field), data_type.list_size]
        }
    if pa.types.is_struct(data_type):
        fields = [data_type.field(i) for i in range(data_type.num_fields)]
        return {"Struct": [field_json(field) for field in fields]}
    if pa.types.is_map(data_type):
        entries = pa.field(
            "entries", pa.struct([data_type.key_field, data_type.item_field]), False
        )
        return {"Map": [field_json(entries), data_type.keys_sorted]}
    if pa.types.is_dictionary(data_type):
        return {
            "Dictionary": [
                data_type_json(data_type.index_type),
                data_type_json(data_type.value_type),
            ]
        }
    return str(data_type)


def field_json(field: pa.Field) -> dict[str, Any]:
    """An Arrow field as the Rust Arrow crate's serde writes it."""
    return {
        "name": field.name,
        "data_type": data_type_json(field.type),
        "nullable": field.nullable,
        "dict_id": 0,
        "dict_is_ordered": False,
        "metadata": {},
    }


def schema_json(schema: pa.Schema) -> dict[str, Any]:
    """A result schema as the JSON formats describe it."""
    return {"fields": [field_json(field) for field in schema], "metadata": {}}


class Encoder(Protocol):
    """Turns one result into body chunks."""

    def begin(self) -> bytes:
        """The bytes before the first batch."""
        ...

    def batch(self, batch: pa.RecordBatch) -> bytes:
        """The bytes of one batch."""
        ...

    def end(self, row_count: int) -> bytes:
        """The bytes that complete the body."""
        ...

    def cut(self) -> bytes:
        """The bytes that end the body early but cleanly."""
        ...

    def error(self, message: str) -> bytes | None:
        """The bytes reporting a failure mid-stream, or None if the format can't."""
        ...


def encoder_for(
    fmt: Format,
    schema: pa.Schema,
    plans: Mapping[str, str] | None = None,
    *,
    arrow_end_marker: bool = True,
) -> Encoder:
    """The encoder of a format for a result with `schema`."""
    if fmt == "ndjson":
        return NdjsonEncoder(schema, plans)
    if fmt == "arrow":
        return ArrowEncoder(schema, end_marker=arrow_end_marker)
    if fmt == "csv":
        return CsvEncoder(schema)
    return JsonEncoder(schema, plans)


class JsonEncoder:
    """`{"schema": ..., "data": [...]}`, written one batch at a time."""

    def __init__(self, schema: pa.Schema, plans: Mapping[str, str] | None) -> None:
        self._schema = schema
        self._plans = plans
        self._rows_written = False

    def begin(self) -> bytes:
        """The opening of the object, up to the start of the `data` array."""
        head = _encode({"schema": schema_json(self._schema), **(self._plans or {})})
        return head[:-1] + b',"data":['

    def batch(self, batch: pa.RecordBatch) -> bytes:
        """The batch's rows, comma-separated, as part of the `data` array."""
        if batch.num_rows == 0:
            return b""
        rows = _encode(json_rows(batch))[1:-1]
        if self._rows_written:
            rows = b"," + rows
        self._rows_written = True
        return rows

    def end(self, row_count: int) -> bytes:
        """The closing of the array and the object."""
        return b"]}"

    def cut(self) -> bytes:
        """Nothing: a JSON body cut short is simply invalid."""
        return b""

    def error(self, message: str) -> bytes | None:
        """None: JSON has no way to report an error after the status."""
        return None


class NdjsonEncoder:
    """One JSON object a line: schema, explain, data per batch, end or error."""

    def __init__(self, schema: pa.Schema, plans: Mapping[str, str] | None) -> None:
        self._schema = schema
        self._plans = plans

    def begin(self) -> bytes:
        """The `schema` line, and the `explain` line when plans were asked for."""
        lines = [{"type": "schema", "schema": schema_json(self._schema)}]
        if self._plans is not None:
            lines.append({"type": "explain", **self._plans})
        return b"".join(_line(line) for line in lines)

    def batch(self, batch: pa.RecordBatch) -> bytes:
        """A `data` line holding the batch's rows."""
        if batch.num_rows == 0:
            return b""
        return _line({"type": "data", "rows": json_rows(batch)})

    def end(self, row_count: int) -> bytes:
        """The `end` line that marks the result complete."""
        end: dict[str, object] = {"type": "end", "row_count": row_count}
        if self._plans is not None:
            end["physical_plan_with_metrics"] = self._plans.get(
                "physical_plan_with_metrics", ""
            )
        return _line(end)

    def cut(self) -> bytes:
        """Nothing: the missing `end` line is what shows the loss."""
        return b""

    def error(self, message: str) -> bytes | None:
        """An `error` line carrying the message."""
        return _line({"type": "error", "message": message})


_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
"""The Arrow IPC stream's end-of-stream marker: continuation, zero length."""


class ArrowEncoder:
    """The Arrow IPC stream format, one encapsulated message a chunk.

    Each message is serialised on its own, byte for byte what a stream writer
    writes, so nothing is buffered between batches. Dictionary columns are
    decoded first, which spares the stream its dictionary messages. Without
    `end_marker`, streams end after their last batch, marker left out.
    """

    def __init__(self, schema: pa.Schema, *, end_marker: bool = True) -> None:
        self._schema = pa.schema(
            [_undictionary_field(field) for field in schema], metadata=schema.metadata
        )
        self._end_marker = end_marker

    def begin(self) -> bytes:
        """The schema message."""
        return _bytes(self._schema.serialize())

    def batch(self, batch: pa.RecordBatch) -> bytes:
        """The batch's record batch message."""
        columns = [_undictionary(column) for column in batch.columns]
        plain = pa.RecordBatch.from_arrays(columns, schema=self._schema)
        return _bytes(plain.serialize())

    def end(self, row_count: int) -> bytes:
        """The end-of-stream marker, unless the encoder leaves it out."""
        return _END_OF_STREAM if self._end_marker else b""

    def cut(self) -> bytes:
        """Nothing: the missing end-of-stream marker is what shows the loss."""
        return b""

    def error(self, message: str) -> bytes | None:
        """None: the Arrow stream format cannot carry an error."""
        return None


def _undictionary_field(field: pa.Field) -> pa.Field:
    if pa.types.is_dictionary(field.type):
        return field.with_type(field.type.value_type)
    return field


def _undictionary(column: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        return column.dictionary_decode()
    return column


class CsvEncoder:
    """CSV with a header line; timestamps as RFC 3339 and lists as JSON text."""

    def __init__(self, schema: pa.Schema) -> None:
        self._text_schema = pa.schema(
            [_csv_field(field) for field in schema], metadata=schema.metadata
        )

    def begin(self) -> bytes:
        """The header line."""
        return _csv(self._text_schema.empty_table(), header=True)

    def batch(self, batch: pa.RecordBatch) -> bytes:
        """The batch's rows."""
        columns = [_csv_column(column) for column in batch.columns]
        text = pa.RecordBatch.from_arrays(columns, schema=self._text_schema)
        return _csv(text, header=False)

    def end(self, row_count: int) -> bytes:
        """Nothing more: CSV has no footer."""
        return b""

    def cut(self) -> bytes:
        """Nothing: CSV cannot show that rows are missing."""
        return b""

    def error(self, message: str) -> bytes | None:
        """None: CSV has no way to report an error."""
        return None


def _csv(rows: pa.RecordBatch | pa.Table, *, header: bool) -> bytes:
    sink = pa.BufferOutputStream()
    pcsv.write_csv(rows, sink, pcsv.WriteOptions(include_header=header))
    return _bytes(sink.getvalue())


def _bytes(buffer: pa.Buffer) -> bytes:
    # Much faster than Buffer.to_pybytes() for large buffers.
    return bytes(memoryview(buffer))


def json_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """A batch as row dictionaries ready for `json.dumps`.

    Timestamps and dates become text in Arrow first, which is much faster than
    formatting Python objects row by row.
    """
    columns = [_json_ready(column) for column in batch.columns]
    names = batch.schema.names
    table = pa.Table.from_arrays(columns, names=names)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _json_ready(column: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        return iso_timestamps(column)
    if pa.types.is_date(column.type):
        return column.cast(pa.string())
    return column


def iso_timestamps(column: pa.Array) -> pa.Array:
    """Timestamps as RFC 3339 text: `Z` for UTC, `+HH:MM` for other zones."""
    tz = column.type.tz
    if tz is None:
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
    if tz in _UTC_NAMES:
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(text, "Z", "")
    text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z")
    return pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")


def _csv_field(field: pa.Field) -> pa.Field:
    if _needs_text_in_csv(field.type):
        return pa.field(field.name, pa.string(), field.nullable)
    return field


def _needs_text_in_csv(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_timestamp(data_type)
        or pa.types.is_nested(data_type)
        or pa.types.is_dictionary(data_type)
    )


def _csv_column(column: pa.Array) -> pa.Array:
    data_type = column.type
    if pa.types.is_timestamp(data_type):
        return iso_timestamps(column)
    if pa.types.is_dictionary(data_type):
        return _csv_column(column.dictionary_decode()).cast(pa.string())
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return list_json(column)
    if pa.types.is_nested(data_type):
        return _python_json(column)
    return column


def list_json(column: pa.Array) -> pa.Array:
    """A list column as JSON array text, computed in Arrow rather than per row.

    Lists of text, numbers and booleans are encoded column-wise; other element
    types go through Python.
    """
    offsets = column.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    items = _json_scalars(column.values.slice(first, last - first))
    if items is None:
        return _python_json(column)

    # Rebased offsets: Arrow refuses a null mask over a slice of offsets.
    rebased = pc.subtract(offsets, pa.scalar(first, offsets.type)).cast(pa.int32())
    lists = pa.ListArray.from_arrays(rebased, items, mask=column.is_null())
    joined = pc.binary_join(lists, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _json_scalars(values: pa.Array) -> pa.Array | None:
    data_type = values.type
    if (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    ):
        text = pc.binary_join_element_wise('"', _escape_json(values), '"', "")
    elif pa.types.is_boolean(data_type) or pa.types.is_integer(data_type):
        text = values.cast(pa.string())
    elif pa.types.is_floating(data_type):
        finite = pc.is_finite(values)
        text = pc.if_else(
            finite, values.cast(pa.string()), pa.scalar(None, pa.string())
        )
    else:
        return None
    return pc.fill_null(text.cast(pa.string()), "null")


_ESCAPES = [
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
]
_OTHER_CONTROLS = [chr(code) for code in range(0x20) if chr(code) not in "\n\r\t\b\f"]


def _escape_json(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    for plain, escaped in _ESCAPES:
        text = pc.replace_substring(text, plain, escaped)
    if pc.any(pc.match_substring_regex(text, "[\x00-\x1f]")).as_py():
        for control in _OTHER_CONTROLS:
            text = pc.replace_substring(text, control, f"\\u{ord(control):04x}")
    return text


def _python_json(column: pa.Array) -> pa.Array:
    values = column.to_pylist()
    encoded = [None if value is None else _encode(value).decode() for value in values]
    return pa.array(encoded, pa.string())


def _default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"Cannot write {type(value).__name__} values as JSON.")


try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with dlt

    def _encode(value: object) -> bytes:
        text = json.dumps(
            value, default=_default, ensure_ascii=False, separators=(",", ":")
        )
        return text.encode()

else:

    def _encode(value: object) -> bytes:
        # About eight times faster than the json module on result rows.
        return orjson.dumps(value, default=_default)


def _line(value: object) -> bytes:
    return _encode(value) + b"\n"
