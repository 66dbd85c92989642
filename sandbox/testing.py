"""A pytest plugin that serves the Logfire sandbox to a test suite.

Enable it in the suite's top-level `conftest.py`::

    pytest_plugins = ["sandbox.testing"]

(or run `pytest -p sandbox.testing`), then ask for the fixture::

    from logfire.query_client import LogfireQueryClient

    def test_counts_spans(logfire_sandbox):
        client = LogfireQueryClient(logfire_sandbox.token, base_url=logfire_sandbox.url)
        ...

One server is started per test session, with generated data sized by the ini
options `logfire_sandbox_records`, `logfire_sandbox_metrics`,
`logfire_sandbox_hours` and `logfire_sandbox_seed`. Before each test that uses
it, its fault plan is cleared and its counters reset; its clock and data carry
over from test to test. A test that needs its own server can build one with
`sandbox.SandboxServer` as a context manager.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

_OPTIONS = {
    "logfire_sandbox_records": ("records rows the sandbox generates", "20000"),
    "logfire_sandbox_metrics": ("metrics rows the sandbox generates", "5000"),
    "logfire_sandbox_hours": ("hours of history the sandbox generates", "24"),
    "logfire_sandbox_seed": ("seed of the sandbox's generated data", "0"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini options that size the sandbox's data."""
    for name, (help_text, default) in _OPTIONS.items():
        parser.addini(name, help_text, default=default)


@pytest.fixture(scope="session")
def logfire_sandbox_server(pytestconfig: pytest.Config) -> Iterator[SandboxServer]:
    """The session's sandbox server, started on a free loopback port."""

    def option(name: str) -> str:
        return str(pytestconfig.getini(name))

    server = SandboxServer(
        records=int(option("logfire_sandbox_records")),
        metrics=int(option("logfire_sandbox_metrics")),
        hours=float(option("logfire_sandbox_hours")),
        seed=int(option("logfire_sandbox_seed")),
    )
    with server:
        yield server


@pytest.fixture
def logfire_sandbox(logfire_sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox server, with no faults and fresh counters."""
    logfire_sandbox_server.faults = FaultPlan.none()
    logfire_sandbox_server.counters.reset()
    return logfire_sandbox_server
