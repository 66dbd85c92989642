"""A destination that lost rows the pipeline's folder has moved past."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from synchelp import NOW, destination, expected_rows, make_records, sandbox

from connector.errors import ConfigurationError
from connector.sync import run_sync
from sandbox.server import SandboxServer

HOUR = timedelta(hours=1)
OLDEST = NOW - timedelta(hours=40)


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    # Rows from before the day back that a first sync without start begins at.
    records = make_records(300, seed=71, start=OLDEST, end=NOW + 6 * HOUR)
    with sandbox(records) as running:
        yield running


def _options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "tables": ["records"],
        **extra,
    }


def _visible(server: SandboxServer) -> int:
    stored = server.store.visible("records", server.clock.now())
    horizon = server.clock.now() - timedelta(minutes=5)
    return int(expected_rows(stored, horizon).num_rows)


def test_a_first_load_that_failed_before_the_dataset_existed_is_loaded_later(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt's first step, finding no dataset, wiped the folder and its package.
    def refuse(self: DuckDbClient, truncate_tables: Any = None) -> None:
        raise PermissionError("the database cannot be written")

    dest = destination(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(DuckDbClient, "initialize_storage", refuse)
        with pytest.raises(Exception, match="cannot be written"):
            run_sync(dest.pipeline, **_options(server, start=OLDEST.isoformat()))
    assert dest.pipeline.has_pending_data
    assert not dest.has_table("records")

    # The next run, in a process of its own.
    report = run_sync(_same_pipeline(dest.pipeline), **_options(server))

    assert report.caught_up
    assert dest.count("records") == _visible(server)


def test_a_destination_restored_from_an_older_copy_is_refused_until_told(
    server: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **_options(server, start=OLDEST.isoformat()))
    copy = tmp_path / "copy.duckdb"
    shutil.copy(dest.path, copy)
    server.clock.advance(3 * HOUR)
    run_sync(dest.pipeline, **_options(server))
    shutil.copy(copy, dest.path)

    with pytest.raises(ConfigurationError, match="older state") as refused:
        run_sync(dest.pipeline, **_options(server))
    assert dest.pipeline.working_dir in str(refused.value)
    server.clock.advance(HOUR)
    with pytest.raises(ConfigurationError, match="older state"):
        run_sync(dest.pipeline, **_options(server))

    shutil.rmtree(dest.pipeline.working_dir)
    report = run_sync(_same_pipeline(dest.pipeline), **_options(server))

    assert report.rows > 0
    assert dest.count("records") == _visible(server)


@pytest.mark.parametrize("replaced", [False, True])
def test_a_deleted_destination_is_refused_rather_than_started_a_day_back(
    server: SandboxServer, tmp_path: Path, replaced: bool
) -> None:
    dest = destination(tmp_path)
    run_sync(dest.pipeline, **_options(server, start=OLDEST.isoformat()))
    dest.path.unlink()
    if replaced:
        dlt.pipeline(
            pipeline_name="other",
            destination=dlt.destinations.duckdb(str(dest.path)),
            pipelines_dir=str(tmp_path / "others"),
            dataset_name="other",
        ).run([{"a": 1}], table_name="unrelated")
    server.clock.advance(HOUR)

    with pytest.raises(ConfigurationError, match="deleted or replaced") as refused:
        run_sync(dest.pipeline, **_options(server))
    assert "--start" in str(refused.value)

    shutil.rmtree(dest.pipeline.working_dir)
    again = _same_pipeline(dest.pipeline)
    run_sync(again, **_options(server, start=OLDEST.isoformat()))
    assert dest.count("records") == _visible(server)


def _same_pipeline(pipeline: dlt.Pipeline) -> dlt.Pipeline:
    """A new pipeline object of the same name, folder and destination."""
    return dlt.pipeline(
        pipeline_name=pipeline.pipeline_name,
        destination=pipeline.destination,
        pipelines_dir=pipeline.pipelines_dir,
        dataset_name=pipeline.dataset_name,
    )
