from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import datafusion
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigurationError
from connector.sql import (
    in_list,
    quote_identifier,
    quote_literal,
    text_value,
    timestamp_literal,
    validate_column_name,
)

INSTANT = datetime(2026, 5, 27, 13, 16, 36, 517321, tzinfo=UTC)


def engine(
    dialect: str = "generic", time_zone: str | None = None
) -> datafusion.SessionContext:
    config = datafusion.SessionConfig().set("datafusion.sql_parser.dialect", dialect)
    if time_zone is not None:
        config = config.set("datafusion.execution.time_zone", time_zone)
    return datafusion.SessionContext(config)


def select_value(ctx: datafusion.SessionContext, expression: str) -> object:
    rows = ctx.sql("SELECT " + expression + " AS v").to_arrow_table().to_pylist()
    assert len(rows) == 1
    return rows[0]["v"]


def timestamps_table(ctx: datafusion.SessionContext) -> None:
    instants = [INSTANT + timedelta(microseconds=n) for n in range(-2, 3)]
    table = pa.table({"ts": pa.array(instants, pa.timestamp("us", tz="UTC"))})
    ctx.register_record_batches("t", [table.to_batches()])


def matching(ctx: datafusion.SessionContext, condition: str) -> list[datetime]:
    result = ctx.sql(f"SELECT ts FROM t WHERE {condition} ORDER BY ts")
    return [row["ts"] for row in result.to_arrow_table().to_pylist()]


HOSTILE = [
    "it's",
    "'; DROP TABLE records; --",
    "' OR '1'='1",
    "\\",
    "back\\slash\\'",
    "x\\' OR 1=1 --",
    "-- a comment",
    "/* block */",
    "line\nbreak\ttab\r",
    "''''",
    '"double"',
    "é ü 漢字 😀",
    "\u2019 smart quote \u02bc",
    "$$dollar$$",
    "\x01\x1f\x7f",
    "",
]


def test_quote_literal_doubles_single_quotes() -> None:
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("plain") == "'plain'"


@pytest.mark.parametrize("dialect", ["generic", "postgresql"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_stay_one_literal(dialect: str, value: str) -> None:
    assert select_value(engine(dialect), quote_literal(value)) == value


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
    )
)
def test_any_text_round_trips_through_datafusion(value: str) -> None:
    assert select_value(engine(), quote_literal(value)) == value


def test_injected_literal_cannot_add_a_statement_or_condition() -> None:
    ctx = engine()
    ctx.register_record_batches("t", [pa.table({"s": ["a", "b"]}).to_batches()])
    literal = quote_literal("a' OR 'x'='x")
    sql = f"SELECT s FROM t WHERE s = {literal}"

    assert ctx.sql(sql).to_arrow_table().num_rows == 0


@pytest.mark.parametrize("quote", [quote_literal, quote_identifier])
def test_nul_characters_are_refused(quote: Callable[[str], str]) -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        quote("a\x00b")


@pytest.mark.parametrize("quote", [quote_literal, quote_identifier])
def test_lone_surrogates_are_refused(quote: Callable[[str], str]) -> None:
    with pytest.raises(ConfigurationError, match="not valid Unicode"):
        quote("a\ud800b")


def test_quote_identifier_doubles_double_quotes() -> None:
    assert quote_identifier('we"ird') == '"we""ird"'


@pytest.mark.parametrize("name", ['we"ird', "Mixed Case", "select", "a;b--c", "é"])
def test_quoted_identifiers_name_exactly_that_column(name: str) -> None:
    ctx = engine()
    ctx.register_record_batches("t", [pa.table({name: [7]}).to_batches()])
    quoted = quote_identifier(name)

    rows = ctx.sql(f"SELECT {quoted} FROM t").to_arrow_table()

    assert rows.column_names == [name]
    assert rows.column(0).to_pylist() == [7]


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        quote_identifier("")


@pytest.mark.parametrize("name", ["service_name", "_private", "http_2xx", "a"])
def test_plain_column_names_are_accepted(name: str) -> None:
    assert validate_column_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Service", "2xx", "a-b", "a b", 'a"', "a;drop", "é", "name\n"]
)
def test_other_column_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not a valid column name"):
        validate_column_name(name)


def test_timestamp_literal_is_utc_at_microseconds() -> None:
    assert timestamp_literal(INSTANT) == (
        "arrow_cast('2026-05-27T13:16:36.517321Z', "
        "'Timestamp(Microsecond, Some(\"UTC\"))')"
    )


def test_timestamp_literal_converts_other_offsets_to_utc() -> None:
    paris = INSTANT.astimezone(ZoneInfo("Europe/Paris"))
    plus_five = INSTANT.astimezone(timezone(timedelta(hours=5, minutes=30)))

    assert timestamp_literal(paris) == timestamp_literal(INSTANT)
    assert timestamp_literal(plus_five) == timestamp_literal(INSTANT)


def test_timestamp_literal_writes_whole_seconds_with_microseconds() -> None:
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    assert "'2026-01-02T03:04:05.000000Z'" in timestamp_literal(whole)


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no time zone"):
        timestamp_literal(datetime(2026, 5, 27, 13, 16, 36))


@pytest.mark.parametrize("time_zone", [None, "Europe/Paris", "America/New_York"])
def test_timestamp_literal_round_trips_through_datafusion(
    time_zone: str | None,
) -> None:
    value = select_value(engine(time_zone=time_zone), timestamp_literal(INSTANT))

    assert value == INSTANT
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)


@pytest.mark.parametrize("time_zone", [None, "Europe/Paris"])
def test_timestamp_literal_compares_exact_microseconds(time_zone: str | None) -> None:
    ctx = engine(time_zone=time_zone)
    timestamps_table(ctx)
    literal = timestamp_literal(INSTANT)
    micro = timedelta(microseconds=1)

    assert matching(ctx, f"ts = {literal}") == [INSTANT]
    assert matching(ctx, f"ts > {literal}") == [INSTANT + micro, INSTANT + 2 * micro]
    assert matching(ctx, f"ts < {literal}") == [INSTANT - 2 * micro, INSTANT - micro]
    assert len(matching(ctx, f"ts >= {literal}")) == 3


def test_timestamp_literals_order_like_their_instants() -> None:
    ctx = engine()
    earlier = timestamp_literal(INSTANT)
    later = timestamp_literal(INSTANT + timedelta(microseconds=1))

    assert select_value(ctx, f"{earlier} < {later}") is True
    assert select_value(ctx, f"{earlier} = {earlier}") is True
    assert select_value(ctx, f"{later} > {earlier}") is True


def test_timestamp_literal_reaches_beyond_nanosecond_range() -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

    assert select_value(engine(), timestamp_literal(far)) == far


def test_in_list_quotes_each_value() -> None:
    assert in_list(["prod", "it's"]) == "('prod', 'it''s')"


def test_in_list_matches_in_datafusion() -> None:
    values = ["prod", "'; DROP TABLE t; --", ""]
    ctx = engine()
    ctx.register_record_batches(
        "t", [pa.table({"s": ["prod", "dev", "", "'; DROP TABLE t; --"]}).to_batches()]
    )

    rows = ctx.sql(f"SELECT s FROM t WHERE s IN {in_list(values)} ORDER BY s")

    assert rows.to_arrow_table().column("s").to_pylist() == sorted(values)


def test_in_list_refuses_an_empty_list() -> None:
    with pytest.raises(ConfigurationError, match="at least one value"):
        in_list([])


def test_in_list_refuses_a_bare_string() -> None:
    with pytest.raises(ConfigurationError, match="Wrap it in a list"):
        in_list("prod")


def test_in_list_refuses_values_that_are_not_strings() -> None:
    with pytest.raises(ConfigurationError, match="must be strings"):
        in_list(["a", 1])  # type: ignore[list-item]


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "\x00x\x00", "it's\x00"])
def test_text_values_with_nul_compare_equal_in_datafusion(value: str) -> None:
    context = datafusion.SessionContext()
    context.from_arrow(pa.table({"m": [value, value + "z", "a"]}), "t")

    sql = f"SELECT m FROM t WHERE m = {text_value(value)}"
    found = context.sql(sql).to_arrow_table()["m"].to_pylist()

    assert found == [value]
    assert text_value("plain") == "'plain'"
