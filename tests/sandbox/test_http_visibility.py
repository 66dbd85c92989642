"""Rows settle and arrive late through the API, as they do in Logfire."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from sandbox import schema
from sandbox.clock import Clock
from sandbox.server import SandboxServer
from sandbox.store import Store

SETTLED = timedelta(minutes=5)


@pytest.fixture
def dense() -> Iterator[SandboxServer]:
    """An hour of data, dense enough that rows are settling at any instant."""
    with SandboxServer(records=6_000, metrics=100, hours=1, seed=9) as server:
        yield server


def count(server: SandboxServer, where: str, min_timestamp: datetime) -> int:
    body = {
        "sql": f"SELECT count(*) AS n FROM records WHERE {where}",
        "min_timestamp": min_timestamp.isoformat(),
    }
    response = httpx.post(
        f"{server.url}/v2/query", json=body, headers={"Authorization": server.token}
    )
    assert response.status_code == 200, response.text
    n: int = response.json()["data"][0]["n"]
    return n


def stored(store: Store) -> list[dict[str, Any]]:
    table = pa.Table.from_batches(store.snapshot("records"))
    columns = ["trace_id", "span_id", "start_timestamp", "created_at"]
    rows: list[dict[str, Any]] = table.select([*columns, schema.VISIBLE_AT]).to_pylist()
    return rows


def same_span(row: dict[str, Any]) -> str:
    return f"trace_id = '{row['trace_id']}' AND span_id = '{row['span_id']}'"


def test_a_stored_row_is_hidden_until_it_settles() -> None:
    store = Store.generated(
        seed=4, records=2_000, metrics=10, hours=1, end=datetime.now(UTC)
    )
    row = max(stored(store), key=lambda r: r[schema.VISIBLE_AT] - r["created_at"])
    lag = row[schema.VISIBLE_AT] - row["created_at"]
    # Between being stored and becoming visible, with room on either side.
    clock = Clock(start=row["created_at"] + lag / 2)
    since = row["start_timestamp"] - timedelta(minutes=1)

    with SandboxServer(store, clock=clock) as server:
        before = count(server, same_span(row), since)
        server.clock.advance(SETTLED)
        after = count(server, same_span(row), since)

    assert lag > timedelta(seconds=30)
    assert before < after


def test_rows_created_five_minutes_ago_never_change(dense: SandboxServer) -> None:
    start = dense.clock.now() - timedelta(hours=2)
    cutoff = dense.clock.now() - SETTLED
    where = f"created_at <= '{cutoff.isoformat()}'"

    before = count(dense, where, start)
    dense.clock.advance(timedelta(minutes=30))
    after = count(dense, where, start)

    assert before == after > 0


def test_newer_rows_keep_arriving_as_the_clock_moves(dense: SandboxServer) -> None:
    start = dense.clock.now() - timedelta(hours=2)
    since = dense.clock.now() - SETTLED

    before = count(dense, f"created_at > '{since.isoformat()}'", start)
    dense.clock.advance(timedelta(hours=1))
    after = count(dense, f"created_at > '{since.isoformat()}'", start)

    assert after > before


def test_a_late_span_is_found_only_with_a_wide_min_timestamp(
    sandbox: SandboxServer,
) -> None:
    now = sandbox.clock.now()
    late = [
        row
        for row in stored(sandbox.store)
        if row[schema.VISIBLE_AT] < now - timedelta(minutes=1)
        and row["created_at"] - row["start_timestamp"] > timedelta(hours=2)
    ]
    assert late, "the data has no span stored hours after it started"
    row = late[0]
    created = row["created_at"]
    where = (
        f"{same_span(row)} AND created_at >= '{created.isoformat()}' "
        f"AND created_at <= '{created.isoformat()}'"
    )

    narrow = count(sandbox, where, created - timedelta(minutes=10))
    wide = count(sandbox, where, created - timedelta(hours=24))

    assert (narrow, wide) == (0, 1)
