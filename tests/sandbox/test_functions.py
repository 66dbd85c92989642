"""The sandbox's SQL functions: Logfire's JSON helpers and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from datafusion import SessionContext

from sandbox import functions

DOCUMENT = (
    '{"user": {"name": "Zoë 🚀", "tags": ["a", "b"], "age": 42, "score": 9.5, '
    '"admin": true, "nothing": null}, "items": [{"id": 1}, {"id": 2}], "7": "seven"}'
)
"""Nested JSON with unicode, arrays and every JSON type."""

ROWS = [DOCUMENT, '{"user": ', None, "[10, 20, 30]", '{"n": NaN}']
"""The test column: the document, invalid JSON, NULL, an array, JSON with NaN."""

NOW = datetime(2030, 6, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
def context() -> SessionContext:
    context = SessionContext()
    functions.register(context, now=NOW)
    table = pa.table({"j": pa.array(ROWS, pa.string())})
    context.register_record_batches("t", [table.to_batches()])
    return context


def call(context: SessionContext, expression: str) -> list[Any]:
    """The values of `expression` over the test column, one per row."""
    sql = functions.rewrite_calls(f"SELECT {expression} AS v FROM t")
    return context.sql(sql).to_pydict()["v"]


def first(context: SessionContext, expression: str) -> Any:
    return call(context, expression)[0]


# Each function on the nested document


def test_json_get_str_reads_a_nested_string(context: SessionContext) -> None:
    values = call(context, "json_get_str(j, 'user', 'name')")

    assert values == ["Zoë 🚀", None, None, None, None]


def test_json_get_str_is_null_for_other_types(context: SessionContext) -> None:
    assert first(context, "json_get_str(j, 'user', 'age')") is None
    assert first(context, "json_get_str(j, 'user')") is None


def test_json_get_int_reads_an_integer_through_an_array(
    context: SessionContext,
) -> None:
    assert first(context, "json_get_int(j, 'items', 1, 'id')") == 2
    assert first(context, "json_get_int(j, 'user', 'age')") == 42


def test_json_get_int_is_null_for_a_float(context: SessionContext) -> None:
    assert first(context, "json_get_int(j, 'user', 'score')") is None


def test_json_get_float_reads_floats_and_integers(context: SessionContext) -> None:
    assert first(context, "json_get_float(j, 'user', 'score')") == 9.5
    assert first(context, "json_get_float(j, 'user', 'age')") == 42.0


def test_json_get_bool_reads_a_boolean(context: SessionContext) -> None:
    assert first(context, "json_get_bool(j, 'user', 'admin')") is True
    assert first(context, "json_get_bool(j, 'user', 'age')") is None


def test_json_get_gives_strings_as_themselves_and_the_rest_as_json(
    context: SessionContext,
) -> None:
    assert first(context, "json_get(j, 'user', 'name')") == "Zoë 🚀"
    assert first(context, "json_get(j, 'user', 'tags')") == '["a","b"]'
    assert first(context, "json_get(j, 'items', 0)") == '{"id":1}'
    assert first(context, "json_get(j, 'user', 'nothing')") is None


def test_json_as_text_reads_any_value_as_text(context: SessionContext) -> None:
    assert first(context, "json_as_text(j, 'user', 'name')") == "Zoë 🚀"
    assert first(context, "json_as_text(j, 'user', 'admin')") == "true"
    assert first(context, "json_as_text(j, 'user', 'score')") == "9.5"


def test_json_get_json_keeps_quotes_and_null(context: SessionContext) -> None:
    assert first(context, "json_get_json(j, 'user', 'name')") == '"Zoë 🚀"'
    assert first(context, "json_get_json(j, 'user', 'nothing')") == "null"


def test_json_get_json_without_a_path_is_the_whole_document(
    context: SessionContext,
) -> None:
    assert call(context, "json_get_json(j)")[3] == "[10,20,30]"


def test_json_contains_tells_whether_a_path_exists(context: SessionContext) -> None:
    assert call(context, "json_contains(j, 'user', 'nothing')") == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert first(context, "json_contains(j, 'user', 'missing')") is False


def test_json_length_counts_keys_and_elements(context: SessionContext) -> None:
    assert call(context, "json_length(j)") == [3, None, None, 3, None]
    assert first(context, "json_length(j, 'user', 'tags')") == 2
    assert first(context, "json_len(j, 'user')") == 6


def test_json_object_keys_lists_the_keys(context: SessionContext) -> None:
    assert first(context, "json_object_keys(j)") == ["user", "items", "7"]


def test_json_get_array_gives_each_element_as_json(context: SessionContext) -> None:
    assert first(context, "json_get_array(j, 'items')") == ['{"id":1}', '{"id":2}']


# Paths


def test_a_negative_index_counts_from_the_end(context: SessionContext) -> None:
    assert call(context, "json_get_int(j, -1)")[3] == 30


def test_an_index_past_the_end_is_null(context: SessionContext) -> None:
    assert call(context, "json_get_int(j, 3)")[3] is None


def test_a_digit_key_names_an_object_key(context: SessionContext) -> None:
    assert first(context, "json_get_str(j, '7')") == "seven"


def test_paths_may_have_up_to_the_maximum_length(context: SessionContext) -> None:
    document = '{"a": {"b": {"c": {"d": "deep"}}}}'
    expression = f"json_get_str('{document}', 'a', 'b', 'c', 'd')"

    assert first(context, expression) == "deep"


def test_a_path_may_change_from_row_to_row() -> None:
    context = SessionContext()
    functions.register(context, now=NOW)
    table = pa.table({"j": [DOCUMENT, DOCUMENT, None], "k": ["7", "missing", "7"]})
    context.register_record_batches("t", [table.to_batches()])

    assert call(context, "json_get_str(j, k)") == ["seven", None, None]


def test_a_null_path_element_finds_nothing(context: SessionContext) -> None:
    assert first(context, "json_get(j, NULL)") is None


# Invalid JSON


@pytest.mark.parametrize(
    "expression",
    [
        "json_get_str(j, 'user')",
        "json_get_int(j, 'n')",
        "json_get_float(j, 'n')",
        "json_get_bool(j, 'user')",
        "json_get(j, 'user')",
        "json_get_json(j)",
        "json_as_text(j)",
        "json_length(j)",
        "json_object_keys(j)",
        "json_get_array(j)",
    ],
)
def test_invalid_json_gives_null(context: SessionContext, expression: str) -> None:
    values = call(context, expression)

    assert values[1] is None
    assert values[4] is None


def test_json_functions_return_logfire_types(context: SessionContext) -> None:
    sql = functions.rewrite_calls(
        "SELECT json_get_int(j, 'a') AS i, json_length(j) AS n, "
        "json_contains(j, 'a') AS c, json_get_array(j) AS a FROM t"
    )

    result = context.sql(sql).schema()

    assert result.field("i").type == pa.int64()
    assert result.field("n").type == pa.uint64()
    assert result.field("c").type == pa.bool_()
    assert result.field("a").type == pa.list_(pa.string())


# Rewriting calls for the overloads


def test_calls_are_renamed_for_their_path_length() -> None:
    sql = "SELECT json_get(a), JSON_GET_STR(a, 'x', 0), json_get_int(a, 'x') FROM t"

    assert functions.rewrite_calls(sql) == (
        "SELECT json_get__0(a), json_get_str__2(a, 'x', 0), json_get_int(a, 'x') FROM t"
    )


def test_nested_calls_and_brackets_count_as_one_argument() -> None:
    sql = "SELECT json_get_str(json_get_json(a, 'x', 'y'), [1, 2], f(b, c))"

    assert functions.rewrite_calls(sql) == (
        "SELECT json_get_str__2(json_get_json__2(a, 'x', 'y'), [1, 2], f(b, c))"
    )


def test_names_in_strings_comments_and_columns_are_left_alone() -> None:
    sql = (
        "SELECT 'json_get(a, b)', \"json_get\", t.json_get, e'json_get(\\'x\\')' "
        "-- json_get(a, b)\n/* json_get(a, b) */ FROM t"
    )

    assert functions.rewrite_calls(sql) == sql


def test_a_path_longer_than_the_maximum_is_refused() -> None:
    with pytest.raises(ValueError, match=r"at most 4 path elements"):
        functions.rewrite_calls("SELECT json_get(a, 'b', 'c', 'd', 'e', 'f') FROM t")


def test_json_contains_needs_a_path() -> None:
    with pytest.raises(ValueError, match="json_contains"):
        functions.rewrite_calls("SELECT json_contains(a) FROM t")


def test_public_names_drop_the_overload_suffix() -> None:
    name = 'json_get_str__2(json_get__0(t.j),Utf8("a"),Utf8("b"))'

    assert (
        functions.public_name(name) == 'json_get_str(json_get(t.j),Utf8("a"),Utf8("b"))'
    )


# The clock


def test_now_and_current_timestamp_return_the_given_instant(
    context: SessionContext,
) -> None:
    row = context.sql("SELECT now() AS a, current_timestamp AS b").to_pylist()[0]

    assert row == {"a": NOW, "b": NOW}


def test_current_date_and_time_follow_the_given_instant(
    context: SessionContext,
) -> None:
    sql = "SELECT current_date AS d, today() AS t, current_time AS h"

    row = context.sql(sql).to_pylist()[0]

    assert row["d"] == row["t"] == NOW.date()
    assert row["h"] == NOW.time()


def test_the_clock_functions_answer_in_the_session_time_zone() -> None:
    context = SessionContext()
    functions.register(
        context, now=datetime(2030, 1, 1, 23, tzinfo=UTC), time_zone="+02:00"
    )

    row = context.sql("SELECT now() AS n, current_date AS d").to_pylist()[0]

    assert row["n"] == datetime(2030, 1, 1, 23, tzinfo=UTC)
    assert row["d"] == datetime(2030, 1, 2).date()


def test_now_is_folded_into_a_literal_at_planning_time(
    context: SessionContext,
) -> None:
    plan = context.sql("SELECT * FROM t WHERE now() > now()").optimized_logical_plan()

    assert "now()" not in plan.display_indent()
