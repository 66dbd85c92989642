"""Running the sync from an orchestrator: Dagster definitions and Airflow DAGs."""
