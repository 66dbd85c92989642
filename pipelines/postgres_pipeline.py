"""Sync Logfire into PostgreSQL, incrementally.

    export DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:pass@host:5432/db
    cd pipelines && SOURCES__LOGFIRE__READ_TOKEN=pylf_... python postgres_pipeline.py

Each run reads at most one chunk (a day of data, the `chunk` option), so a long
catch-up takes several runs; `connector.sync.run_sync` loops until caught up.
JSON and list columns arrive as `jsonb`; `pip install "logfire-sync[postgres]"`
brings the driver.
"""

from __future__ import annotations

import os

import dlt

from connector import logfire_source

# With Airflow installed, dlt would also ask Airflow's variables for every config
# key, which doubles the run's time; set it to true to read them.
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")


def main() -> None:
    """Run one chunk (at most a day of data) per call, as an hourly job would."""
    pipeline = dlt.pipeline(
        pipeline_name="logfire_postgres",
        destination=dlt.destinations.postgres(),
        dataset_name="logfire",
    )
    info = pipeline.run(logfire_source())
    print(info)


if __name__ == "__main__":
    main()
