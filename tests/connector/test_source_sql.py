"""logfire_sql_resource: a user's rollup, synced by its cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from synchelp import NOW, destination, make_records, sandbox

from connector import ConfigurationError, logfire_sql_resource
from sandbox.server import SandboxServer

HOURLY = (
    "SELECT date_trunc('hour', created_at) AS hour, service_name, "
    "count(*) AS spans FROM records GROUP BY 1, 2"
)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(3_000, seed=31, start=NOW - timedelta(hours=6), end=NOW)
    with sandbox(records) as running:
        yield running


def hourly_counts(
    server: SandboxServer, before: datetime
) -> Counter[tuple[datetime, str]]:
    rows = server.store.visible("records", server.clock.now()).to_pylist()
    counts: Counter[tuple[datetime, str]] = Counter()
    for row in rows:
        hour = row["created_at"].replace(minute=0, second=0, microsecond=0)
        if hour < before:
            counts[hour, row["service_name"]] += 1
    return counts


def test_an_hourly_rollup_syncs_complete_buckets_once(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    resource = logfire_sql_resource(
        "hourly",
        HOURLY,
        "hour",
        primary_key=["hour", "service_name"],
        read_token=server.token,
        base_url=server.url,
        start=(NOW - timedelta(hours=8)).isoformat(),
        settle="65m",
        page_size=4,
    )
    dest.pipeline.run(resource)
    horizon = NOW - timedelta(minutes=65)

    loaded = dest.table("hourly").to_pylist()
    got = {(row["hour"], row["service_name"]): row["spans"] for row in loaded}
    assert got == dict(hourly_counts(server, horizon))
    assert len(loaded) > 4


def test_options_left_out_come_from_the_sources_config(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__LOGFIRE__READ_TOKEN", server.token)
    monkeypatch.setenv("SOURCES__LOGFIRE__BASE_URL", server.url)
    monkeypatch.setenv(
        "SOURCES__LOGFIRE__START", (NOW - timedelta(hours=8)).isoformat()
    )
    monkeypatch.setenv("SOURCES__LOGFIRE__SETTLE", "65m")
    monkeypatch.setenv("SOURCES__LOGFIRE__PAGE_SIZE", "4")
    dest = destination(tmp_path)
    server.counters.reset()

    resource = logfire_sql_resource(
        "hourly", HOURLY, "hour", primary_key=["hour", "service_name"]
    )
    dest.pipeline.run(resource)

    loaded = dest.table("hourly").to_pylist()
    got = {(row["hour"], row["service_name"]): row["spans"] for row in loaded}
    assert got == dict(hourly_counts(server, NOW - timedelta(minutes=65)))
    # Four rows a page: the page size came from the config too.
    assert server.counters.snapshot()["queries"] >= len(loaded) / 4


def test_the_query_must_be_a_select(server: SandboxServer) -> None:
    with pytest.raises(ConfigurationError, match="SELECT"):
        logfire_sql_resource(
            "bad", "DROP TABLE records", "hour", read_token=server.token
        )


def test_the_cursor_must_be_a_plain_column(server: SandboxServer) -> None:
    with pytest.raises(ConfigurationError, match="cursor_column"):
        logfire_sql_resource(
            "bad", HOURLY, "date_trunc('hour', x)", read_token=server.token
        )


def test_a_cursor_that_is_not_a_timestamp_fails_clearly(
    server: SandboxServer, tmp_path: Path
) -> None:
    resource = logfire_sql_resource(
        "levels",
        "SELECT level, created_at FROM records",
        "level",
        read_token=server.token,
        base_url=server.url,
    )
    with pytest.raises(PipelineStepFailed, match=r"not a timestamp|HTTP 400"):
        destination(tmp_path).pipeline.run(resource)


def test_another_query_fails_until_reloaded_or_accepted(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    options: dict[str, Any] = {
        "primary_key": ["hour", "service_name"],
        "read_token": server.token,
        "base_url": server.url,
        "start": (NOW - timedelta(hours=8)).isoformat(),
        "settle": "65m",
    }
    dest.pipeline.run(logfire_sql_resource("hourly", HOURLY, "hour", **options))
    loaded = dest.table("hourly").to_pylist()
    errors_only = HOURLY.replace("FROM records", "FROM records WHERE level >= 17")

    server.counters.reset()
    with pytest.raises(PipelineStepFailed) as refused:
        dest.pipeline.run(
            logfire_sql_resource("hourly", errors_only, "hour", **options)
        )
    extraction = refused.value.__cause__
    assert extraction is not None
    assert isinstance(extraction.__cause__, ConfigurationError)
    message = str(extraction.__cause__)
    assert "WHERE level >= 17" in message
    assert 'refresh="drop_resources"' in message
    assert "accept_query_change=True" in message
    assert server.counters.snapshot()["requests"]["total"] == 0
    assert dest.table("hourly").to_pylist() == loaded

    # Accepting goes on from the watermark, and the next run needs nothing.
    accepted = logfire_sql_resource(
        "hourly", errors_only, "hour", accept_query_change=True, **options
    )
    dest.pipeline.run(accepted)
    dest.pipeline.run(logfire_sql_resource("hourly", errors_only, "hour", **options))
    assert dest.table("hourly").to_pylist() == loaded

    # The advised reload drops the old rows and reads them all with the new query.
    dest.pipeline.run(
        logfire_sql_resource("hourly", HOURLY, "hour", **options),
        refresh="drop_resources",
    )
    horizon = NOW - timedelta(minutes=65)
    got = {
        (row["hour"], row["service_name"]): row["spans"]
        for row in dest.table("hourly").to_pylist()
    }
    assert got == dict(hourly_counts(server, horizon))


def test_a_query_changed_only_in_spacing_says_so(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    options: dict[str, Any] = {
        "read_token": server.token,
        "base_url": server.url,
        "start": (NOW - timedelta(hours=8)).isoformat(),
        "settle": "65m",
    }
    dest.pipeline.run(logfire_sql_resource("spaced", HOURLY, "hour", **options))
    respaced = HOURLY.replace(" FROM records", "\nFROM   records")
    with pytest.raises(PipelineStepFailed, match="differs only in its spacing"):
        dest.pipeline.run(logfire_sql_resource("spaced", respaced, "hour", **options))
