"""The Airflow DAGs, run with ``dag.test()`` against the sandbox.

Airflow reads its home and metadata database when it is first imported, so
the module sets up a fresh ``AIRFLOW_HOME`` (a SQLite database, migrated
here) before importing it, with the DAG folder at ``pipelines/airflow``. The
DAGs load through a ``BundleDagBag``, the way Airflow's DAG processor loads
them, which puts the DAG folder on ``sys.path`` for their shared module.

Two backfill runs and one incremental run load one DuckDB file, in the order
backfill, incremental, backfill.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

pytestmark = [
    # Not importorskip: importing Airflow before its home is set fixes the home.
    pytest.mark.skipif(
        importlib.util.find_spec("airflow") is None,
        reason="Airflow is an optional extra: uv sync --extra airflow",
    ),
    # The in-process task runner imports Starlette's test client.
    pytest.mark.filterwarnings(
        "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    ),
    # dlt's Airflow secrets provider reads Airflow variables the Airflow 2 way.
    pytest.mark.filterwarnings(
        "ignore:Using Variable.get from `airflow.models` is deprecated"
    ),
]

DAGS = Path(__file__).parents[2] / "pipelines" / "airflow"
TABLES = ("records", "metrics")
# dlt's Airflow helper sets these for the process when a DAG file is parsed.
DLT_FOLDERS = ("DLT_DATA_DIR", "DLT_PROJECT_DIR", "DLT_LOCAL_DIR")


@dataclass
class Loads:
    """The DAG runs, and the destination's rows after each."""

    first: DagRun
    incremental: DagRun
    second: DagRun
    rows: dict[str, dict[str, Counter[Any]]]


@pytest.fixture(scope="module")
def airflow_home(
    warehouse: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A fresh Airflow home with a migrated metadata database."""
    assert "airflow" not in sys.modules, (
        "Airflow was imported before these tests set AIRFLOW_HOME, so it uses "
        "another home; import it only inside fixtures."
    )
    home = tmp_path_factory.mktemp("airflow")
    (home / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_HOME", str(home))
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        for name in DLT_FOLDERS:
            # Recorded, so that leaving undoes what the helper sets.
            value = os.environ.get(name)
            patch.setenv(name, value or "unset")
            if value is None:
                patch.delenv(name)
        # The helper's working folders go under the temporary folder.
        patch.setattr(tempfile, "tempdir", str(home / "tmp"))

        from airflow.utils import db

        db.upgradedb()
        yield home
    _reload_dlt_config()


@pytest.fixture(scope="module")
def dags(airflow_home: Path) -> dict[str, DAG]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(
        dag_folder=str(DAGS), bundle_path=str(DAGS), bundle_name="dags-folder"
    )
    assert not bag.import_errors
    # A failing task fails its run at once, instead of waiting for a retry.
    for dag in bag.dags.values():
        for task in dag.tasks:
            task.retries = 0
    return dict(bag.dags)


@pytest.fixture(scope="module")
def loads(dags: dict[str, DAG], warehouse: Any) -> Loads:
    backfill, incremental = dags["logfire_backfill"], dags["logfire_incremental"]
    rows: dict[str, dict[str, Counter[Any]]] = {}

    def snapshot(step: str) -> None:
        rows[step] = {table: warehouse.loaded(table) for table in TABLES}

    first = backfill.test(logical_date=after("2026-05-01"))
    snapshot("first")
    run = incremental.test()
    snapshot("incremental")
    second = backfill.test(logical_date=after("2026-05-02"))
    snapshot("second")
    return Loads(first, run, second, rows)


def after(day: str) -> datetime:
    """The logical date of a manual run whose data interval is `day`.

    A manual run's interval is the last whole day before its logical date.
    """
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)


def returned(run: DagRun) -> dict[str, Any]:
    """What the backfill task of a run returned."""
    instance = run.get_task_instance("backfill_window")
    assert instance is not None
    value: dict[str, Any] = instance.xcom_pull(task_ids="backfill_window")
    return value


def test_both_dags_load_without_import_errors(dags: dict[str, DAG]) -> None:
    assert set(dags) == {"logfire_incremental", "logfire_backfill"}
    # The incremental DAG runs through dlt's PipelineTasksGroup.
    assert [task.task_id for task in dags["logfire_incremental"].tasks] == [
        "incremental.logfire_sync"
    ]
    assert dags["logfire_incremental"].max_active_runs == 1


def test_every_run_succeeds(loads: Loads) -> None:
    for run in (loads.first, loads.incremental, loads.second):
        assert run.state == "success"


def test_a_backfill_run_reads_its_data_interval(loads: Loads) -> None:
    assert loads.first.data_interval_start == datetime(2026, 5, 1, tzinfo=UTC)
    assert loads.first.data_interval_end == datetime(2026, 5, 2, tzinfo=UTC)
    value = returned(loads.first)
    assert value["window"] == [
        "2026-05-01T00:00:00+00:00",
        "2026-05-02T00:00:00+00:00",
    ]
    assert value["finished"] is True


def test_a_backfill_run_loads_exactly_the_rows_of_its_day(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        expected = sandbox_rows.due(table, days=[sandbox_rows.days[0]])
        assert loads.rows["first"][table] == expected
        assert expected


def test_the_incremental_run_after_a_backfill_loads_every_row_once(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        assert loads.rows["incremental"][table] == sandbox_rows.due(table)


def test_a_backfill_after_the_incremental_run_adds_no_duplicates(
    loads: Loads, sandbox_rows: Any
) -> None:
    for table in TABLES:
        assert loads.rows["second"][table] == sandbox_rows.due(table)
    second_day = sum(
        sandbox_rows.due(table, days=[sandbox_rows.days[1]]).total() for table in TABLES
    )
    assert returned(loads.second)["rows"] == second_day


def test_each_backfill_run_loads_as_a_pipeline_of_its_own(
    loads: Loads, warehouse: Any
) -> None:
    assert returned(loads.first)["pipeline"] == "logfire_sync_backfill_2026_05_01"
    assert returned(loads.second)["pipeline"] == "logfire_sync_backfill_2026_05_02"
    assert not {name for name in warehouse.schemas() if "backfill" in name}


def test_scheduled_runs_of_the_backfill_dag_read_nothing(
    dags: dict[str, DAG], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    task = dags["logfire_backfill"].get_task("backfill_window")
    function = task.python_callable
    scheduled = {"dag_run": SimpleNamespace(run_type="scheduled")}
    monkeypatch.setitem(function.__globals__, "get_current_context", lambda: scheduled)

    with pytest.raises(AirflowSkipException, match="Scheduled runs"):
        function()


def _reload_dlt_config() -> None:
    """Let dlt find its configuration where it did before the helper moved it."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import (
        PluggableRunContext,
    )

    if PluggableRunContext in Container():
        Container()[PluggableRunContext].reload_providers()
