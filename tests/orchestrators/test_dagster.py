"""The Dagster definitions, materialized in-process against the sandbox.

Two daily partitions and one incremental run load one DuckDB file, in the
order partition, incremental, partition, so each load merges over rows another
kind of load wrote.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions, ExecuteInProcessResult


pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("dagster_dlt") is None,
        reason="Dagster is an optional extra: uv sync --extra dagster",
    ),
    # Dagster's resources read pydantic's deprecated `__fields__`.
    pytest.mark.filterwarnings(
        "ignore:The `__fields__` attribute is deprecated:DeprecationWarning"
    ),
]

TABLES = ("records", "metrics")


@dataclass
class Loads:
    """What each run did, and the destination's rows after it."""

    first: ExecuteInProcessResult
    incremental: ExecuteInProcessResult
    second: ExecuteInProcessResult
    rows: dict[str, dict[str, Counter[Any]]]


@pytest.fixture(scope="module")
def definitions(warehouse: Any) -> Definitions:
    from connector.orchestration import SyncSettings
    from pipelines.dagster.definitions import build_definitions

    return build_definitions(SyncSettings.from_env())


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    from dagster import instance_for_test

    # A real (temporary) instance: schedules look their runs up through it.
    with instance_for_test() as temporary:
        yield temporary


@pytest.fixture(scope="module")
def loads(definitions: Definitions, instance: DagsterInstance, warehouse: Any) -> Loads:
    backfill = definitions.resolve_job_def("logfire_backfill")
    incremental = definitions.resolve_job_def("logfire_incremental")
    rows: dict[str, dict[str, Counter[Any]]] = {}

    def snapshot(step: str) -> None:
        rows[step] = {table: warehouse.loaded(table) for table in TABLES}

    first = backfill.execute_in_process(partition_key="2026-05-01", instance=instance)
    snapshot("first")
    run = incremental.execute_in_process(instance=instance)
    snapshot("incremental")
    second = backfill.execute_in_process(partition_key="2026-05-02", instance=instance)
    snapshot("second")
    return Loads(first, run, second, rows)


def metadata(result: ExecuteInProcessResult, table: str) -> dict[str, Any]:
    """The metadata of the materialization of `table` in a run."""
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key.path[-1] == table:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"The run materialized no {table}.")


def materialized(result: ExecuteInProcessResult) -> set[str]:
    return {
        event.materialization.asset_key.to_user_string()
        for event in result.get_asset_materialization_events()
    }


def test_every_run_succeeds_and_materializes_both_tables(loads: Loads) -> None:
    assert loads.first.success
    assert loads.incremental.success
    assert loads.second.success
    assert materialized(loads.incremental) == {"logfire/records", "logfire/metrics"}
    for partition in (loads.first, loads.second):
        assert materialized(partition) == {
            "logfire/backfill/records",
            "logfire/backfill/metrics",
        }


def test_a_partition_loads_exactly_the_rows_of_its_day(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        expected = sandbox_rows.due(table, days=[sandbox_rows.days[0]])
        assert loads.rows["first"][table] == expected
        assert expected


def test_the_incremental_run_after_a_partition_loads_every_row_once(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        assert loads.rows["incremental"][table] == sandbox_rows.due(table)


def test_a_partition_after_the_incremental_run_adds_no_duplicates(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        assert loads.rows["second"][table] == sandbox_rows.due(table)
    second_day = sandbox_rows.due("records", days=[sandbox_rows.days[1]])
    assert metadata(loads.second, "records")["rows_loaded"] == second_day.total()


def test_the_incremental_run_reports_that_it_caught_up(loads: Loads) -> None:
    for table in TABLES:
        reported = metadata(loads.incremental, table)
        assert reported["caught_up"] is True
        assert reported["watermark"] == "2026-05-03T11:55:00+00:00"
        assert reported["logfire_requests"] > 0


def test_each_partition_loads_as_a_pipeline_of_its_own(
    loads: Loads, warehouse: Any
) -> None:
    assert {
        "logfire_sync",
        "logfire_sync_backfill_2026_05_01",
        "logfire_sync_backfill_2026_05_02",
    } <= warehouse.pipelines()
    # Each partition's staging dataset is dropped once its rows are merged.
    assert "logfire" in warehouse.schemas()
    assert not {name for name in warehouse.schemas() if "backfill" in name}


def test_materializing_a_partition_again_reads_its_day_again(
    loads: Loads, definitions: Definitions, instance: DagsterInstance, warehouse: Any
) -> None:
    backfill = definitions.resolve_job_def("logfire_backfill")
    again = backfill.execute_in_process(partition_key="2026-05-01", instance=instance)

    assert again.success
    first = metadata(loads.first, "records")["rows_loaded"]
    assert metadata(again, "records")["rows_loaded"] == first
    assert warehouse.loaded("records") == loads.rows["second"]["records"]


def test_the_schedule_requests_an_incremental_run_every_hour(
    definitions: Definitions, instance: DagsterInstance
) -> None:
    from dagster import build_schedule_context

    schedule = definitions.resolve_schedule_def("logfire_hourly")
    assert schedule.cron_schedule == "@hourly"
    assert schedule.job_name == "logfire_incremental"

    ticked = schedule.evaluate_tick(build_schedule_context(instance=instance))
    assert ticked.run_requests is not None
    assert len(ticked.run_requests) == 1


def test_the_schedule_skips_while_an_incremental_run_is_going(
    definitions: Definitions, instance: DagsterInstance
) -> None:
    from dagster import DagsterRunStatus, build_schedule_context

    job = definitions.resolve_job_def("logfire_incremental")
    instance.create_run_for_job(job, status=DagsterRunStatus.STARTED)
    schedule = definitions.resolve_schedule_def("logfire_hourly")

    ticked = schedule.evaluate_tick(build_schedule_context(instance=instance))
    assert not ticked.run_requests
    assert ticked.skip_message is not None
    assert "still going" in ticked.skip_message


def test_backfills_run_one_partition_per_run(definitions: Definitions) -> None:
    from dagster import AssetKey, BackfillPolicy, DailyPartitionsDefinition

    assets = definitions.resolve_assets_def(
        AssetKey(["logfire", "backfill", "records"])
    )
    partitions = assets.partitions_def
    assert isinstance(partitions, DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == "2026-04-01"
    assert assets.backfill_policy == BackfillPolicy.multi_run(1)


def test_the_module_defines_the_same_assets(warehouse: Any) -> None:
    from dagster import Definitions

    from pipelines.dagster import definitions

    Definitions.validate_loadable(definitions.defs)
    keys = {
        key.to_user_string()
        for assets in definitions.defs.assets or []
        for key in getattr(assets, "keys", [])
    }
    assert keys == {
        "logfire/records",
        "logfire/metrics",
        "logfire/backfill/records",
        "logfire/backfill/metrics",
    }
