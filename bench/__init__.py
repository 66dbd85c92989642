"""The benchmark: the connector against what a user would otherwise write.

``python -m bench`` (or ``make bench``) generates telemetry once, serves it from
the sandbox in a process of its own, and runs every contender in a process of
its own too, so each one's peak memory is its own:

- ``sdk``: the official SDK's ``query_json_rows``, paged by ``created_at``
  into a dlt resource that yields dicts, the baseline a user would write;
- ``fetch``: the connector's pages fetched as Arrow and dropped, loading
  nothing, the ceiling the server sets;
- ``connector``: :func:`connector.run_sync` at several concurrencies.

Each runs without added latency and with 50 ms per request. The figures are
printed as a table and written to ``bench/results/`` as JSON, with PNG plots.
"""
