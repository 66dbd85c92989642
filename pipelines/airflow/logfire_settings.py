"""Where the Airflow DAGs read from and load to, from the environment.

Airflow puts the DAG folder on ``sys.path``, so the DAG files import this
module by its name. It imports nothing from Airflow.

The settings are those of :mod:`connector.orchestration`, which names the
variables they come from, with two that only Airflow has:

=============================  ===============================================
``LOGFIRE_BACKFILL_START``     the first day a backfill can cover
                               [2026-01-01]
``LOGFIRE_AIRFLOW_POOL``       the pool of the tasks that query Logfire
                               [default_pool]
=============================  ===============================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Final, Self

from connector.orchestration import SyncSettings, drop_staging

__all__ = ["AirflowSettings", "drop_staging"]

FIRST_DAY: Final = date(2026, 1, 1)


@dataclass(frozen=True)
class AirflowSettings(SyncSettings):
    """The settings every DAG shares.

    Attributes:
        backfill_start: The first day a backfill can cover; fixed, as a
            DAG whose start date moved would get a new version every day.
        pool: The Airflow pool of the tasks that query Logfire.
    """

    backfill_start: date = FIRST_DAY
    pool: str = "default_pool"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings from ``LOGFIRE_*`` variables, with defaults for the rest."""
        env = os.environ if environ is None else environ
        settings = super().from_env(env)
        return replace(settings, pool=env.get("LOGFIRE_AIRFLOW_POOL") or settings.pool)
