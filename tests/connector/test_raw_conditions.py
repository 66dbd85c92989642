"""Raw `where` conditions stay inside their parentheses; windows fit the scan."""

from __future__ import annotations

import pytest
from datafusion import SessionContext

from connector.errors import ConfigurationError
from connector.settings import build_settings
from connector.sql import check_condition

FINE = [
    "service_name = 'api'",
    "message = 'it''s (not) closed; really'",
    "a IN ('x', 'y') AND (b OR (c AND d))",
    '"odd ) name" = 1',
    "level >= 13 -- a comment with ) and ;",
    "level /* ( */ >= 13",
    "attributes LIKE '%--%'",
]

# Quotes and comments that DataFusion reads in its own way: E'' strings take
# backslash escapes (plain strings do not), $tag$ quotes, backtick names and
# nested block comments.
FINE_IN_DATAFUSION = [
    r"message = E'it\'s (not) closed'",
    r"message = E'back\\' AND level > 1",
    r"message = 'a\' AND level > 1",
    "message LIKE $$50%) off$$",
    "message = $tag$ ') $tag$",
    "level /* outer /* ( */ still a comment ) */ >= 13",
    "`level` >= 13",
]

# Each is balanced to a reader that does not know those rules, but escapes
# its parentheses in DataFusion.
ESCAPES_IN_DATAFUSION = [
    (r"message = E'\'' ) OR (TRUE) OR (message = E'\''", "closes a parenthesis"),
    ("message = $$'$$ ) OR (TRUE) OR (message = $$'$$", "closes a parenthesis"),
    ("TRUE AND `'` = 1 ) OR (TRUE) OR (`'` = 1", "closes a parenthesis"),
    (
        "TRUE /* /* */ ( */ ) OR (TRUE) OR (TRUE /* /* */ ) */",
        "closes a parenthesis",
    ),
]

ESCAPES = [
    ("1 = 1) OR (1 = 1", "closes a parenthesis"),
    ("true) --", "closes a parenthesis"),
    ("1 = 1; DROP TABLE records", "ends the statement"),
    ("(level > 5", "leaves a parenthesis open"),
    ("message = 'open", "quoted string"),
    ('"open = 1', "quoted string"),
    ("level > 5 /* and the rest", "comment open"),
    ("message = $$ (", "dollar-quoted string open"),
    ("level > 1 /* /* */", "comment open"),
]


@pytest.mark.parametrize("condition", FINE)
def test_conditions_that_stay_inside_their_parentheses_pass(condition: str) -> None:
    assert check_condition(condition) == condition


def rows_kept_by_false_and(condition: str) -> int:
    """The rows DataFusion keeps with ``FALSE AND (condition)``: 0 unless it escapes."""
    context = SessionContext()
    context.sql("""CREATE TABLE t AS SELECT 'm' AS message, 20 AS level, 1 AS "'\"""")
    query = f"SELECT count(*) AS n FROM t WHERE FALSE AND ({condition})"
    return int(context.sql(query).to_pylist()[0]["n"])


@pytest.mark.parametrize("condition", FINE_IN_DATAFUSION)
def test_datafusion_quotes_and_comments_are_read_as_datafusion_does(
    condition: str,
) -> None:
    assert check_condition(condition) == condition
    assert rows_kept_by_false_and(condition) == 0


@pytest.mark.parametrize(("condition", "problem"), ESCAPES_IN_DATAFUSION)
def test_what_the_checker_refuses_would_escape_in_datafusion(
    condition: str, problem: str
) -> None:
    assert rows_kept_by_false_and(condition) == 1
    with pytest.raises(ConfigurationError, match=problem):
        check_condition(condition)


@pytest.mark.parametrize(("condition", "problem"), ESCAPES + ESCAPES_IN_DATAFUSION)
def test_conditions_that_would_escape_are_refused(condition: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        check_condition(condition, "where")
    assert "balanced parentheses" in str(refused.value)


def test_settings_refuse_an_escaping_where_per_table_too() -> None:
    with pytest.raises(ConfigurationError, match=r"where\[records\]"):
        build_settings(read_token="t", where={"records": "1 = 1) OR (1 = 1"})


@pytest.mark.parametrize("window", ["15d", "12d", 13 * 86_400])
def test_a_first_window_wider_than_a_scan_allows_is_refused(window: object) -> None:
    with pytest.raises(ConfigurationError, match="13 days") as refused:
        build_settings(read_token="t", initial_window=window)
    assert "Choose at most 11 days, 22:59:58" in str(refused.value)


def test_the_widest_first_window_is_allowed() -> None:
    settings = build_settings(read_token="t", initial_window="11d22h59m58s")
    assert settings.initial_window == settings.max_width
