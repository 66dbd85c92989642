"""A local stand-in for Pydantic Logfire's SQL query API.

The sandbox serves generated (or saved) telemetry through the same HTTP API as
Logfire (`POST /v2/query` and friends), so clients, pipelines and their tests
run offline. Its clock can run fast, rows arrive late as they do in Logfire,
and faults can be injected on demand.

Example:
    from sandbox import SandboxServer

    with SandboxServer(records=20_000) as server:
        ...  # point a client at server.url with server.token

The names below are imported on first use, so `import sandbox` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.clock import Clock
    from sandbox.faults import FaultPlan
    from sandbox.generator import generate_metrics, generate_records
    from sandbox.server import SandboxServer
    from sandbox.store import Store

__all__ = [
    "Clock",
    "FaultPlan",
    "SandboxServer",
    "Store",
    "generate_metrics",
    "generate_records",
]

_HOMES = {
    "Clock": "sandbox.clock",
    "FaultPlan": "sandbox.faults",
    "SandboxServer": "sandbox.server",
    "Store": "sandbox.store",
    "generate_metrics": "sandbox.generator",
    "generate_records": "sandbox.generator",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
