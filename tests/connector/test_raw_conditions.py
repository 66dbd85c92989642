"""Raw `where` conditions stay inside their parentheses; windows fit the scan."""

from __future__ import annotations

import pytest

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

ESCAPES = [
    ("1 = 1) OR (1 = 1", "closes a parenthesis"),
    ("true) --", "closes a parenthesis"),
    ("1 = 1; DROP TABLE records", "ends the statement"),
    ("(level > 5", "leaves a parenthesis open"),
    ("message = 'open", "quoted string"),
    ('"open = 1', "quoted string"),
    ("level > 5 /* and the rest", "comment open"),
]


@pytest.mark.parametrize("condition", FINE)
def test_conditions_that_stay_inside_their_parentheses_pass(condition: str) -> None:
    assert check_condition(condition) == condition


@pytest.mark.parametrize(("condition", "problem"), ESCAPES)
def test_conditions_that_would_escape_are_refused(condition: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        check_condition(condition, "where")
    assert "balanced parentheses" in str(refused.value)


def test_settings_refuse_an_escaping_where_per_table_too() -> None:
    with pytest.raises(ConfigurationError, match=r"where\[records\]"):
        build_settings(read_token="t", where={"records": "1 = 1) OR (1 = 1"})


@pytest.mark.parametrize("window", ["15d", "13d", 14 * 86_400])
def test_a_first_window_wider_than_a_scan_allows_is_refused(window: object) -> None:
    with pytest.raises(ConfigurationError, match="14 days") as refused:
        build_settings(read_token="t", initial_window=window)
    assert "Choose at most 12 days, 22:59:58" in str(refused.value)


def test_the_widest_first_window_is_allowed() -> None:
    settings = build_settings(read_token="t", initial_window="12d22h59m58s")
    assert settings.initial_window == settings.max_width
