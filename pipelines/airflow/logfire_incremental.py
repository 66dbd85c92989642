"""Airflow DAG ``logfire_incremental``: Logfire's new rows, every hour.

It is built with dlt's Airflow helper, ``PipelineTasksGroup``, which works
with Airflow 3.3: each run gets a fresh dlt working folder that is wiped
afterwards, and the pipeline restores its state (the watermarks) from the
destination first. A worker can therefore be thrown away after every run.

The helper runs its source with a single ``pipeline.run``, and the connector
reads at most one chunk (a day of `created_at`, by default) per run; so each
DAG run reads one chunk instead of looping like ``connector.sync.run_sync``.
Hourly runs stay caught up unless the sync falls more than a day behind;
then each run reads another day until it has caught up.

``max_active_runs=1`` keeps two runs from reading the same windows at once.
The settings come from the environment, see ``logfire_settings``. Two costs of
the helper: it builds the pipeline when the file is parsed, leaving a small
empty working folder under the temporary folder at every parse; and it sets
dlt's folder variables (``DLT_DATA_DIR`` and others) for the parsing process.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG
from dlt.helpers.airflow_helper import PipelineTasksGroup
from logfire_settings import AirflowSettings

settings = AirflowSettings.from_env()

with DAG(
    dag_id="logfire_incremental",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["logfire"],
    doc_md=__doc__,
):
    # The pipeline must be built after the group, which chooses its folder.
    tasks = PipelineTasksGroup("incremental", wipe_local_data=True)
    tasks.add_run(
        settings.incremental_pipeline(),
        settings.source,
        decompose="none",
        pool=settings.pool,
    )
