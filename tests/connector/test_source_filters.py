"""Columns and filters: the destination holds exactly the rows and columns asked for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from synchelp import (
    NOW,
    assert_same_rows,
    destination,
    expected_rows,
    make_metrics,
    make_records,
    sandbox,
)

from connector.errors import ConfigurationError
from connector.sync import run_backfill, run_sync
from sandbox.server import SandboxServer

START = (NOW - timedelta(hours=30)).isoformat()
HORIZON = NOW - timedelta(minutes=5)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(3_000, seed=11, start=NOW - timedelta(hours=4), end=NOW)
    metrics = make_metrics(500, seed=12, start=NOW - timedelta(hours=4), end=NOW)
    with sandbox(records, metrics) as running:
        yield running


def reading(server: SandboxServer) -> dict[str, Any]:
    """The options that read records from `server`."""
    return {"read_token": server.token, "base_url": server.url, "tables": ["records"]}


def sync(server: SandboxServer, tmp_path: Path, **extra: Any) -> pa.Table:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, start=START, **reading(server), **extra)
    return dest.table("records")


def visible(server: SandboxServer) -> pa.Table:
    return expected_rows(server.store.visible("records", server.clock.now()), HORIZON)


def test_chosen_columns_plus_the_key_are_loaded(
    server: SandboxServer, tmp_path: Path
) -> None:
    loaded = sync(server, tmp_path, table_columns={"records": ["duration", "tags"]})
    expected = visible(server).select(
        [
            "start_timestamp",
            "created_at",
            "trace_id",
            "span_id",
            "kind",
            "span_name",
            "message",
            "duration",
            "tags",
        ]
    )
    assert set(loaded.column_names) == set(expected.column_names)
    assert_same_rows(loaded, expected)


def test_service_environment_level_and_span_filters_combine(
    server: SandboxServer, tmp_path: Path
) -> None:
    loaded = sync(
        server,
        tmp_path,
        service_names=["api", "web"],
        environments=["prod", ""],
        min_level="warn",
        span_names=["GET /", "query"],
    )
    rows = visible(server)
    environment = rows["deployment_environment"]
    mask = pc.and_(
        pc.and_(
            pc.is_in(rows["service_name"], pa.array(["api", "web"])),
            pc.or_kleene(pc.equal(environment, "prod"), pc.is_null(environment)),
        ),
        pc.and_(
            pc.greater_equal(rows["level"], 13),
            pc.is_in(rows["span_name"], pa.array(["GET /", "query"])),
        ),
    )
    expected = rows.filter(mask)
    assert 0 < expected.num_rows < rows.num_rows
    assert_same_rows(loaded, expected)


def test_a_raw_where_condition_is_anded_even_with_a_trailing_comment(
    server: SandboxServer, tmp_path: Path
) -> None:
    loaded = sync(server, tmp_path, where="kind = 'log' -- only logs")
    rows = visible(server)
    assert_same_rows(loaded, rows.filter(pc.equal(rows["kind"], "log")))


def test_other_filters_than_the_watermarks_fail_until_accepted(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    options = {**reading(server), "start": START}
    run_sync(dest.pipeline, service_names=["api"], **options)
    only_api = dest.count("records")
    rows = visible(server)
    assert only_api == pc.sum(pc.equal(rows["service_name"], "api")).as_py()

    server.counters.reset()
    with pytest.raises(ConfigurationError) as refused:
        run_sync(dest.pipeline, **options)
    message = str(refused.value)
    assert "service_name IN ('api')" in message
    assert "are now none" in message
    assert "--accept-filter-change" in message
    assert server.counters.snapshot()["requests"]["total"] == 0
    assert dest.count("records") == only_api

    # What the message advises: backfill with the new, wider filters, then
    # accept them for the watermark too.
    run_backfill(
        dest.pipeline, START, NOW.isoformat(), accept_filter_change=True, **options
    )
    accepted = run_sync(dest.pipeline, accept_filter_change=True, **options)
    again = run_sync(dest.pipeline, **options)

    assert accepted.rows == again.rows == 0
    assert_same_rows(dest.table("records"), rows)


def test_a_backfill_narrower_than_the_loaded_rows_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    # Its rows would replace every loaded row sharing their merge key, other
    # services' rows too, and it would not load those again.
    dest = destination(tmp_path)
    options = reading(server)
    run_sync(dest.pipeline, start=START, **options)
    loaded = dest.count("records")

    server.counters.reset()
    with pytest.raises(ConfigurationError) as refused:
        run_backfill(
            dest.pipeline, START, NOW.isoformat(), service_names=["api"], **options
        )

    message = str(refused.value)
    assert "service_name IN ('api')" in message
    assert "(created_at, start_timestamp)" in message
    assert "--accept-filter-change" in message
    assert server.counters.snapshot()["requests"]["total"] == 0
    assert dest.count("records") == loaded

    same = run_backfill(dest.pipeline, START, NOW.isoformat(), **options)
    assert same.rows == loaded
    assert_same_rows(dest.table("records"), visible(server))


@pytest.mark.parametrize("then", ["backfill", "sync"])
def test_after_a_backfill_alone_narrower_filters_are_refused(
    server: SandboxServer, tmp_path: Path, then: str
) -> None:
    # The backfill's rows were read without filters; a narrower backfill or a
    # first sync would replace the other services' rows sharing a merge key.
    dest = destination(tmp_path)
    options = reading(server)
    run_backfill(dest.pipeline, START, NOW.isoformat(), **options)
    loaded = dest.count("records")

    def narrower() -> object:
        if then == "backfill":
            return run_backfill(
                dest.pipeline, START, NOW.isoformat(), service_names=["api"], **options
            )
        return run_sync(dest.pipeline, start=START, service_names=["api"], **options)

    server.counters.reset()
    with pytest.raises(ConfigurationError, match="service_name IN"):
        narrower()

    assert server.counters.snapshot()["requests"]["total"] == 0
    assert dest.count("records") == loaded
    assert run_sync(dest.pipeline, start=START, **options).caught_up
    assert_same_rows(dest.table("records"), visible(server))
