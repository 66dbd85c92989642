"""SQL functions the sandbox adds to DataFusion: Logfire's JSON helpers and a clock.

Logfire registers the `datafusion-functions-json` crate; the Python build of
DataFusion has none of it, so this module provides Python versions with the same
names and results:

- `json_get_str`, `json_get_int`, `json_get_float`, `json_get_bool`: the value at a
  path if it has that JSON type, else NULL (an integer is also a float).
- `json_get` and `json_as_text`: the value as text: a string as itself, anything
  else as JSON, JSON null as NULL. (Logfire's `json_get` returns a union type; here
  it is text.)
- `json_get_json`: the JSON text of the value, quotes and `null` included.
- `json_get_array`: the JSON text of each element of an array, as `list<string>`.
- `json_object_keys`: the keys of an object, as `list<string>`.
- `json_length` (alias `json_len`): the number of elements or keys, `uint64`.
- `json_contains`: whether the path exists; false for NULL or invalid JSON.

The first argument is JSON text and the rest are path elements: strings for object
keys, integers for array indexes (negative ones count from the end). Invalid JSON
gives NULL.

Python UDFs have one fixed signature each, so every function is registered once per
number of path elements, from none up to `MAX_PATH`: the one-element form under the
real name and the others as `<name>__<count>`. `rewrite_calls` renames each call in
a query to the form for its argument count, and `public_name` takes the suffix back
out of result column names. Path elements are declared as strings, so integer
indexes arrive as digits: a digit string then indexes an array and names a key of an
object, which Logfire's version does for string keys too.

What the sandbox lacks of Logfire's SQL:

- the `->`, `->>` and `?` operators (the Python build refuses them); write
  `json_get(col, 'key')`, `json_as_text(col, 'key')` and `json_contains(col, 'key')`;
- paths longer than `MAX_PATH` elements, and a whole path given as one array;
- the `*_top_level_sorted` / `*_recursive_sorted` variants, `json_get_int32`,
  `json_get_decimal`, `json_obj_contains` and the rewrite of `json_get(...)::type`
  casts into the typed getters;
- the exact text of sub-documents: they are parsed and written back compactly, so
  the stored spacing is not kept, and of duplicate keys the last one wins (Logfire's
  parser takes the first);
- calls written with a quoted function name (`"json_get"(...)`) are not renamed.

`now()`, `current_timestamp`, `current_date`, `today()` and `current_time` are
replaced by functions that return the sandbox clock's time fixed at the start of the
query, in the session time zone (UTC unless the request names one), at microsecond
precision where DataFusion's own have nanoseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.compute as pc

MAX_PATH = 4
"""The most path elements a JSON function call may have."""

_MISSING = object()
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class _JsonFunction:
    """One JSON function: what it returns and how it reads the value it found."""

    names: tuple[str, ...]
    result_type: pa.DataType
    convert: Callable[[Any], Any]
    min_path: int = 0
    if_no_json: bool | None = None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _dump(value)


def _as_array(value: Any) -> list[str] | None:
    return [_dump(item) for item in value] if isinstance(value, list) else None


def _as_keys(value: Any) -> list[str] | None:
    return list(value) if isinstance(value, dict) else None


def _as_length(value: Any) -> int | None:
    return len(value) if isinstance(value, dict | list) else None


_FUNCTIONS = (
    _JsonFunction(("json_get_str",), pa.string(), _as_str),
    _JsonFunction(("json_get_int",), pa.int64(), _as_int),
    _JsonFunction(("json_get_float",), pa.float64(), _as_float),
    _JsonFunction(("json_get_bool",), pa.bool_(), _as_bool),
    _JsonFunction(("json_get", "json_as_text"), pa.string(), _as_text),
    _JsonFunction(("json_get_json",), pa.string(), _dump),
    _JsonFunction(("json_get_array",), pa.list_(pa.string()), _as_array),
    _JsonFunction(("json_object_keys",), pa.list_(pa.string()), _as_keys),
    _JsonFunction(("json_length", "json_len"), pa.uint64(), _as_length),
    _JsonFunction(("json_contains",), pa.bool_(), bool, min_path=1, if_no_json=False),
)

_BY_NAME = {name: function for function in _FUNCTIONS for name in function.names}

JSON_FUNCTIONS: frozenset[str] = frozenset(_BY_NAME)
"""The names of the JSON functions, as written in SQL."""


def _reject_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's parser accepts them unless told not to.
    raise ValueError(f"{name} is not JSON.")


def _parse(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return _MISSING


def _index(step: str, length: int) -> int | None:
    try:
        index = int(step)
    except ValueError:
        return None
    if index < 0:
        index += length
    return index if 0 <= index < length else None


def _find(document: Any, path: Sequence[str | None]) -> Any:
    """The value at `path` in a parsed document, or `_MISSING`."""
    for step in path:
        if step is None:
            return _MISSING
        if isinstance(document, dict):
            document = document.get(step, _MISSING)
        elif isinstance(document, list):
            index = _index(step, len(document))
            document = _MISSING if index is None else document[index]
        else:
            return _MISSING
        if document is _MISSING:
            return _MISSING
    return document


def _found(function: _JsonFunction, value: Any) -> Any:
    """What `function` returns for a value it looked up (or `_MISSING`)."""
    if function.if_no_json is not None:
        return value is not _MISSING
    return None if value is _MISSING else function.convert(value)


def _constant(values: pa.Array) -> tuple[bool, str | None]:
    """Whether every row holds the same path element, and that element."""
    distinct = values.unique()
    if len(distinct) != 1:
        return False, None
    return True, distinct[0].as_py()


def _per_document(
    function: _JsonFunction, documents: pa.Array, path: tuple[str | None, ...]
) -> pa.Array:
    """Evaluate a call whose path is the same on every row, once per distinct text."""
    encoded = pc.dictionary_encode(documents)
    results = [
        _found(function, _find(_parse(text), path))
        for text in encoded.dictionary.to_pylist()
    ]
    values = pa.array(results, type=function.result_type)
    return values.take(encoded.indices)


def _per_row(
    function: _JsonFunction, documents: pa.Array, paths: Sequence[pa.Array]
) -> pa.Array:
    """Evaluate a call whose path changes from row to row."""
    parsed: dict[str, Any] = {}
    results: list[Any] = []
    steps: Iterator[tuple[Any, ...]] = zip(
        *(column.to_pylist() for column in paths), strict=True
    )
    for text, path in zip(documents.to_pylist(), steps, strict=True):
        if text is None:
            results.append(None)
            continue
        if text not in parsed:
            parsed[text] = _parse(text)
        results.append(_found(function, _find(parsed[text], path)))
    return pa.array(results, type=function.result_type)


def _evaluate(
    function: _JsonFunction, documents: pa.Array, *paths: pa.Array
) -> pa.Array:
    """Evaluate a JSON function over one batch of its arguments."""
    constants = [_constant(column) for column in paths] if len(documents) else []
    if all(is_constant for is_constant, _ in constants):
        path = tuple(step for _, step in constants)
        result = _per_document(function, documents, path)
    else:
        result = _per_row(function, documents, paths)

    if function.if_no_json is not None:
        result = pc.fill_null(result, function.if_no_json)
    return result


def overload_name(name: str, path_length: int) -> str:
    """The registered name of `name` for calls with `path_length` path elements."""
    return name if path_length == 1 else f"{name}__{path_length}"


def _json_udf(name: str, function: _JsonFunction, path_length: int) -> Any:
    def call(documents: pa.Array, *paths: pa.Array) -> pa.Array:
        return _evaluate(function, documents, *paths)

    return datafusion.udf(
        call,
        [pa.string()] * (1 + path_length),
        function.result_type,
        "immutable",
        name=overload_name(name, path_length),
    )


_JSON_UDFS = [
    _json_udf(name, function, path_length)
    for name, function in _BY_NAME.items()
    for path_length in range(function.min_path, MAX_PATH + 1)
]


def _constant_udf(name: str, value: pa.Array) -> Any:
    def call() -> pa.Array:
        return value

    # Immutable within the query: DataFusion folds the call into a literal at
    # planning time, so `created_at > now() - INTERVAL '5 minutes'` prunes like one.
    return datafusion.udf(call, [], value.type, "immutable", name=name)


def clock_udfs(now: datetime, time_zone: str | None = None) -> list[Any]:
    """The functions that tell the time, all answering `now` in `time_zone`.

    Raises:
        pyarrow.ArrowInvalid: Arrow does not know the time zone.
    """
    instant = pa.array([now], pa.timestamp("us", tz=time_zone or "UTC"))
    local = pc.local_timestamp(instant)
    today = local.cast(pa.date32())
    time_of_day = local.cast(pa.time64("ns"))
    return [
        _constant_udf("now", instant),
        _constant_udf("current_timestamp", instant),
        _constant_udf("current_date", today),
        _constant_udf("today", today),
        _constant_udf("current_time", time_of_day),
    ]


def register(
    context: datafusion.SessionContext,
    *,
    now: datetime,
    time_zone: str | None = None,
) -> None:
    """Register the JSON functions and the clock functions on a session."""
    for udf in [*_JSON_UDFS, *clock_udfs(now, time_zone)]:
        context.register_udf(udf)


def public_name(name: str) -> str:
    """A result column's name with the JSON overloads' suffixes taken out."""
    if "__" not in name:
        return name
    for function_name in JSON_FUNCTIONS:
        for path_length in range(MAX_PATH + 1):
            overload = overload_name(function_name, path_length)
            if overload != function_name:
                name = name.replace(f"{overload}(", f"{function_name}(")
    return name


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "text" (strings, quoted names, comments), "space" or "mark"
    start: int
    end: int


def _skip_quoted(sql: str, start: int, quote: str, backslash: bool) -> int:
    """The end of a quoted string or name that opens at `start`."""
    position = start + 1
    while position < len(sql):
        char = sql[position]
        if backslash and char == "\\":
            position += 2
            continue
        if char == quote:
            if sql.startswith(quote, position + 1):
                position += 2
                continue
            return position + 1
        position += 1
    return len(sql)


def _skip_block_comment(sql: str, start: int) -> int:
    depth = 0
    position = start
    while position < len(sql):
        if sql.startswith("/*", position):
            depth += 1
            position += 2
        elif sql.startswith("*/", position):
            depth -= 1
            position += 2
            if depth == 0:
                return position
        else:
            position += 1
    return len(sql)


def _skip_dollar_quoted(sql: str, start: int) -> int | None:
    """The end of a `$tag$...$tag$` string at `start`, or None if there is none."""
    close = sql.find("$", start + 1)
    tag = sql[start : close + 1]
    if close < 0 or not all(char.isalnum() or char == "_" for char in tag[1:-1]):
        return None
    if tag[1:2].isdigit():
        return None
    end = sql.find(tag, close + 1)
    return len(sql) if end < 0 else end + len(tag)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _next_token(sql: str, start: int) -> _Token:
    char = sql[start]
    if char.isspace():
        end = start
        while end < len(sql) and sql[end].isspace():
            end += 1
        return _Token("space", start, end)
    if sql.startswith("--", start):
        end = sql.find("\n", start)
        return _Token("text", start, len(sql) if end < 0 else end)
    if sql.startswith("/*", start):
        return _Token("text", start, _skip_block_comment(sql, start))
    if char in "'\"":
        return _Token("text", start, _skip_quoted(sql, start, char, False))
    if char in "eE" and sql.startswith("'", start + 1):
        return _Token("text", start, _skip_quoted(sql, start + 1, "'", True))
    dollar_end = _skip_dollar_quoted(sql, start) if char == "$" else None
    if dollar_end is not None:
        return _Token("text", start, dollar_end)
    if char.isalpha() or char == "_":
        end = start
        while end < len(sql) and _is_word_char(sql[end]):
            end += 1
        return _Token("word", start, end)
    return _Token("mark", start, start + 1)


def _tokens(sql: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(sql):
        token = _next_token(sql, position)
        tokens.append(token)
        position = token.end
    return tokens


def _argument_count(sql: str, tokens: Sequence[_Token], open_at: int) -> int:
    """How many arguments the call whose `(` is `tokens[open_at]` has."""
    depth = 0
    commas = 0
    empty = True
    for token in tokens[open_at:]:
        text = sql[token.start : token.end]
        if token.kind == "mark" and text in "([{":
            depth += 1
        elif token.kind == "mark" and text in ")]}":
            depth -= 1
            if depth == 0:
                break
        elif token.kind == "mark" and text == "," and depth == 1:
            commas += 1
        if token.kind != "space" and depth >= 1 and token is not tokens[open_at]:
            empty = False
    return 0 if empty else commas + 1


def _called_function(sql: str, tokens: Sequence[_Token], index: int) -> int | None:
    """The index of the `(` if `tokens[index]` names a JSON function being called."""
    token = tokens[index]
    if token.kind != "word" or sql[token.start : token.end].lower() not in _BY_NAME:
        return None
    before = [t for t in tokens[:index] if t.kind != "space"]
    if before and sql[before[-1].start : before[-1].end] == ".":
        return None
    for after in range(index + 1, len(tokens)):
        if tokens[after].kind == "space":
            continue
        following = tokens[after]
        return after if sql[following.start : following.end] == "(" else None
    return None


def rewrite_calls(sql: str) -> str:
    """Rename each JSON function call in `sql` to the overload for its path length.

    Raises:
        ValueError: a call has more path elements than the sandbox supports, or
            fewer than the function needs.
    """
    tokens = _tokens(sql)
    pieces = []
    copied = 0
    for index, token in enumerate(tokens):
        open_at = _called_function(sql, tokens, index)
        if open_at is None:
            continue
        name = sql[token.start : token.end].lower()
        path_length = _argument_count(sql, tokens, open_at) - 1
        _check_path_length(name, path_length)
        pieces.append(sql[copied : token.start])
        pieces.append(overload_name(name, path_length))
        copied = token.end
    pieces.append(sql[copied:])
    return "".join(pieces)


def _check_path_length(name: str, path_length: int) -> None:
    function = _BY_NAME[name]
    if path_length < 0:
        raise ValueError(
            f"{name}() needs a JSON value as its first argument, followed by the "
            "path elements."
        )
    if path_length < function.min_path:
        raise ValueError(
            f"{name}() needs at least {function.min_path} path element after the "
            "JSON value; add the key or index to look for."
        )
    if path_length > MAX_PATH:
        raise ValueError(
            f"{name}() takes at most {MAX_PATH} path elements after the JSON value "
            f"in the sandbox, not {path_length}; nest the calls instead, e.g. "
            "json_get_str(json_get_json(x, 'a', 'b'), 'c')."
        )
