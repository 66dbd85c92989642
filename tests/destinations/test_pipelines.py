"""The example pipelines in pipelines/, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.connector.synchelp import NOW, make_metrics, make_records, sandbox
from tests.postgres_server import postgres_server

PIPELINES = Path(__file__).parents[2] / "pipelines"
RECORDS = make_records(1_000, seed=21, start=NOW - timedelta(hours=3), end=NOW)
METRICS = make_metrics(200, seed=22, start=NOW - timedelta(hours=3), end=NOW)
HORIZON = NOW - timedelta(minutes=5)


def _expected(table_name: str) -> int:
    table = RECORDS if table_name == "records" else METRICS
    return sum(1 for value in table["created_at"].to_pylist() if value < HORIZON)


def _run(script: str, env: dict[str, str], tmp_path: Path) -> str:
    with sandbox(RECORDS, METRICS) as server:
        environment = {
            **os.environ,
            "SOURCES__LOGFIRE__READ_TOKEN": server.token,
            "SOURCES__LOGFIRE__BASE_URL": server.url,
            "SOURCES__LOGFIRE__START": (NOW - timedelta(hours=4)).isoformat(),
            "DLT_DATA_DIR": str(tmp_path / "dlt"),
            "PYTHONPATH": str(PIPELINES.parent),
            **env,
        }
        done = subprocess.run(
            [sys.executable, script],
            cwd=PIPELINES,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_duckdb_pipeline_loads_every_settled_row(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(database)}

    _run("duckdb_pipeline.py", env, tmp_path)

    with duckdb.connect(str(database), read_only=True) as connection:
        for name in ("records", "metrics"):
            rows = connection.execute(f"SELECT count(*) FROM logfire.{name}")
            assert rows.fetchall()[0][0] == _expected(name)


def test_the_parquet_pipeline_writes_every_settled_row_once(tmp_path: Path) -> None:
    files = tmp_path / "files"
    env = {"DESTINATION__FILESYSTEM__BUCKET_URL": files.as_uri()}

    _run("parquet_pipeline.py", env, tmp_path)

    for name in ("records", "metrics"):
        parts = sorted((files / "logfire" / name).glob("*.parquet"))
        assert parts, f"no Parquet files for {name}"
        assert sum(pq.read_metadata(p).num_rows for p in parts) == _expected(name)


def test_the_example_pipelines_run_side_by_side(tmp_path: Path) -> None:
    # One dlt data folder, as on a machine that runs more than one example.
    database = tmp_path / "warehouse.duckdb"
    files = tmp_path / "files"
    env = {
        "DESTINATION__DUCKDB__CREDENTIALS": str(database),
        "DESTINATION__FILESYSTEM__BUCKET_URL": files.as_uri(),
    }

    _run("duckdb_pipeline.py", env, tmp_path)
    _run("parquet_pipeline.py", env, tmp_path)

    parts = sorted((files / "logfire" / "records").glob("*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == _expected("records")


@pytest.fixture(scope="module")
def postgres_url() -> object:
    with postgres_server() as url:
        yield url


def test_the_postgres_pipeline_loads_a_chunk_per_run(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg2

    env = {"DESTINATION__POSTGRES__CREDENTIALS": postgres_url}

    _run("postgres_pipeline.py", env, tmp_path)

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        for name in ("records", "metrics"):
            cursor.execute(f"SELECT count(*) FROM logfire.{name}")
            assert cursor.fetchone() == (_expected(name),)
