from __future__ import annotations

import warnings

import pytest

from connector.errors import ConfigurationError
from connector.tokens import (
    REGION_BASE_URLS,
    ReadToken,
    base_url_for,
    redact,
    token_region,
)

ORG = "0b7c5e7e-5a3b-4a9e-9d8e-2f1c3a4b5c6d"
SECRET = "Xk2pQ9rT7vW1yZ3bN5mL8hJ4gF6dS0aE"


@pytest.mark.parametrize(
    ("token", "region", "base_url"),
    [
        (f"pylf_v1_us_{SECRET}", "us", "https://logfire-us.pydantic.dev"),
        (f"pylf_v1_eu_{SECRET}", "eu", "https://logfire-eu.pydantic.dev"),
        (
            f"pylf_v2_stagingus_{SECRET}",
            "stagingus",
            "https://logfire-us.pydantic.info",
        ),
        (
            f"pylf_v2_stagingeu_{SECRET}",
            "stagingeu",
            "https://logfire-eu.pydantic.info",
        ),
        (f"pylf_v2_eu_{ORG}_{SECRET}", "eu", "https://logfire-eu.pydantic.dev"),
        (f"pylf_v10_us_{ORG}_{SECRET}", "us", "https://logfire-us.pydantic.dev"),
        (SECRET, "us", "https://logfire-us.pydantic.dev"),
        (f"  pylf_v1_eu_{SECRET}\n", "eu", "https://logfire-eu.pydantic.dev"),
    ],
)
def test_region_and_base_url_come_from_the_token(
    token: str, region: str, base_url: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert token_region(token) == region
        assert base_url_for(token) == base_url


def test_every_region_has_a_base_url() -> None:
    assert set(REGION_BASE_URLS) == {"us", "eu", "stagingus", "stagingeu"}


def test_unknown_region_warns_and_falls_back_to_us() -> None:
    with pytest.warns(UserWarning, match="unknown region \\('ap'\\)"):
        assert token_region(f"pylf_v1_ap_{SECRET}") == "us"


def test_unknown_region_warning_never_shows_a_secret_looking_part() -> None:
    with pytest.warns(UserWarning, match="unrecognised") as caught:
        assert token_region(f"pylf_v1_{SECRET}_{SECRET}") == "us"

    assert SECRET not in str(caught[0].message)


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        (f"pylf_v1_us_{SECRET}", "pylf_v1_us_****"),
        (f"pylf_v2_eu_{ORG}_{SECRET}", "pylf_v2_eu_****"),
        (f"pylf_v1_stagingeu_{SECRET}", "pylf_v1_stagingeu_****"),
        (f"pylf_v1_mars_{SECRET}", "pylf_v1_****"),
        (SECRET, "****"),
        ("", "****"),
    ],
)
def test_redact_keeps_only_prefix_and_region(token: str, shown: str) -> None:
    assert redact(token) == shown


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_token_names_the_settings(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ReadToken(value)

    message = str(caught.value)
    assert "LOGFIRE_READ_TOKEN" in message
    assert "sources.logfire.read_token" in message


@pytest.mark.parametrize("value", [f"pylf_v1_us_{SECRET} x", f"pylf_v1_us_{SECRET}é"])
def test_token_with_bad_characters_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ReadToken(value)

    assert SECRET not in str(caught.value)
    assert "LOGFIRE_READ_TOKEN" in str(caught.value)


def test_read_token_hides_itself_in_repr_and_str() -> None:
    token = ReadToken(f"pylf_v1_eu_{SECRET}")

    assert repr(token) == "ReadToken('pylf_v1_eu_****')"
    assert str(token) == "pylf_v1_eu_****"
    assert f"{token}" == "pylf_v1_eu_****"
    assert SECRET not in repr([token])


def test_read_token_reveals_the_stripped_value() -> None:
    token = ReadToken(f" pylf_v1_eu_{SECRET}\n")

    assert token.reveal() == f"pylf_v1_eu_{SECRET}"
    assert token.region == "eu"
    assert token.base_url == "https://logfire-eu.pydantic.dev"


def test_scrub_replaces_every_copy_of_the_token() -> None:
    token = ReadToken(f"pylf_v1_us_{SECRET}")
    text = f"bad token pylf_v1_us_{SECRET}; again: pylf_v1_us_{SECRET}"

    assert token.scrub(text) == "bad token pylf_v1_us_****; again: pylf_v1_us_****"
