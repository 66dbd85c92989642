"""Logfire read tokens: which region they belong to, and how to keep them secret.

A read token looks like ``pylf_v<N>_<region>_<secret>`` or
``pylf_v<N>_<region>_<org-uuid>_<secret>``. The region picks the service that
accepts it; older tokens without the prefix belong to the US service.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Final, Literal

from connector.errors import ConfigurationError

__all__ = [
    "DEFAULT_REGION",
    "REGION_BASE_URLS",
    "ReadToken",
    "Region",
    "base_url_for",
    "redact",
    "token_region",
]

Region = Literal["us", "eu", "stagingus", "stagingeu"]

REGION_BASE_URLS: Final[Mapping[Region, str]] = {
    "us": "https://logfire-us.pydantic.dev",
    "eu": "https://logfire-eu.pydantic.dev",
    "stagingus": "https://logfire-us.pydantic.info",
    "stagingeu": "https://logfire-eu.pydantic.info",
}

DEFAULT_REGION: Final[Region] = "us"

_SETTING_NAMES = "LOGFIRE_READ_TOKEN (or sources.logfire.read_token)"
_PREFIX = re.compile(r"pylf_v(?P<version>[0-9]+)_(?P<region>[^_]+)_.+", re.DOTALL)
_SHOWABLE_REGION = re.compile(r"[a-z]{1,16}")
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_MASK = "****"

# Replacing a very short token in messages would garble them without hiding
# anything a real token needs hidden: real tokens are dozens of characters long.
_MIN_SCRUB_LENGTH = 8


def _known_region(name: str) -> Region | None:
    """The region called ``name``, if it is one of Logfire's."""
    for region in REGION_BASE_URLS:
        if region == name:
            return region
    return None


def token_region(token: str) -> Region:
    """The region a read token belongs to; US when the token does not say.

    Warns when the token names a region this connector does not know.
    """
    match = _PREFIX.fullmatch(token.strip())
    if match is None:
        return DEFAULT_REGION

    name = match["region"]
    region = _known_region(name)
    if region is not None:
        return region

    shown = repr(name) if _SHOWABLE_REGION.fullmatch(name) else "an unrecognised one"
    warnings.warn(
        f"The read token names an unknown region ({shown}), so the US service "
        f"{REGION_BASE_URLS[DEFAULT_REGION]} will be used. Pass base_url "
        "explicitly if the token belongs to another service.",
        UserWarning,
        stacklevel=2,
    )
    return DEFAULT_REGION


def base_url_for(token: str) -> str:
    """The base URL of the service that accepts ``token``."""
    return REGION_BASE_URLS[token_region(token)]


def redact(token: str) -> str:
    """A form of ``token`` safe to show: its prefix and region, never its secret.

    ``redact("pylf_v1_us_abc...")`` is ``"pylf_v1_us_****"``.
    """
    match = _PREFIX.fullmatch(token.strip())
    if match is None:
        return _MASK

    region = _known_region(match["region"])
    if region is None:
        return f"pylf_v{match['version']}_{_MASK}"
    return f"pylf_v{match['version']}_{region}_{_MASK}"


class ReadToken:
    """A read token that shows only its redacted form in reprs and strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        cleaned = value.strip()
        if not cleaned:
            raise ConfigurationError(
                f"The Logfire read token is empty. Set {_SETTING_NAMES} to a "
                "read token created in the Logfire project's settings."
            )
        if not _TOKEN_CHARACTERS.fullmatch(cleaned):
            raise ConfigurationError(
                "The Logfire read token contains spaces or characters outside "
                f"printable ASCII. Copy the token into {_SETTING_NAMES} again."
            )
        self._value = cleaned

    def reveal(self) -> str:
        """The token itself, for the Authorization header only."""
        return self._value

    @property
    def region(self) -> Region:
        """The region the token belongs to."""
        return token_region(self._value)

    @property
    def base_url(self) -> str:
        """The base URL of the service for the token's region."""
        return REGION_BASE_URLS[self.region]

    @property
    def redacted(self) -> str:
        """The token's safe form, such as ``pylf_v1_us_****``."""
        return redact(self._value)

    def scrub(self, text: str) -> str:
        """``text`` with every copy of the token replaced by its redacted form."""
        if len(self._value) < _MIN_SCRUB_LENGTH:
            return text
        return text.replace(self._value, self.redacted)

    def __repr__(self) -> str:
        return f"ReadToken({self.redacted!r})"

    def __str__(self) -> str:
        return self.redacted
