"""Four windows in flight, a sandbox that caps queries and answers 429, a budget.

The budget's period is shortened to three seconds so that the test is quick;
``python -m reliability load`` runs the same with a real minute.
"""

from __future__ import annotations

from pathlib import Path

from reliability.load import LoadOptions, run_load


def test_requests_stay_within_the_budget_and_the_sync_completes(
    tmp_path: Path,
) -> None:
    options = LoadOptions(
        budget=15,
        period=3.0,
        queue_timeout=0.1,
        held_share=0.6,
        held_seconds=0.4,
        records=3_000,
        metrics=600,
        page_size=150,
    )
    result = run_load(options, tmp_path, say=lambda line: None)

    for comparison in result.comparisons:
        comparison.check()
    assert result.requests > 2 * options.budget
    assert result.refused > 0
    assert result.most_in_window <= options.budget
