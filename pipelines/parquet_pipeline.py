"""Sync Logfire into Parquet files, one folder per table, incrementally.

    export DESTINATION__FILESYSTEM__BUCKET_URL=file:///data/logfire  # or s3://...
    cd pipelines && SOURCES__LOGFIRE__READ_TOKEN=pylf_... python parquet_pipeline.py

The filesystem destination cannot merge, so rows are appended: every window is
read once, so each row still arrives once. A backfill over rows already loaded
would append them again, so it is refused; use a merge-capable destination for
backfills.
"""

from __future__ import annotations

import logging
import os
import sys

import dlt

from connector.sync import run_sync

# With Airflow installed, dlt would also ask Airflow's variables for every config
# key, which doubles the run's time; set it to true to read them.
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")

DESTINATION = dlt.destinations.filesystem()


def main() -> None:
    """Sync every configured table until caught up; exit 1 if not."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    pipeline = dlt.pipeline(
        pipeline_name="logfire_parquet",
        destination=DESTINATION,
        dataset_name="logfire",
    )
    report = run_sync(pipeline)
    for table in report.tables:
        print(f"{table.table}: {table.rows} rows, watermark {table.watermark}")
    sys.exit(0 if report.caught_up else 1)


if __name__ == "__main__":
    main()
