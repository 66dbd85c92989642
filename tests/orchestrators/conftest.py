"""Shared by the orchestrator tests: two days of sandbox data, and what must land.

The sandbox's clock stands still at `NOW`, so what a sync can see is fixed:
the stored rows whose `created_at` is before the horizon, five minutes
earlier. The daily partitions of `DAYS` cover nearly all of them by event
time; the incremental loads cover all of them by `created_at`.

Rows are compared as multisets of a few identifying columns, so a row loaded
twice shows as well as a row missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

# Imported before any test runs: on import, dlt puts a filter showing its
# deprecation warnings once in front of all others, which would override the
# tests' filterwarnings marks if it happened inside a test.
import dlt  # noqa: F401
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox.clock import Clock
from sandbox.server import SandboxServer
from sandbox.store import Store

NOW = datetime(2026, 5, 3, 12, tzinfo=UTC)
HORIZON = NOW - timedelta(minutes=5)
DAYS = (date(2026, 5, 1), date(2026, 5, 2))
FIRST_SYNC = datetime(2026, 4, 30, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")

COLUMNS = {
    "records": [
        "trace_id",
        "span_id",
        "kind",
        "start_timestamp",
        "created_at",
        "message",
    ],
    "metrics": [
        "metric_name",
        "service_name",
        "recorded_timestamp",
        "created_at",
        "scalar_value",
        "histogram_count",
    ],
}
EVENT_TIME = {"records": "start_timestamp", "metrics": "recorded_timestamp"}


@pytest.fixture(scope="session")
def two_days() -> Iterator[SandboxServer]:
    """A sandbox holding the two days before 2026-05-03, its clock stopped."""
    end = datetime(2026, 5, 3, tzinfo=UTC)
    store = Store.generated(seed=3, records=3_000, metrics=600, hours=48, end=end)
    with SandboxServer(store, clock=Clock(start=NOW, speed=1e-9)) as server:
        yield server


def sync_variables(server: SandboxServer, folder: Path) -> dict[str, str]:
    """The environment the orchestrator examples read, for `server`."""
    return {
        "LOGFIRE_READ_TOKEN": server.token,
        "LOGFIRE_BASE_URL": server.url,
        "LOGFIRE_BACKFILL_START": "2026-04-01",
        "DESTINATION__DUCKDB__CREDENTIALS": str(folder / "warehouse.duckdb"),
        "DLT_DATA_DIR": str(folder / "dlt"),
        # The first sync starts before the data, and one chunk reaches NOW.
        "SOURCES__LOGFIRE__START": FIRST_SYNC.isoformat(),
        "SOURCES__LOGFIRE__CHUNK": "7d",
    }


@dataclass(frozen=True)
class SandboxRows:
    """What the sandbox holds that a sync at `NOW` must load."""

    server: SandboxServer
    days: tuple[date, ...] = DAYS

    def due(self, table: str, days: Iterable[date] | None = None) -> Counter[Any]:
        """The rows due, or only those whose event time falls in `days`."""
        rows = self.server.store.visible(table, NOW)
        rows = rows.filter(pc.less(rows["created_at"], pa.scalar(HORIZON, TS)))
        if days is not None:
            column = rows[EVENT_TIME[table]]
            mask = pa.repeat(pa.scalar(False), len(rows))
            for day in days:
                mask = pc.or_(mask, _within(column, day))
            rows = rows.filter(mask)
        return _multiset(rows, table)


@dataclass(frozen=True)
class Warehouse:
    """The DuckDB file the orchestrators load, and dlt's data folder."""

    database: Path
    dlt_dir: Path

    def loaded(self, table: str) -> Counter[Any]:
        """The rows of `table`, as a multiset."""
        columns = ", ".join(COLUMNS[table])
        with duckdb.connect(str(self.database), read_only=True) as connection:
            rows = connection.sql(f"SELECT {columns} FROM logfire.{table}")
            return _multiset(rows.arrow().read_all(), table)

    def schemas(self) -> set[str]:
        """The schemas (datasets) in the file."""
        with duckdb.connect(str(self.database), read_only=True) as connection:
            rows = connection.execute(
                "SELECT schema_name FROM information_schema.schemata"
            ).fetchall()
        return {str(row[0]) for row in rows}

    def pipelines(self) -> set[str]:
        """The dlt pipelines that have a working folder here."""
        folder = self.dlt_dir / "pipelines"
        return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture(scope="session")
def sandbox_rows(two_days: SandboxServer) -> SandboxRows:
    return SandboxRows(two_days)


@pytest.fixture(scope="module")
def warehouse(
    two_days: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """A fresh DuckDB file, and the examples' settings in the environment.

    The settings point at the sandbox, for the whole module: its runs build
    on one another.
    """
    folder = tmp_path_factory.mktemp("warehouse")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in sync_variables(two_days, folder).items():
            patch.setenv(name, value)
        yield Warehouse(folder / "warehouse.duckdb", folder / "dlt")


def _within(column: pa.ChunkedArray, day: date) -> pa.ChunkedArray:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return pc.and_(
        pc.greater_equal(column, pa.scalar(start, TS)),
        pc.less(column, pa.scalar(end, TS)),
    )


def _multiset(rows: pa.Table, table: str) -> Counter[Any]:
    columns = COLUMNS[table]
    return Counter(
        tuple(row[name] for name in columns) for row in rows.select(columns).to_pylist()
    )
