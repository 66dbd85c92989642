"""A sync of the sandbox's generated telemetry: realistic traces, late spans, events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from synchelp import NOW, assert_same_rows, destination, expected_rows

from connector.sync import run_sync
from sandbox.clock import Clock
from sandbox.server import SandboxServer
from sandbox.store import Store


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    store = Store.generated(seed=5, records=8_000, metrics=2_000, hours=6, end=NOW)
    clock = Clock(start=NOW, speed=1e-9)
    with SandboxServer(store, clock=clock) as running:
        yield running


@pytest.mark.parametrize("page_size", [10_000, 300])
def test_generated_telemetry_arrives_exactly_once(
    server: SandboxServer, tmp_path: Path, page_size: int
) -> None:
    dest = destination(tmp_path)
    options = {
        "read_token": server.token,
        "base_url": server.url,
        "start": (NOW - timedelta(hours=30)).isoformat(),
        "page_size": page_size,
        "concurrency": 2,
    }
    report = run_sync(dest.pipeline, **options)
    again = run_sync(dest.pipeline, **options)

    horizon = NOW - timedelta(minutes=5)
    for table in ("records", "metrics"):
        visible = server.store.visible(table, server.clock.now())
        assert_same_rows(dest.table(table), expected_rows(visible, horizon))
    assert report.caught_up
    assert again.rows == 0
