"""Airflow DAG ``logfire_backfill``: one day of event time per run, re-read.

Each run's data interval is the backfill window: ``[data_interval_start,
data_interval_end)`` of `start_timestamp` (metrics: `recorded_timestamp`),
read with ``connector.sync.run_backfill`` by a pipeline of its own, named
after the day (``logfire_sync_backfill_2026_05_01``) and with a staging
dataset of its own. Windows merge with the incremental loads without duplicates. A
backfill of many days spreads over the workers::

    airflow backfill create --dag-id logfire_backfill \\
        --from-date 2026-05-01 --to-date 2026-05-31 --max-active-runs 4

Backfills need a periodic schedule, so the DAG has a daily one; its scheduled
runs skip, and only backfill and manual runs read. A window's progress is
kept in its pipeline's state: an interrupted run resumes where it stopped,
and clearing a finished run reads its day again.

dlt's ``PipelineTasksGroup`` does not fit here: it binds the task to one
pipeline built when the file is parsed, while each window needs a pipeline
named after its data interval, known only when the task runs; and it runs one
``pipeline.run``, where ``run_backfill`` runs chunks until the window is done.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Context,
    CronDataIntervalTimetable,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException
from logfire_settings import AirflowSettings, drop_staging

from connector.sync import run_backfill

logger = logging.getLogger(__name__)

settings = AirflowSettings.from_env()
first_day = settings.backfill_start


@task(pool=settings.pool)
def backfill_window() -> dict[str, Any]:
    """Re-read the run's data interval; what was loaded, for the XCom."""
    start, end = _window(get_current_context())
    pipeline = settings.partition_pipeline(start, end)
    report = run_backfill(pipeline, start, end, **settings.source_options())
    drop_staging(pipeline)

    logger.info(
        "%s loaded %s rows of [%s, %s) in %s chunks.",
        pipeline.pipeline_name,
        report.rows,
        start.isoformat(),
        end.isoformat(),
        report.chunks,
    )
    return {
        "pipeline": pipeline.pipeline_name,
        "window": [start.isoformat(), end.isoformat()],
        "rows": report.rows,
        "requests": report.requests,
        "chunks": report.chunks,
        "finished": report.caught_up,
    }


def _window(context: Context) -> tuple[datetime, datetime]:
    """The run's data interval; scheduled runs skip."""
    if context["dag_run"].run_type == "scheduled":
        raise AirflowSkipException(
            "Scheduled runs of logfire_backfill read nothing; start a backfill "
            "or trigger a run with a logical date instead."
        )
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None or not start < end:
        raise AirflowSkipException(f"The data interval {start} to {end} is empty.")
    return start, end


with DAG(
    dag_id="logfire_backfill",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["logfire"],
    doc_md=__doc__,
):
    backfill_window()
