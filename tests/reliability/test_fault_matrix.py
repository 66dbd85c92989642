"""Syncs under each fault kind alone, then all kinds mixed: always exact.

The short matrix of the suite: every kind on 30% of query requests, then all
kinds mixed on 30% under ten seeds, and three more mixed seeds against a
sandbox whose streams never carry the end-of-stream marker. The command
``python -m reliability faults --seeds N`` runs the same matrix with more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.faultmatrix import FaultCase, fault_sandbox, matrix, run_case
from sandbox.server import SandboxServer

CASES = matrix(10, unmarked=3)


def case_id(case: FaultCase) -> str:
    return f"{case.label}-{case.seed}" + ("" if case.marker else "-unmarked")


@pytest.fixture(scope="module")
def marked() -> Iterator[SandboxServer]:
    with fault_sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def unmarked() -> Iterator[SandboxServer]:
    with fault_sandbox(marker=False) as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_destination_equals_the_source_under_faults(
    case: FaultCase, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: SandboxServer = request.getfixturevalue(
        "marked" if case.marker else "unmarked"
    )
    result = run_case(server, case, tmp_path)

    for comparison in result.comparisons:
        comparison.check()
        assert comparison.duplicated == 0
    assert result.requests > 25
    injected = sum(result.faults.values())
    assert injected > 0
    if case.label != "mixed":
        assert result.faults.get(case.label, 0) == injected
