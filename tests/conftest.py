"""Shared fixtures: sandbox servers with generated telemetry on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer

# With Airflow installed (an optional extra), dlt looks up every config key in
# Airflow's variables as well, which is slow and replaces logging handlers. No
# test keeps its configuration in Airflow.
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
# dlt reports anonymous usage over the internet unless told not to; tests talk to
# loopback only.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

SESSION_RECORDS = 30_000
SESSION_METRICS = 5_000
FRESH_RECORDS = 3_000
FRESH_METRICS = 500


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox for the whole session: 24 hours of generated data, no faults.

    Tests must not change its faults or clock; use `fresh_sandbox` for that.
    """
    with SandboxServer(
        records=SESSION_RECORDS, metrics=SESSION_METRICS, hours=24, seed=11
    ) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, checked to have no faults in force."""
    sandbox_server.faults = FaultPlan.none()
    return sandbox_server


@pytest.fixture
def fresh_sandbox() -> Iterator[SandboxServer]:
    """A sandbox of its own for a test that changes faults, clock or counters."""
    with SandboxServer(
        records=FRESH_RECORDS, metrics=FRESH_METRICS, hours=24, seed=5
    ) as server:
        yield server
