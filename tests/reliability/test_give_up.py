"""When retries give up: a clear error, the watermark unmoved, the next run completes.

A first run commits one chunk. Then the sandbox fails every query for longer
than the retries last: the run stops with the connector's retryable error, the
state's watermark is the one the committed chunk left, and the destination
holds that chunk's rows and nothing else. With the faults gone, the next run
loads the rest, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from connector import cli
from connector.errors import RetryableError, TransientError
from connector.sync import read_status, run_sync
from reliability.compare import compare, expected_rows, read_table
from reliability.faultmatrix import NOW, SETTLE, fault_sandbox
from reliability.retries import short_retry_waits
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

ATTEMPTS = 3


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with fault_sandbox(records=1_500, metrics=300) as running:
        yield running


@pytest.fixture(autouse=True)
def quick_retries() -> Iterator[None]:
    with short_retry_waits():
        yield


def options(server: SandboxServer) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "tables": ["records"],
        "start": (NOW - timedelta(hours=7)).isoformat(),
        "chunk": "3h",
        "max_attempts": ATTEMPTS,
    }


def pipeline_in(folder: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="give_up",
        destination=dlt.destinations.duckdb(str(folder / "give_up.duckdb")),
        pipelines_dir=str(folder / "pipelines"),
        dataset_name="logfire",
    )


def watermark(pipeline: dlt.Pipeline) -> datetime | None:
    [status] = read_status(pipeline)
    return status.watermark


def rows_before(server: SandboxServer, moment: datetime) -> Any:
    stored = server.store.visible("records", server.clock.now())
    return expected_rows(stored, created_before=moment)


@pytest.mark.parametrize(
    ("kind", "error", "says"),
    [
        ("503", TransientError, "HTTP 503"),
        ("429", RetryableError, "HTTP 429"),
        ("drop_before", TransientError, "Retry"),
    ],
)
def test_a_run_that_gives_up_moves_nothing_and_the_next_completes(
    server: SandboxServer,
    tmp_path: Path,
    kind: str,
    error: type[RetryableError],
    says: str,
) -> None:
    pipeline = pipeline_in(tmp_path)
    run_sync(pipeline, max_chunks=1, **options(server))
    before = watermark(pipeline)
    assert before is not None
    assert before < NOW - SETTLE

    server.faults = FaultPlan(retry_after=0)
    server.faults.force(kind, 50)
    try:
        with pytest.raises(error) as failure:
            run_sync(pipeline, **options(server))
    finally:
        server.faults = FaultPlan.none()

    assert says in str(failure.value)
    assert f"Gave up after {ATTEMPTS} attempts" in " ".join(failure.value.__notes__)
    assert watermark(pipeline) == before
    loaded = read_table(tmp_path / "give_up.duckdb", "records")
    compare("records", loaded, rows_before(server, before)).check()

    report = run_sync(pipeline, **options(server))
    assert report.caught_up
    everything = rows_before(server, NOW - SETTLE)
    loaded = read_table(tmp_path / "give_up.duckdb", "records")
    compare("records", loaded, everything).check()


def test_streams_cut_cleanly_again_and_again_are_read_on_to_the_end(
    server: SandboxServer, tmp_path: Path
) -> None:
    pipeline = pipeline_in(tmp_path)
    run_sync(pipeline, max_chunks=1, **options(server))

    # Each cut page is confirmed by a count that disagrees and read again from
    # its last key, so every attempt gains the rows before the cut.
    server.faults = FaultPlan(retry_after=0)
    server.faults.force("truncate", 50)
    try:
        report = run_sync(pipeline, **options(server))
    finally:
        server.faults = FaultPlan.none()

    assert report.caught_up
    assert server.counters.snapshot()["faults"]["truncate"] > 10
    loaded = read_table(tmp_path / "give_up.duckdb", "records")
    compare("records", loaded, rows_before(server, NOW - SETTLE)).check()


def test_the_command_line_exits_with_5_and_says_nothing_moved(
    server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(cli.TOKEN_VARIABLE, server.token)
    monkeypatch.setenv("SOURCES__LOGFIRE__MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("SOURCES__LOGFIRE__CHUNK", "3h")
    arguments = [
        "run",
        "--base-url",
        server.url,
        "--state-dir",
        str(tmp_path),
        "--pipeline",
        "give_up_cli",
        "--tables",
        "records",
        "--start",
        (NOW - timedelta(hours=7)).isoformat(),
    ]
    server.faults.force("503", 50)
    try:
        code = cli.main(arguments)
    finally:
        server.faults = FaultPlan.none()

    said = capsys.readouterr().err
    assert code == cli.EXIT_RETRY_LATER
    assert "HTTP 503" in said
    assert f"logfire-sync: Gave up after {ATTEMPTS} attempts in " in said
    assert "Nothing past the last committed chunk moved." in said
    assert cli.main(arguments) == cli.EXIT_OK
