"""logfire-sync: Logfire records and metrics, synced into any dlt destination.

The public face of the connector::

    import dlt
    from connector import logfire_source

    pipeline = dlt.pipeline(
        "logfire_sync", destination="duckdb", dataset_name="logfire"
    )
    pipeline.run(logfire_source())

`connector.sync` runs a sync to completion, chunk by chunk, and reports on it.
"""

from __future__ import annotations

from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    IncompleteResponseError,
    LogfireSyncError,
    QueryError,
    RateLimitedError,
    RetryableError,
    TransientError,
)
from connector.source import (
    Progress,
    TableSynced,
    WindowLoaded,
    logfire_source,
    logfire_sql_resource,
)

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "IncompleteResponseError",
    "LogfireSyncError",
    "Progress",
    "QueryError",
    "RateLimitedError",
    "RetryableError",
    "TableSynced",
    "TransientError",
    "WindowLoaded",
    "logfire_source",
    "logfire_sql_resource",
]
