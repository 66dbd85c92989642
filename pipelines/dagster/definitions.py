"""Dagster definitions: Logfire's tables as dlt assets, loaded hourly and by day.

Load them with ``dagster dev -m pipelines.dagster.definitions`` (or ``-f
pipelines/dagster/definitions.py``) from the repository's root; the settings
come from the environment, see :mod:`connector.orchestration`.

Two sets of assets, both built with dagster-dlt, load the same tables:

- ``logfire/records`` and ``logfire/metrics`` read new rows by `created_at`.
  The ``logfire_hourly`` schedule materializes them through the
  ``logfire_incremental`` job; the watermark lives in the destination.
- ``logfire/backfill/records`` and ``logfire/backfill/metrics`` have daily
  partitions. Each partition re-reads one day of event time, ``[day, day +
  1)``, as a pipeline of its own, and merges with what the incremental loads
  wrote without duplicates. Each partition runs as a Dagster run of its own,
  so a backfill of many days spreads over the workers.

dagster-dlt runs a source with one ``pipeline.run``, and the connector reads
at most one chunk (a day of `created_at`, by default) per run, so the
incremental assets read one chunk per materialization rather than looping
like ``connector.sync.run_sync``. An hourly schedule stays caught up that way
unless the sync falls more than a day behind; the materialization's
``caught_up`` metadata says so, and each further run reads another day. A
partition is always one chunk: its chunk is set to the window's length.

Every asset runs in the ``logfire`` pool, so ``dagster instance concurrency
set logfire 4`` caps how many query Logfire at once.
"""

# No `from __future__ import annotations` here: Dagster reads the asset
# functions' annotations at definition time and refuses them as strings.

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.dlt_event_iterator import DltEventType
from dagster_dlt.translator import DltResourceTranslatorData
from dlt import Pipeline
from dlt.extract import DltSource

from connector import TableSynced, WindowLoaded
from connector.orchestration import SyncSettings, drop_staging

__all__ = ["POOL", "build_definitions", "defs"]

POOL = "logfire"
"""The concurrency pool of every asset that queries Logfire."""

_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


@dataclass
class LogfireTranslator(DagsterDltTranslator):
    """Asset keys under `prefix`, named after the resource (the table)."""

    prefix: tuple[str, ...] = ("logfire",)
    description: str = ""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = super().get_asset_spec(data)
        table = data.resource.name
        return spec.replace_attributes(
            key=AssetKey([*self.prefix, table]),
            deps=[],
            group_name="logfire",
            description=self.description.format(table=table),
        )


@dataclass
class _Outcome:
    """The source's report of each table, added to the asset's metadata."""

    tables: dict[str, TableSynced] = field(default_factory=dict)

    def __call__(self, event: WindowLoaded | TableSynced) -> None:
        if isinstance(event, TableSynced):
            self.tables[event.table] = event

    def annotate(
        self, context: AssetExecutionContext, results: Iterable[DltEventType]
    ) -> Iterator[DltEventType]:
        """The results, with each table's watermark and whether it caught up."""
        for result in results:
            event = self._event(result)
            if event is None or not isinstance(result, MaterializeResult):
                yield result
                continue
            if not event.caught_up:
                context.log.warning(
                    "%s is not caught up: the next run reads on from %s.",
                    event.table,
                    _iso(event.watermark),
                )
            metadata = {**(result.metadata or {}), **_metadata(event)}
            yield MaterializeResult(asset_key=result.asset_key, metadata=metadata)

    def _event(self, result: DltEventType) -> TableSynced | None:
        key = result.asset_key
        return None if key is None else self.tables.get(key.path[-1])


def build_definitions(settings: SyncSettings) -> Definitions:
    """The assets, jobs and schedule for `settings`."""
    pipeline = settings.incremental_pipeline()
    incremental = _incremental_assets(settings, pipeline)
    backfill = _backfill_assets(settings, pipeline)

    incremental_job = define_asset_job(
        "logfire_incremental", selection=AssetSelection.assets(incremental)
    )
    backfill_job = define_asset_job(
        "logfire_backfill", selection=AssetSelection.assets(backfill)
    )

    @schedule(
        name="logfire_hourly",
        cron_schedule="@hourly",
        job=incremental_job,
        execution_timezone="UTC",
    )
    def hourly(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        # Two incremental runs at once would read the same windows twice.
        runs = context.instance.get_runs(
            RunsFilter(job_name="logfire_incremental", statuses=_ACTIVE), limit=1
        )
        if runs:
            return SkipReason(f"The incremental run {runs[0].run_id} is still going.")
        return RunRequest()

    return Definitions(
        assets=[incremental, backfill],
        jobs=[incremental_job, backfill_job],
        schedules=[hourly],
        resources={"dlt": DagsterDltResource()},
    )


def _incremental_assets(settings: SyncSettings, pipeline: Pipeline) -> AssetsDefinition:
    """The assets that load new rows, one chunk per materialization."""

    @dlt_assets(
        dlt_source=_naming_source(settings),
        dlt_pipeline=pipeline,
        name="logfire_tables",
        dagster_dlt_translator=LogfireTranslator(
            description="Logfire's {table}, loaded incrementally by created_at."
        ),
        pool=POOL,
    )
    def incremental(
        context: AssetExecutionContext, dlt: DagsterDltResource
    ) -> Iterator[DltEventType]:
        outcome = _Outcome()
        source = settings.source(progress=outcome)
        results = dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline)
        yield from outcome.annotate(context, results)

    return incremental


def _backfill_assets(settings: SyncSettings, pipeline: Pipeline) -> AssetsDefinition:
    """The assets whose daily partitions re-read a day of event time each.

    `pipeline`, the incremental one, only tells dagster-dlt the destination:
    each partition runs a pipeline of its own.
    """
    partitions = DailyPartitionsDefinition(
        start_date=settings.backfill_start.isoformat(), timezone="UTC"
    )

    @dlt_assets(
        dlt_source=_naming_source(settings),
        dlt_pipeline=pipeline,
        name="logfire_backfill_tables",
        dagster_dlt_translator=LogfireTranslator(
            prefix=("logfire", "backfill"),
            description=(
                "One day of Logfire's {table} by event time, merged into the "
                "same table as the incremental loads."
            ),
        ),
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=1),
        pool=POOL,
    )
    def backfill(
        context: AssetExecutionContext, dlt: DagsterDltResource
    ) -> Iterator[DltEventType]:
        window = context.partition_time_window
        own = settings.partition_pipeline(window.start, window.end)
        outcome = _Outcome()
        source = settings.source(
            backfill=(window.start, window.end),
            chunk=window.end - window.start,
            progress=outcome,
        )
        run = dlt.run(context=context, dlt_source=source, dlt_pipeline=own)
        results = list(outcome.annotate(context, run))
        drop_staging(own)
        yield from results

    return backfill


def _naming_source(settings: SyncSettings) -> DltSource:
    """A source that only names the assets; each run builds the real one.

    dlt_assets needs a source when the definitions load, which may be before
    any read token is configured, so this one has a stand-in token.
    """
    return settings.source(read_token="unused: the runs build their own source")


def _metadata(event: TableSynced) -> dict[str, str | int | bool]:
    """What the source reported about a table, as asset metadata."""
    if event.backfill:
        return {"finished": event.caught_up, "logfire_requests": event.requests}
    return {
        "caught_up": event.caught_up,
        "watermark": _iso(event.watermark),
        "logfire_requests": event.requests,
    }


def _iso(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat()


defs = build_definitions(SyncSettings.from_env())
