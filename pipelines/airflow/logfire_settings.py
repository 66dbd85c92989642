"""Where the Airflow DAGs read from and load to, from the environment.

Airflow puts the DAG folder on ``sys.path``, so the DAG files import this
module by its name. It imports nothing from Airflow.

=============================  ===============================================
``LOGFIRE_READ_TOKEN``         the read token [dlt's secrets:
                               ``SOURCES__LOGFIRE__READ_TOKEN`` and the rest]
``LOGFIRE_BASE_URL``           the service [the token's region]
``LOGFIRE_DESTINATION``        a dlt destination [duckdb]
``LOGFIRE_DATASET``            the dataset every pipeline loads [logfire]
``LOGFIRE_PIPELINE``           the incremental pipeline's name [logfire_sync,
                               as for ``logfire-sync run``]
``LOGFIRE_BACKFILL_START``     the first day a backfill can cover
                               [2026-01-01]
``LOGFIRE_AIRFLOW_POOL``       the pool of the tasks that query Logfire
                               [default_pool]
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
from typing import Any, Final

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import SqlClientNotAvailable
from dlt.extract import DltSource

from connector import ConfigurationError, logfire_source

__all__ = ["SyncSettings", "drop_staging", "partition_suffix"]

logger = logging.getLogger(__name__)

# Not logfire.duckdb: DuckDB names the catalog after the file, and a catalog
# named like the dataset makes dlt's queries ambiguous.
DEFAULT_DUCKDB: Final = Path("state") / "logfire_sync.duckdb"
FIRST_DAY: Final = date(2026, 1, 1)


@dataclass(frozen=True)
class SyncSettings:
    """The settings every asset shares.

    Attributes:
        read_token: The read token; None leaves it to dlt's secrets.
        base_url: The service's root URL; None for the token's region.
        destination: A dlt destination name, such as ``duckdb``.
        dataset: The dataset all pipelines load into.
        pipeline: The incremental pipeline's name; backfill windows add
            a suffix to it.
        backfill_start: The first day a backfill can cover; fixed, as a
            DAG whose start date moved would get a new version every day.
        pool: The Airflow pool of the tasks that query Logfire.
        duckdb_path: The DuckDB file when dlt's configuration names none.
    """

    read_token: str | None = field(default=None, repr=False)
    base_url: str | None = None
    destination: str = "duckdb"
    dataset: str = "logfire"
    pipeline: str = "logfire_sync"
    backfill_start: date = FIRST_DAY
    pool: str = "default_pool"
    duckdb_path: Path = field(default_factory=DEFAULT_DUCKDB.absolute)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncSettings:
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
            pool=env.get("LOGFIRE_AIRFLOW_POOL") or defaults.pool,
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
            self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            options["credentials"] = str(self.duckdb_path)
        destination = Destination.from_reference(self.destination, **options)
        if destination is None:
            raise ConfigurationError(
                f"LOGFIRE_DESTINATION = {self.destination!r} names no destination. "
                "Give a dlt destination such as 'duckdb' or 'bigquery'."
            )
        return destination


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


def _duckdb_configured() -> bool:
    """Whether dlt's configuration names a DuckDB database already."""
    if os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
        return True
    key = "destination.duckdb.credentials"
    return bool(dlt.secrets.get(key) or dlt.config.get(key))


def _day(text: str) -> date:
    """A day written as ``2026-05-01``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"LOGFIRE_BACKFILL_START = {text!r} is not a day. Write it like "
            "'2026-05-01'."
        ) from None
