"""Shared helpers of the source and sync tests: hand-made rows and comparisons."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.clock import Clock
from sandbox.server import SandboxServer
from sandbox.store import Store

TS = pa.timestamp("us", tz="UTC")
NOW = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
SERVICES = ("api", "worker", "web")
ENVIRONMENTS = ("prod", "staging", None)


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def make_records(
    n: int,
    *,
    seed: int,
    start: datetime,
    end: datetime,
    late_fraction: float = 0.1,
    visible_delay: timedelta = timedelta(0),
) -> pa.Table:
    """`n` records stored between `start` and `end`, some of them late spans."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    rows: dict[str, list[Any]] = {name: [] for name in _RECORD_COLUMNS}
    for i in range(n):
        created = start + timedelta(seconds=rng.random() * span)
        created = created.replace(microsecond=created.microsecond // 1000 * 1000)
        if rng.random() < late_fraction:
            begin = created - timedelta(hours=rng.uniform(1, 23.5))
        else:
            begin = created - timedelta(seconds=rng.uniform(0, 5))
        kind = rng.choice(("span", "log", "span_event"))
        _append_record(rows, rng, i, created, begin, kind)
    table = pa.table(rows, schema=_RECORD_SCHEMA)
    visible = pc.add(table["created_at"], pa.scalar(visible_delay, pa.duration("us")))
    return table.append_column("_visible_at", visible.cast(TS))


def _append_record(
    rows: dict[str, list[Any]],
    rng: random.Random,
    i: int,
    created: datetime,
    begin: datetime,
    kind: str,
) -> None:
    duration = 0.0 if kind != "span" else rng.uniform(0, 3)
    rows["start_timestamp"].append(begin)
    rows["end_timestamp"].append(begin + timedelta(seconds=duration))
    rows["created_at"].append(created)
    rows["day"].append(begin.date())
    rows["trace_id"].append(_hex(rng, 32))
    rows["span_id"].append(_hex(rng, 16))
    rows["kind"].append(kind)
    rows["span_name"].append(rng.choice(("GET /", "query", "job {id}")))
    rows["message"].append(f"message {i}")
    rows["level"].append(rng.choice((1, 5, 9, 13, 17)))
    rows["duration"].append(duration if kind == "span" else None)
    rows["tags"].append(rng.choice((None, [], ["a"], ["x", 'q"uote'])))
    rows["attributes"].append(json.dumps({"i": i, "nested": {"k": [1, 2]}}))
    rows["service_name"].append(rng.choice(SERVICES))
    rows["deployment_environment"].append(rng.choice(ENVIRONMENTS))
    rows["project_id"].append("test")


_RECORD_SCHEMA = pa.schema(
    [
        ("start_timestamp", TS),
        ("end_timestamp", TS),
        ("created_at", TS),
        ("day", pa.date32()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("kind", pa.string()),
        ("span_name", pa.string()),
        ("message", pa.string()),
        ("level", pa.int32()),
        ("duration", pa.float64()),
        ("tags", pa.list_(pa.string())),
        ("attributes", pa.string()),
        ("service_name", pa.string()),
        ("deployment_environment", pa.string()),
        ("project_id", pa.string()),
    ]
)
_RECORD_COLUMNS = _RECORD_SCHEMA.names


def make_metrics(n: int, *, seed: int, start: datetime, end: datetime) -> pa.Table:
    """`n` metric points stored between `start` and `end`."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    created = [start + timedelta(seconds=rng.random() * span) for _ in range(n)]
    recorded = [c - timedelta(seconds=rng.uniform(0, 60)) for c in created]
    return pa.table(
        {
            "recorded_timestamp": pa.array(recorded, TS),
            "start_timestamp": pa.array(recorded, TS),
            "created_at": pa.array(created, TS),
            "day": pa.array([r.date() for r in recorded], pa.date32()),
            "metric_name": [rng.choice(("cpu", "mem", "reqs")) for _ in range(n)],
            "metric_type": ["histogram"] * n,
            "unit": ["1"] * n,
            "scalar_value": [rng.random() for _ in range(n)],
            "histogram_bucket_counts": pa.array(
                [[rng.randint(0, 9) for _ in range(3)] for _ in range(n)],
                pa.list_(pa.int64()),
            ),
            "histogram_explicit_bounds": pa.array(
                [[0.5, 1.0] for _ in range(n)], pa.list_(pa.float64())
            ),
            "attributes": [json.dumps({"host": rng.choice("ab")}) for _ in range(n)],
            "service_name": [rng.choice(SERVICES) for _ in range(n)],
            "project_id": ["test"] * n,
        }
    )


def empty_metrics() -> pa.Table:
    return make_metrics(0, seed=0, start=NOW, end=NOW)


@contextmanager
def sandbox(
    records: pa.Table,
    metrics: pa.Table | None = None,
    *,
    now: datetime = NOW,
    token: str = "sandbox-token",
    latency: float = 0.0,
) -> Iterator[SandboxServer]:
    """A sandbox serving the given rows, its clock stopped at `now`."""
    store = Store(records, metrics if metrics is not None else empty_metrics())
    clock = Clock(start=now, speed=1e-9)
    with SandboxServer(store, clock=clock, token=token, latency=latency) as server:
        yield server


@dataclass
class Destination:
    """A DuckDB pipeline in a temporary folder."""

    pipeline: dlt.Pipeline
    path: Path

    def table(self, name: str) -> pa.Table:
        with duckdb.connect(str(self.path), read_only=True) as connection:
            return connection.sql(f"SELECT * FROM logfire.{name}").arrow().read_all()

    def count(self, name: str) -> int:
        with duckdb.connect(str(self.path), read_only=True) as connection:
            rows = connection.execute(f"SELECT count(*) FROM logfire.{name}").fetchall()
        return int(rows[0][0])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.path), read_only=True) as connection:
            return connection.execute(sql).fetchall()

    def has_table(self, name: str) -> bool:
        with duckdb.connect(str(self.path), read_only=True) as connection:
            rows = connection.execute(
                "SELECT 1 FROM information_schema.tables "
                f"WHERE table_schema = 'logfire' AND table_name = '{name}'"
            ).fetchall()
        return bool(rows)


def destination(tmp_path: Path, name: str = "sync") -> Destination:
    path = tmp_path / f"{name}.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(path)),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="logfire",
    )
    return Destination(pipeline, path)


def expected_rows(store_table: pa.Table, horizon: datetime) -> pa.Table:
    """The stored rows a sync up to `horizon` must load."""
    mask = pc.less(store_table["created_at"], pa.scalar(horizon, TS))
    kept = store_table.filter(mask)
    if "_visible_at" in kept.column_names:
        kept = kept.drop_columns(["_visible_at"])
    return kept


def canonical(table: pa.Table, columns: list[str]) -> list[tuple[Any, ...]]:
    """The rows as sorted tuples of comparable values, JSON parsed."""
    out = []
    for row in table.select(columns).to_pylist():
        out.append(tuple(_normal(row[name]) for name in columns))
    return sorted(out, key=repr)


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value, parse_int=float), sort_keys=True)
        except ValueError:
            return value
    if isinstance(value, list):
        return _normal(json.dumps(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def assert_same_rows(loaded: pa.Table, expected: pa.Table) -> None:
    """`loaded` holds exactly the rows of `expected`, on every column of it."""
    columns = [name for name in expected.column_names if name in loaded.column_names]
    assert len(columns) == len(expected.column_names), sorted(
        set(expected.column_names) - set(columns)
    )
    assert loaded.num_rows == expected.num_rows
    assert canonical(loaded, columns) == canonical(expected, columns)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_logs(
    names: tuple[str, ...] = ("connector", "httpx", "dlt", "sandbox"),
) -> Iterator[list[str]]:
    """Every line these loggers write, at DEBUG.

    Handlers go on the named loggers rather than the root: importing Airflow
    (which dlt does when it is installed) replaces the root's handlers.
    """
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def files_pipeline(tmp_path: Path, name: str) -> tuple[dlt.Pipeline, Path]:
    """A pipeline into Parquet files under `tmp_path`, and their folder."""
    files = tmp_path / f"{name}-files"
    pipeline = dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.filesystem(bucket_url=files.as_uri()),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="logfire",
    )
    return pipeline, files
