"""Instants: whatever datetime arrives, the sync works with plain UTC datetimes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import pytest
from synchelp import NOW, destination, make_records, sandbox

from connector.errors import ConfigurationError
from connector.settings import parse_duration, parse_instant
from connector.sync import run_backfill
from sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(200, seed=5, start=NOW - timedelta(hours=3), end=NOW)
    with sandbox(records) as running:
        yield running


def test_a_pendulum_instant_becomes_a_plain_utc_datetime() -> None:
    paris = pendulum.datetime(2026, 5, 1, 2, 30, 15, 123_456, tz="Europe/Paris")

    instant = parse_instant(paris, "start")

    assert type(instant) is datetime
    assert instant.tzinfo is UTC
    assert instant == datetime(2026, 5, 1, 0, 30, 15, 123_456, tzinfo=UTC)


def test_a_pendulum_instant_keeps_its_time_zone_through_arithmetic() -> None:
    instant = parse_instant(pendulum.datetime(2026, 5, 1, tz="Europe/Paris"), "end")

    later = instant + timedelta(hours=1)

    assert later.tzinfo is UTC
    assert later == datetime(2026, 4, 30, 23, tzinfo=UTC)


def test_a_backfill_accepts_pendulum_instants(
    server: SandboxServer, tmp_path: Path
) -> None:
    start = pendulum.instance(NOW - timedelta(hours=2)).in_timezone("Europe/Paris")
    end = pendulum.instance(NOW)

    report = run_backfill(
        destination(tmp_path).pipeline,
        start,
        end,
        read_token=server.token,
        base_url=server.url,
        tables=["records"],
    )

    assert report.caught_up
    assert report.rows > 0


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+02:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"],
)
def test_instants_beyond_any_telemetry_are_refused_naming_the_year(text: str) -> None:
    with pytest.raises(ConfigurationError, match="years 1970 to 2199"):
        parse_instant(text, "start")


def test_durations_beyond_a_century_are_refused() -> None:
    assert parse_duration("36500d", "settle") == timedelta(days=36_500)
    with pytest.raises(ConfigurationError, match="100 years"):
        parse_duration(1e12, "settle")
