"""Sync Logfire into a DuckDB file, incrementally; run it as often as you like.

    cd pipelines && SOURCES__LOGFIRE__READ_TOKEN=pylf_... python duckdb_pipeline.py

Options come from `.dlt/config.toml` here ([sources.logfire]) and the token from
`.dlt/secrets.toml` or SOURCES__LOGFIRE__READ_TOKEN. The database file is
`logfire_duckdb.duckdb` in the current folder (named after the pipeline, which
must differ from the dataset for DuckDB) unless DESTINATION__DUCKDB__CREDENTIALS
names another; the path is made absolute, as dlt would resolve a relative one
against the folder of the pipeline's first run. Each example pipeline has a
name of its own: a pipeline's state belongs to one destination, so one name for
two would be refused.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import dlt

from connector.sync import run_sync

# With Airflow installed, dlt would also ask Airflow's variables for every config
# key, which doubles the run's time; set it to true to read them.
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")

DATABASE = os.environ.get("DESTINATION__DUCKDB__CREDENTIALS") or str(
    Path.cwd() / "logfire_duckdb.duckdb"
)
DESTINATION = dlt.destinations.duckdb(DATABASE)


def main() -> None:
    """Sync every configured table until caught up; exit 1 if not."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    pipeline = dlt.pipeline(
        pipeline_name="logfire_duckdb",
        destination=DESTINATION,
        dataset_name="logfire",
    )
    report = run_sync(pipeline)
    for table in report.tables:
        print(f"{table.table}: {table.rows} rows, watermark {table.watermark}")
    sys.exit(0 if report.caught_up else 1)


if __name__ == "__main__":
    main()
