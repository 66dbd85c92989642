"""Options: each mistake is a ConfigurationError before any request; dlt config."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from synchelp import NOW, captured_logs, destination, make_records, sandbox

from connector import ConfigurationError, logfire_source
from connector.settings import build_settings, parse_duration
from connector.sync import run_backfill, run_sync
from sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(100, seed=1, start=NOW - timedelta(hours=2), end=NOW)
    with sandbox(records) as running:
        yield running


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"tables": ["spans"]}, "tables"),
    ({"tables": "records"}, "tables"),
    ({"tables": []}, "tables"),
    ({"table_columns": {"records": ["spam_name"]}}, "span_name"),
    ({"table_columns": {"records": ["Bad Name"]}}, "column name"),
    ({"table_columns": {"metrics": ["unit"]}, "tables": ["records"]}, "not synced"),
    ({"table_columns": ["span_name"]}, "table_columns"),
    ({"service_names": "api"}, "service_names"),
    ({"service_names": []}, "service_names"),
    ({"environments": [3]}, "environments"),
    ({"min_level": "loud"}, "min_level"),
    ({"min_level": -1}, "min_level"),
    ({"where": ""}, "where"),
    ({"where": {"spans": "1 = 1"}}, "where"),
    ({"start": "2026-05-01T00:00:00"}, "time zone"),
    ({"start": datetime(2026, 5, 1)}, "time zone"),
    ({"start": "yesterday"}, "ISO 8601"),
    ({"initial_window": 0}, "initial_window"),
    ({"initial_window": "soon"}, "duration"),
    ({"settle": -5}, "settle"),
    ({"lateness_back": "10d", "lateness_ahead": "4d"}, "14 days"),
    ({"lateness_back": "12d22h30m"}, r"initial_window = 1:00:00 \(1h unless given\)"),
    ({"start": "2262-01-01T00:00:00Z"}, "years 1970 to 2199"),
    ({"settle": "200y"}, "duration"),
    ({"settle": 1e12}, "100 years"),
    ({"page_size": 0}, "page_size"),
    ({"page_size": 10_001}, "page_size"),
    ({"page_size": 1.5}, "page_size"),
    ({"concurrency": 17}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"timeout": 0}, "timeout"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_retry_seconds": "0s"}, "max_retry_seconds"),
    ({"chunk": "0h"}, "chunk"),
    ({"backfill": ["2026-05-02T00:00:00Z", "2026-05-01T00:00:00Z"]}, "before"),
    ({"backfill": "2026-05-01T00:00:00Z"}, "pair"),
    ({"write_disposition": "replace"}, "write_disposition"),
    ({"read_token": ""}, "read_token"),
    ({"base_url": "ftp://example.com"}, "base URL"),
]


@pytest.mark.parametrize(("bad", "named"), BAD_OPTIONS)
def test_a_bad_option_is_refused_before_any_request(
    server: SandboxServer, tmp_path: Path, bad: dict[str, Any], named: str
) -> None:
    before = server.counters.snapshot()["requests"]["total"]
    options = {"read_token": server.token, "base_url": server.url, **bad}
    dest = destination(tmp_path)

    def attempt() -> None:
        if "backfill" in bad:
            dest.pipeline.run(logfire_source(**options))
        else:
            run_sync(dest.pipeline, **options)

    with pytest.raises(ConfigurationError, match=named):
        attempt()

    assert server.counters.snapshot()["requests"]["total"] == before


def test_the_source_itself_refuses_bad_options() -> None:
    with pytest.raises(ConfigurationError, match="page_size"):
        logfire_source(read_token="t", page_size=0)


def test_a_missing_token_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCES__LOGFIRE__READ_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="read_token"):
        run_sync(destination(tmp_path).pipeline)


def test_a_backfill_range_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="before"):
        run_backfill(destination(tmp_path).pipeline, NOW, NOW - timedelta(hours=1))


def test_options_come_from_environment_variables(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__LOGFIRE__READ_TOKEN", server.token)
    monkeypatch.setenv("SOURCES__LOGFIRE__BASE_URL", server.url)
    monkeypatch.setenv("SOURCES__LOGFIRE__TABLES", '["records"]')
    monkeypatch.setenv("SOURCES__LOGFIRE__SETTLE", "10m")
    monkeypatch.setenv(
        "SOURCES__LOGFIRE__START", (NOW - timedelta(hours=3)).isoformat()
    )
    dest = destination(tmp_path)

    report = run_sync(dest.pipeline)

    assert [table.table for table in report.tables] == ["records"]
    assert report.tables[0].watermark == NOW - timedelta(minutes=10)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (300, 300),
        (1.5, 1.5),
        ("300", 300),
        ("5m", 300),
        ("1h30m", 5_400),
        ("2d", 172_800),
        ("1w", 604_800),
        ("250ms", 0.25),
        ("PT5M", 300),
        ("P1DT12H", 129_600),
        (timedelta(minutes=2), 120),
    ],
)
def test_durations_are_seconds_or_strings_with_units(
    text: object, seconds: float
) -> None:
    assert parse_duration(text, "settle") == timedelta(seconds=seconds)


def test_the_token_is_not_in_the_settings_repr() -> None:
    settings = build_settings(read_token="pylf_v1_us_verysecretvalue")
    assert "verysecret" not in repr(settings)


def test_columns_always_include_the_key_and_cursor() -> None:
    settings = build_settings(read_token="t", columns={"records": ["duration"]})
    chosen = settings.columns["records"]
    for required in ("created_at", "start_timestamp", "trace_id", "span_id", "kind"):
        assert required in chosen
    assert "duration" in chosen
    assert "attributes" not in chosen


def test_a_start_beyond_retention_is_warned_about(
    server: SandboxServer, tmp_path: Path
) -> None:
    start = (NOW - timedelta(days=40)).isoformat()
    with captured_logs(("connector",)) as lines:
        run_sync(
            destination(tmp_path).pipeline,
            read_token=server.token,
            base_url=server.url,
            tables=["records"],
            start=start,
            chunk="60d",
        )
    assert any("past retention" in line for line in lines)


def test_where_per_table_may_arrive_as_json_text_from_config() -> None:
    settings = build_settings(
        read_token="t", where='{"records": "kind = \'log\'"}', tables=["records"]
    )
    assert settings.where == {"records": "kind = 'log'"}
