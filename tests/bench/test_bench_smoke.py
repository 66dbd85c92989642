"""The benchmark harness runs end to end on tiny data; timings are not checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


@pytest.mark.slow
def test_the_harness_writes_every_figure_and_goal(tmp_path: Path) -> None:
    out = tmp_path / "results"
    status = main(
        [
            "--records=3000",
            "--metrics=300",
            "--tables=records",
            "--destinations=duckdb",
            "--concurrency=1",
            "--latencies=0",
            "--baseline-rows=500",
            "--scaling-rows=1000",
            f"--workdir={tmp_path / 'work'}",
            f"--out={out}",
        ]
    )

    assert status == 0
    results = json.loads((out / "results.json").read_text())
    kinds = {(run["contender"], run["purpose"]) for run in results["runs"]}
    assert kinds == {
        ("fetch", "matrix"),
        ("sdk", "matrix"),
        ("connector", "matrix"),
        ("connector", "scaling-1000"),
    }
    for run in results["runs"]:
        assert run["rows"] > 0
        assert run["requests"] > 0
        assert run["peak_rss_bytes"] > 0
        assert run["bytes"] > 0
        assert set(run) >= {"rows_per_second", "bytes_per_second", "rows_per_request"}
        assert run["cpu_seconds"] > 0
        assert run["server_cpu_seconds"] > 0
        # Both processes' CPU over the cores: no run can be faster. The
        # tolerance is for the clock ticks the sandbox's CPU is counted in.
        assert run["cpu_floor_seconds"] <= run["seconds"] + 0.05
    connector = next(
        r
        for r in results["runs"]
        if r["purpose"] == "matrix" and r["contender"] == "connector"
    )
    assert connector["extra"]["incremental_rows"] == 0
    scaling = next(r for r in results["runs"] if r["purpose"] == "scaling-1000")
    # The rows created before the 1,000th one's `created_at`, and no more.
    assert 900 <= scaling["rows"] <= 1000 < connector["rows"]
    goals = {goal["goal"] for goal in results["goals"]}
    assert any("SDK" in goal for goal in goals)
    assert any("bare fetch" in goal for goal in goals)
    assert any("memory" in goal for goal in goals)
    assert any("empty dlt run" in goal for goal in goals)
    assert (out / "concurrency.png").stat().st_size > 0
    assert (out / "memory.png").stat().st_size > 0
