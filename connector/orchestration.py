"""Running the sync as partitioned tasks of an orchestrator.

The Dagster and Airflow examples under ``pipelines/`` share what is here: where
the sync reads from and loads to, an incremental pipeline, and a pipeline of
its own for each backfill window.

=============================  ===============================================
``LOGFIRE_READ_TOKEN``         the read token [dlt's secrets:
                               ``SOURCES__LOGFIRE__READ_TOKEN`` and the rest]
``LOGFIRE_BASE_URL``           the service [the token's region]
``LOGFIRE_DESTINATION``        a dlt destination [duckdb]
``LOGFIRE_DATASET``            the dataset every pipeline loads [logfire]
``LOGFIRE_PIPELINE``           the incremental pipeline's name [logfire_sync,
                               as for ``logfire-sync run``]
``LOGFIRE_BACKFILL_START``     the first day a backfill covers [30 days ago]
=============================  ===============================================

The destination's credentials come from dlt's own configuration, such as
``DESTINATION__DUCKDB__CREDENTIALS``; without any, DuckDB writes
``state/logfire_sync.duckdb`` under the working folder. The other source
options come from dlt's configuration as well (``SOURCES__LOGFIRE__CHUNK``
and so on).

Each backfill window runs as a pipeline of its own, named after the
incremental one and the window (``logfire_sync_backfill_2026_05_01``), with a
staging dataset of its own (``logfire_staging_backfill_2026_05_01``): windows
loading at the same time on different workers share neither a working folder,
nor state, nor the staging tables a merge goes through. All of them load the
same dataset and tables as the incremental pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import (
    SqlClientNotAvailable,
    UnknownDestinationModule,
)
from dlt.extract import DltSource

from connector.errors import ConfigurationError
from connector.pipeline import DEFAULT_STATE_DIR, PipelineOptions, _duckdb_configured
from connector.settings import unreadable_config
from connector.source import logfire_source

__all__ = ["DEFAULT_DUCKDB", "SyncSettings", "drop_staging", "partition_suffix"]

logger = logging.getLogger(__name__)

DEFAULT_DUCKDB: Final = DEFAULT_STATE_DIR / "logfire_sync.duckdb"
"""The DuckDB file every pipeline loads when dlt's configuration names none."""

_RETENTION: Final = timedelta(days=30)
_CLI_DEFAULTS: Final = PipelineOptions()


@dataclass(frozen=True)
class SyncSettings:
    """The settings every orchestrated task shares.

    Attributes:
        read_token: The read token; None leaves it to dlt's secrets.
        base_url: The service's root URL; None for the token's region.
        destination: A dlt destination name, such as ``duckdb``.
        dataset: The dataset all pipelines load into.
        pipeline: The incremental pipeline's name; backfill windows add
            a suffix to it.
        backfill_start: The first day a backfill covers.
        duckdb_path: The DuckDB file when dlt's configuration names none.
    """

    read_token: str | None = field(default=None, repr=False)
    base_url: str | None = None
    destination: str = _CLI_DEFAULTS.destination
    dataset: str = _CLI_DEFAULTS.dataset
    pipeline: str = _CLI_DEFAULTS.name
    backfill_start: date = field(
        default_factory=lambda: (datetime.now(UTC) - _RETENTION).date()
    )
    duckdb_path: Path = field(default_factory=DEFAULT_DUCKDB.absolute)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from ``LOGFIRE_*`` variables, with defaults for the rest."""
        env = os.environ if environ is None else environ
        defaults = cls()
        start = env.get("LOGFIRE_BACKFILL_START")
        return cls(
            read_token=env.get("LOGFIRE_READ_TOKEN") or None,
            base_url=env.get("LOGFIRE_BASE_URL") or None,
            destination=env.get("LOGFIRE_DESTINATION") or defaults.destination,
            dataset=env.get("LOGFIRE_DATASET") or defaults.dataset,
            pipeline=env.get("LOGFIRE_PIPELINE") or defaults.pipeline,
            backfill_start=_day(start) if start else defaults.backfill_start,
        )

    def source_options(self) -> dict[str, Any]:
        """The source's options set here; dlt's configuration gives the rest."""
        options: dict[str, Any] = {}
        if self.read_token is not None:
            options["read_token"] = self.read_token
        if self.base_url is not None:
            options["base_url"] = self.base_url
        return options

    def source(self, **options: Any) -> DltSource:
        """The Logfire source with these settings and `options`.

        Raises:
            ConfigurationError: No read token is configured, or an option
                is wrong.
        """
        try:
            source: DltSource = logfire_source(**{**self.source_options(), **options})
        except ConfigFieldMissingException:
            raise ConfigurationError(
                "No read token: set LOGFIRE_READ_TOKEN, or read_token under "
                "[sources.logfire] in dlt's secrets."
            ) from None
        except ConfigValueCannotBeCoercedException as error:
            raise unreadable_config(
                error.field_name, error.field_value, error.hint
            ) from None
        return source

    def incremental_pipeline(self) -> dlt.Pipeline:
        """The pipeline of the incremental loads; its state holds the watermarks."""
        return dlt.pipeline(
            pipeline_name=self.pipeline,
            destination=self._destination(),
            dataset_name=self.dataset,
        )

    def partition_pipeline(self, start: datetime, end: datetime) -> dlt.Pipeline:
        """The pipeline of its own for the backfill window ``[start, end)``.

        Its state, kept in the destination like any pipeline's, holds how far
        the window has got: an interrupted window resumes on any worker, and
        a finished one is read whole again when it runs again.
        """
        suffix = partition_suffix(start, end)
        return dlt.pipeline(
            pipeline_name=f"{self.pipeline}_{suffix}",
            destination=self._destination(staging=f"%s_staging_{suffix}"),
            dataset_name=self.dataset,
        )

    def _destination(self, staging: str | None = None) -> Destination[Any, Any]:
        """The destination, with DuckDB's file and a staging dataset as given."""
        options: dict[str, Any] = {}
        if staging is not None:
            options["staging_dataset_name_layout"] = staging
        if self.destination == "duckdb" and not _duckdb_configured():
            options["credentials"] = str(self._duckdb_file())

        try:
            destination = Destination.from_reference(self.destination, **options)
        except UnknownDestinationModule:
            destination = None
        if destination is None:
            raise ConfigurationError(
                f"LOGFIRE_DESTINATION = {self.destination!r} names no destination. "
                "Give a dlt destination such as 'duckdb' or 'bigquery'."
            )
        return destination

    def _duckdb_file(self) -> Path:
        """The default DuckDB file, its folder made, if it cannot clash."""
        if self.dataset == self.duckdb_path.stem:
            # DuckDB names the catalog after the file, and a catalog and a schema
            # of the same name make every unqualified table reference ambiguous.
            raise ConfigurationError(
                f"LOGFIRE_DATASET = {self.dataset!r} would clash with the DuckDB "
                f"file {self.duckdb_path.name}, which has the same name. Choose "
                "another LOGFIRE_DATASET, or another file in "
                "DESTINATION__DUCKDB__CREDENTIALS."
            )
        self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        return self.duckdb_path


def partition_suffix(start: datetime, end: datetime) -> str:
    """The name suffix of a backfill window, such as ``backfill_2026_05_01``.

    Windows that start at midnight UTC are named by their day; others by
    their start to the minute, and their length in minutes unless it is one
    day.
    """
    moment = start.astimezone(UTC)
    name = f"backfill_{moment:%Y_%m_%d}"
    if moment.time() != datetime.min.time():
        name += f"_{moment:%H%M}"
    if end - start != timedelta(days=1):
        name += f"_{int((end - start).total_seconds() // 60)}m"
    return name


def drop_staging(pipeline: dlt.Pipeline) -> None:
    """Drop a backfill window's staging dataset once its rows are merged."""
    try:
        client = pipeline.sql_client()
    except SqlClientNotAvailable:
        return
    with client, client.with_staging_dataset():
        if client.has_dataset():
            client.drop_dataset()
            logger.info("Dropped the staging dataset %s.", client.dataset_name)


def _day(text: str) -> date:
    """A day written as ``2026-05-01``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"LOGFIRE_BACKFILL_START = {text!r} is not a day. Write it like "
            "'2026-05-01'."
        ) from None
