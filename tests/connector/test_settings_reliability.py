"""The options of truncation checks and the request budget."""

from __future__ import annotations

import pytest

from connector import ConfigurationError
from connector.settings import build_settings


def test_counts_are_verified_exactly_when_the_marker_is_not_required() -> None:
    assert not build_settings(read_token="t").verify_counts
    assert build_settings(read_token="t", require_end_marker=False).verify_counts
    assert build_settings(read_token="t", require_end_marker="false").verify_counts


def test_counts_can_be_turned_on_or_off_either_way() -> None:
    off = build_settings(read_token="t", require_end_marker=False, verify_counts=False)
    on = build_settings(read_token="t", verify_counts="yes")

    assert not off.verify_counts
    assert not off.require_end_marker
    assert on.verify_counts
    assert on.require_end_marker


def test_no_budget_unless_asked() -> None:
    assert build_settings(read_token="t").max_requests_per_minute is None
    settings = build_settings(read_token="t", max_requests_per_minute="120")
    assert settings.max_requests_per_minute == 120


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("require_end_marker", "maybe"),
        ("verify_counts", 2),
        ("max_requests_per_minute", 0),
        ("max_requests_per_minute", "often"),
    ],
)
def test_bad_values_name_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        build_settings(read_token="t", **{option: value})
