"""A simulated hour of live traffic with faults, synced every few minutes: exact.

The short version of ``python -m reliability soak``, which runs a whole
simulated day in under ten minutes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reliability.soak import SoakOptions, run_soak


@pytest.mark.slow
def test_an_hour_of_live_traffic_with_faults_ends_exact(tmp_path: Path) -> None:
    options = SoakOptions(
        hours=1,
        speed=150,
        every=timedelta(minutes=3),
        records_per_hour=3_000,
        metrics_per_hour=600,
        history_hours=1,
        fault_rate=0.2,
        seed=4,
    )
    result = run_soak(options, tmp_path, say=lambda line: None)

    for comparison in result.comparisons:
        comparison.check()
        assert comparison.duplicated == 0
    assert result.syncs >= 5
    assert sum(result.faults.values()) > 0
    # Rows the feed stored during the hour, besides the hour of history.
    assert result.rows > 1.8 * (3_000 + 600)
