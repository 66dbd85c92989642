"""The benchmark's plan and goals, on made-up figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Plan, _Data, _specs
from bench.report import goals


def _run(contender: str, concurrency: int, rows_per_second: float) -> dict[str, Any]:
    return {
        "contender": contender,
        "purpose": "matrix",
        "table": "records",
        "destination": "none" if contender == "fetch" else "parquet",
        "latency_ms": 50.0,
        "concurrency": concurrency,
        "rows_per_second": rows_per_second,
        "seconds": 1_000_000 / rows_per_second,
        "rows": 1_000_000,
        "requests": 101,
        "windows": 1,
    }


def test_the_concurrency_goal_shows_what_the_bare_fetch_gained() -> None:
    runs = [
        _run("fetch", 1, 100_000),
        _run("fetch", 4, 220_000),
        _run("connector", 1, 60_000),
        _run("connector", 4, 120_000),
    ]

    (gain,) = [goal for goal in goals(runs) if goal.goal.startswith("c=4")]

    assert gain.measured == 2.0
    assert not gain.passed
    assert gain.detail == "120,000 vs 60,000 rows/s; the bare fetch: 2.20x"


def test_without_a_bare_fetch_at_four_the_goal_says_nothing_of_it() -> None:
    runs = [
        _run("fetch", 1, 100_000),
        _run("connector", 1, 60_000),
        _run("connector", 4, 180_000),
    ]

    (gain,) = [goal for goal in goals(runs) if goal.goal.startswith("c=4")]

    assert gain.passed
    assert gain.detail == "180,000 vs 60,000 rows/s"


def test_the_goals_say_what_the_cpu_spent_allows() -> None:
    fetch = _run("fetch", 1, 100_000)
    sdk = {**_run("sdk", 1, 5_000), "destination": "parquet"}
    one = {**_run("connector", 1, 50_000), "cpu_floor_seconds": 10.0}
    four = {**_run("connector", 4, 100_000), "cpu_floor_seconds": 8.0}

    runs = [fetch, sdk, one, four]
    found = {(goal.goal, goal.workload): goal for goal in goals(runs)}

    workload = "records -> parquet, 50 ms"
    gain = found["c=4 >= 2.5x c=1 in rows/s with latency", workload]
    # 1,000,000 rows in no less than 8 s: 125,000 rows/s, 2.5x of 50,000.
    assert gain.detail.endswith("; the CPU spent allows at most 2.50x")
    close = found["connector c=1 time <= 1.5x the bare fetch's", workload]
    # 10 s against the bare fetch's 10 s.
    assert close.detail.endswith("; the CPU spent allows no less than 1.00x")
    sdk_goal = found["connector c=4 >= 30x the SDK in rows/s", workload]
    assert sdk_goal.detail.endswith("; the CPU spent allows at most 25.00x")


def test_the_bare_fetch_runs_at_higher_concurrency_only_with_latency() -> None:
    plan = Plan(destinations=("parquet",), concurrencies=(1,))
    data = _Data(Path("data"), {"records": datetime(2026, 1, 1, tzinfo=UTC)}, {})

    def fetches(latency: float) -> list[int]:
        specs = _specs(plan, data, "records", latency, "http://127.0.0.1:1")
        return [spec.concurrency for spec, _ in specs if spec.kind == "fetch"]

    assert fetches(0.0) == [1]
    assert fetches(0.05) == [1, 4]
