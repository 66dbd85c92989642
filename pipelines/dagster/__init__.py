"""Dagster definitions for logfire-sync, built with dagster-dlt.

``dagster dev -m pipelines.dagster.definitions`` loads them; see
:mod:`pipelines.dagster.definitions` for what they hold.
"""
