"""Shaping Arrow batches from the service for loading into a destination.

Destinations differ in what Arrow types they take. dlt has no array type and
PostgreSQL refuses Arrow lists outright, so list columns become JSON array text
(hinted as JSON, they arrive as indexable JSON arrays everywhere). Timestamps
are made timezone-aware microseconds in UTC and text plain strings (from string
views and large strings too), and dictionary-encoded columns, which a service
may stream, are decoded as they arrive: every page of a table then holds the
same types, which dlt needs. Text in JSON columns that is not JSON becomes a
JSON string, which every destination takes. Every step is vectorised, but for
parsing the values of a column that is only loosely JSON (``log_body``), and
the few values that hold what strict parsers refuse (``NaN``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from connector.errors import LogfireSyncError
from connector.tables import ColumnKind, TableSpec

__all__ = [
    "TIMESTAMP",
    "as_json",
    "list_to_json",
    "loaded_types",
    "plain_columns",
    "prepare_batch",
    "replace_nul_characters",
]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
"""The type every timestamp is loaded as."""

_LOADED_AS: Final[Mapping[ColumnKind, pa.DataType]] = {
    "timestamp": TIMESTAMP,
    "date": pa.date32(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
}
"""The type each documented kind of column is loaded as, whatever its width."""

_PER_SECOND: Final = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
"""How many of each Arrow duration unit make a second."""

_DECIMAL_DIGITS: Final = 38
"""The most digits of a decimal that destinations take (DuckDB, BigQuery)."""

_JSON_SPACE: Final = " \t\n\r"
"""The whitespace JSON allows around a value."""

_JSON_LITERAL: Final = (
    r"^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)$"
)
"""A JSON number, ``true``, ``false`` or ``null``."""

_REFUSED: Final = r"NaN|Infinity|\\u[dD][89a-fA-F]"
"""What strict parsers refuse in text that is otherwise JSON: see `as_json`."""

_REFUSED_BYTES: Final = (
    (b"N", b"a", b"N"),
    (b"I", b"n", b"f", b"i", b"n", b"i", b"t", b"y"),
    (b"\\", b"u", b"dD", b"89abcdefABCDEF"),
)
"""The same, as the bytes each position may hold, for a first pass over pages."""

_BYTE_SETS: Final = {
    allowed: np.isin(np.arange(256), list(allowed))
    for needle in _REFUSED_BYTES
    for allowed in needle
}
"""For each choice of bytes, whether each of the 256 byte values is one."""

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


def loaded_types(spec: TableSpec) -> dict[str, pa.DataType]:
    """The type each documented column of `spec` is loaded as.

    Arrays become JSON text, so every column that is not of a documented kind
    is loaded as text.
    """
    return {
        name: _LOADED_AS[spec.kinds[name]] if name in spec.kinds else pa.string()
        for name in spec.columns
    }


def prepare_batch(
    batch: pa.RecordBatch,
    json_columns: Collection[str] = (),
    loose_json_columns: Collection[str] = (),
    types: Mapping[str, pa.DataType] | None = None,
) -> pa.RecordBatch:
    """`batch` with lists as JSON text, UTC microsecond timestamps, plain strings.

    Text in `json_columns` that is not JSON becomes a JSON string holding it
    (see `as_json`); values of `loose_json_columns` are parsed to tell. The
    columns named in `types` are cast to theirs, and every column may hold
    nulls: dlt refuses pages whose schemas differ, and a service may type a
    page's column by its values (``int32`` or ``int64``, ``null`` when all of
    them are null).
    """
    columns = []
    fields = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        converted = _convert(column)
        target = None if types is None else types.get(field.name)
        if target is not None and converted.type != target:
            converted = _cast(converted, target, field.name)
        if field.name in json_columns and pa.types.is_string(converted.type):
            converted = as_json(converted, parse=field.name in loose_json_columns)
        columns.append(converted)
        fields.append(pa.field(field.name, converted.type))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _cast(column: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    """`column` in the type its documented kind is loaded as.

    Raises:
        LogfireSyncError: The values do not fit the documented type.
    """
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise LogfireSyncError(
            f"The service sent the column {name} as {column.type}, which cannot "
            f"be loaded as the documented {target} ({error}). Report this to the "
            "service's maintainers, or leave the column out with the columns "
            "option."
        ) from None


def plain_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with encoded columns decoded, text plain, timestamps in microseconds.

    The Arrow stream format lets a service send any column as a dictionary, and
    with any index type from one response to the next, or tagged with an
    extension type such as ``arrow.json``; DataFusion, which Logfire runs,
    sends text as string views by default. Key and window checks
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
        isinstance(kind, pa.BaseExtensionType)
        or pa.types.is_binary_view(kind)
        or pa.types.is_dictionary(kind)
        or pa.types.is_run_end_encoded(kind)
        or _is_wide_text(kind)
        or (pa.types.is_timestamp(kind) and kind.unit != "us")
    )


def _plain(column: pa.Array) -> pa.Array:
    if isinstance(column.type, pa.BaseExtensionType):
        # Such as arrow.json: the values are their storage's, which kernels
        # and destinations take.
        column = column.storage
    if pa.types.is_binary_view(column.type):
        column = column.cast(pa.binary())
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


def replace_nul_characters(
    batch: pa.RecordBatch, json_columns: Collection[str] = ()
) -> tuple[pa.RecordBatch, list[str]]:
    r"""`batch` with every NUL in its text as U+FFFD; the columns that had one.

    PostgreSQL stores no NUL in text, and refuses a ``\u0000`` escape in
    ``jsonb``, so the text of `json_columns` gets ``\ufffd`` in its place.
    """
    columns, changed = [], []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_string(column.type):
            cleaned = _without_nul(column, json=field.name in json_columns)
            if cleaned is not column:
                changed.append(field.name)
                column = cleaned
        columns.append(column)
    if not changed:
        return batch, []
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema), changed


def _without_nul(column: pa.Array, *, json: bool) -> pa.Array:
    replacements = [("\x00", "\ufffd")]
    if json:
        replacements.append(("\\u0000", "\\ufffd"))
    for character, replacement in replacements:
        if pc.any(pc.match_substring(column, character)).as_py():
            column = pc.replace_substring(column, character, replacement)
    return column


def as_json(column: pa.Array, *, parse: bool = False) -> pa.Array:
    """JSON text as it is, and any other text as a JSON string that holds it.

    Text in other layouts (large strings, string views) comes back plain.
    Destinations parse a column loaded as JSON, and one malformed value fails
    the whole load, and every later run with it. Values that cannot be JSON
    (empty, or plain text that neither opens and closes like a document nor
    is a literal) are caught by their ends alone; with `parse`, the other
    values are parsed too, which also catches text such as
    ``[worker-3] ready [ok]``. Without, only the values that hold ``NaN``,
    ``Infinity`` or an escaped lone surrogate are parsed.
    """
    column = _plain(column)
    shaped = pc.fill_null(_json_shaped(column), True)
    candidates = _to_parse(column, shaped, parse=parse)
    if candidates is not None:
        shaped = _without_unparsed(column, shaped, candidates)
    if pc.all(shaped).as_py():
        return column
    mask = pc.invert(shaped)
    return pc.replace_with_mask(column, mask, _json_strings(column.filter(mask)))


def _to_parse(column: pa.Array, shaped: pa.Array, *, parse: bool) -> pa.Array | None:
    """Which JSON-shaped values to parse, or None for none.

    With `parse`, all of them; otherwise those that hold what strict parsers
    refuse, which are few.
    """
    if not parse and not _may_be_refused(column):
        return None
    candidates = pc.and_(shaped, pc.is_valid(column))
    if not parse:
        refused = pc.fill_null(pc.match_substring_regex(column, _REFUSED), False)
        candidates = pc.and_(candidates, refused)
    return candidates if pc.any(candidates).as_py() else None


def _without_unparsed(
    column: pa.Array, shaped: pa.Array, candidates: pa.Array
) -> pa.Array:
    """`shaped`, made false where a candidate value does not parse as JSON.

    Each distinct value is parsed once: resource attributes and schemas repeat
    across a page, and parsing them again would cost more than the rest.
    """
    values = pc.unique(column.filter(candidates))
    failed = [value for value in values.to_pylist() if not _parses(value)]
    if not failed:
        return shaped
    unparsed = pc.and_(candidates, pc.is_in(column, pa.array(failed, column.type)))
    return pc.and_(shaped, pc.invert(unparsed))


def _json_shaped(column: pa.Array) -> pa.Array:
    """Whether each value opens and closes like JSON text, or is a literal.

    Documents are told by their first and last characters, at no cost of a
    copy; only the rest, usually none, is trimmed and matched.
    """
    shaped = pc.or_(_enclosed(column, "{}"), _enclosed(column, "[]"))
    rest = pc.invert(pc.fill_null(shaped, True))
    if not pc.any(rest).as_py():
        return shaped

    trimmed = pc.utf8_trim(column.filter(rest), _JSON_SPACE)
    found = pc.match_substring_regex(trimmed, _JSON_LITERAL)
    for pair in ("{}", "[]"):
        found = pc.or_(found, _enclosed(trimmed, pair))
    # A lone '"' starts and ends with a quote, but is no string.
    longer = pc.greater(pc.utf8_length(trimmed), 1)
    found = pc.or_(found, pc.and_(_enclosed(trimmed, '""'), longer))
    return pc.replace_with_mask(shaped, rest, found)


def _may_be_refused(column: pa.Array) -> bool:
    r"""Whether any value may hold what strict JSON parsers refuse, by its bytes.

    PostgreSQL refuses ``NaN`` and ``Infinity``, which Python's json module
    writes, and PostgreSQL and DuckDB both refuse an escaped lone surrogate
    (``\ud800`` to ``\udfff`` without its other half), which the grammar of
    RFC 8259 allows. One vectorised pass over the column's bytes costs several
    times less than a regular expression over each value, and finds nothing in
    almost every page.
    """
    if not len(column):
        return False
    offsets = np.frombuffer(column.buffers()[1], np.int32)
    start = int(offsets[column.offset])
    end = int(offsets[column.offset + len(column)])
    data = column.buffers()[2]
    if data is None or end <= start:
        return False
    text = np.frombuffer(data, np.uint8, end - start, start)
    return any(_holds(text, needle) for needle in _REFUSED_BYTES)


def _holds(text: npt.NDArray[np.uint8], needle: tuple[bytes, ...]) -> bool:
    """Whether `text` holds a run of bytes, each one of the needle's choices.

    The first byte is a single one, compared across all of `text`; only the
    few places it matches are checked further.
    """
    width = len(needle)
    if len(text) < width:
        return False
    (first,) = needle[0]
    places = np.flatnonzero(text[: len(text) - width + 1] == first)
    for step, allowed in enumerate(needle[1:], start=1):
        if not places.size:
            return False
        places = places[_BYTE_SETS[allowed][text[places + step]]]
    return bool(places.size)


def _enclosed(column: pa.Array, pair: str) -> pa.Array:
    """Whether each value starts with ``pair[0]`` and ends with ``pair[1]``."""
    return pc.and_(pc.starts_with(column, pair[0]), pc.ends_with(column, pair[1]))


def _parses(text: str) -> bool:
    """Whether `text` is JSON."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


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
    if _is_nested(kind):
        return _python_json(column)
    if pa.types.is_uint64(kind):
        # No signed integer holds values from 2**63, and every destination
        # takes decimals of 20 digits.
        return column.cast(pa.decimal128(20, 0))
    # Numbers go in their widest type: dlt creates a column as wide as its
    # first values, and wider ones later, or a uint32 in a signed column of
    # 32 bits, would fail that load and every run's retry of it.
    if pa.types.is_integer(kind) and kind != pa.int64():
        return column.cast(pa.int64())
    if pa.types.is_floating(kind) and kind != pa.float64():
        return column.cast(pa.float64())
    if pa.types.is_decimal(kind) and kind != pa.decimal128(_DECIMAL_DIGITS, kind.scale):
        # Destinations take at most 38 digits; more can only be text.
        if kind.precision <= _DECIMAL_DIGITS:
            return column.cast(pa.decimal128(_DECIMAL_DIGITS, kind.scale))
        return column.cast(pa.string())
    if pa.types.is_duration(kind):
        # dlt has no duration type; Logfire's own `duration` is in seconds.
        seconds = column.cast(pa.int64()).cast(pa.float64())
        return pc.divide(seconds, float(_PER_SECOND[kind.unit]))
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


def _is_nested(kind: pa.DataType) -> bool:
    """Whether `kind` is a struct, map, union or interval, which dlt cannot load."""
    return bool(
        pa.types.is_struct(kind)
        or pa.types.is_map(kind)
        or pa.types.is_union(kind)
        or pa.types.is_interval(kind)
    )


def _python_json(values: pa.Array) -> pa.Array:
    """Nested values as JSON text, through Python; nulls stay null.

    Only columns the documentation does not list have such types, so the
    cost of going through Python objects is rarely paid.
    """
    texts = [
        None
        if value is None
        else orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        for value in values.to_pylist()
    ]
    return pa.array(texts, pa.string())


def _json_values(values: pa.Array) -> pa.Array:
    """List elements as JSON text: strings quoted, non-finite numbers null."""
    kind = values.type
    if _is_nested(kind):
        return _python_json(values)
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
