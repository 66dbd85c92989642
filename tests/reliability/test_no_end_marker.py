"""A service whose Arrow streams never end with the marker: counts catch clean cuts.

The sandbox here leaves the end-of-stream marker out of every stream, as the
Arrow format allows, and cuts some of them cleanly after their first batch of
50 rows. To the client a cut page is then just a short one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from connector.client import LogfireClient
from connector.errors import IncompleteResponseError
from connector.pager import WindowQuery, order_by, read_window
from connector.sync import run_sync
from connector.tables import RECORDS
from connector.windows import Window
from reliability.compare import compare, expected_rows, read_table
from reliability.faultmatrix import NOW, SETTLE, fault_sandbox
from reliability.retries import short_retry_waits
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

CUTS = 8


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with fault_sandbox(records=1_500, metrics=300, marker=False) as running:
        yield running


@pytest.fixture(autouse=True)
def faults(server: SandboxServer) -> Iterator[None]:
    server.faults = FaultPlan.none()
    server.counters.reset()
    with short_retry_waits():
        yield
    server.faults = FaultPlan.none()


def sync(server: SandboxServer, folder: Path, **extra: Any) -> Path:
    database = folder / "unmarked.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="unmarked",
        destination=dlt.destinations.duckdb(str(database)),
        pipelines_dir=str(folder / "pipelines"),
        dataset_name="logfire",
    )
    run_sync(
        pipeline,
        read_token=server.token,
        base_url=server.url,
        tables=["records"],
        start=(NOW - timedelta(hours=7)).isoformat(),
        page_size=200,
        max_attempts=4,
        **extra,
    )
    return database


def expected(server: SandboxServer) -> Any:
    stored = server.store.visible("records", server.clock.now())
    return expected_rows(stored, created_before=NOW - SETTLE)


def test_with_the_marker_off_every_cut_is_caught_by_a_count(
    server: SandboxServer, tmp_path: Path
) -> None:
    server.faults.force("truncate", CUTS)
    database = sync(server, tmp_path, require_end_marker=False)

    compare("records", read_table(database, "records"), expected(server)).check()
    assert server.counters.snapshot()["faults"] == {"truncate": CUTS}


def test_without_counts_the_same_cuts_lose_rows_unnoticed(
    server: SandboxServer, tmp_path: Path
) -> None:
    server.faults.force("truncate", CUTS)
    database = sync(server, tmp_path, require_end_marker=False, verify_counts=False)

    comparison = compare("records", read_table(database, "records"), expected(server))
    assert comparison.missing > 0
    assert comparison.extra == 0


def test_by_default_the_short_pages_without_the_marker_are_counted(
    server: SandboxServer, tmp_path: Path
) -> None:
    server.faults.force("truncate", CUTS)
    database = sync(server, tmp_path)

    compare("records", read_table(database, "records"), expected(server)).check()
    assert server.counters.snapshot()["faults"] == {"truncate": CUTS}


def test_a_page_that_cannot_be_counted_still_needs_the_marker(
    server: SandboxServer,
) -> None:
    client = LogfireClient(server.token, base_url=server.url)
    query = WindowQuery(
        build=lambda extra, limit: (
            f"SELECT * FROM records WHERE {extra or 'true'} "
            f"ORDER BY {order_by(RECORDS.key)} LIMIT {limit}"
        ),
        key=RECORDS.key,
        window=Window(NOW - timedelta(days=1), NOW),
        window_column="created_at",
        min_timestamp=NOW - timedelta(days=2),
        max_timestamp=NOW,
        label="records",
    )

    with client, pytest.raises(IncompleteResponseError, match="require_end_marker"):
        list(read_window(client, query, page_size=10_000))
