"""The settings and per-window pipelines both orchestrator examples share."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pendulum
import pytest

from connector import ConfigurationError
from connector.orchestration import SyncSettings, partition_suffix

DAY = datetime(2026, 5, 1, tzinfo=UTC)


def test_a_window_of_a_day_from_midnight_is_named_by_its_day() -> None:
    assert partition_suffix(DAY, DAY + timedelta(days=1)) == "backfill_2026_05_01"


def test_other_windows_are_named_by_their_start_and_length() -> None:
    start = DAY + timedelta(hours=6)
    name = partition_suffix(start, start + timedelta(hours=1))
    assert name == "backfill_2026_05_01_0600_60m"


def test_a_window_is_named_by_its_utc_day() -> None:
    start = pendulum.datetime(2026, 5, 1, tz="Europe/Paris")
    name = partition_suffix(start, start + timedelta(days=1))
    assert name == "backfill_2026_04_30_2200"


def test_the_settings_come_from_logfire_variables() -> None:
    settings = SyncSettings.from_env(
        {
            "LOGFIRE_READ_TOKEN": "pylf_secret",
            "LOGFIRE_DATASET": "observability",
            "LOGFIRE_PIPELINE": "nightly",
            "LOGFIRE_BACKFILL_START": "2026-04-01",
        }
    )

    assert settings.source_options() == {"read_token": "pylf_secret"}
    assert (settings.dataset, settings.pipeline) == ("observability", "nightly")
    assert settings.backfill_start == date(2026, 4, 1)
    assert "pylf_secret" not in repr(settings)


def test_backfills_start_thirty_days_ago_by_default() -> None:
    expected = (datetime.now(UTC) - timedelta(days=30)).date()
    assert SyncSettings.from_env({}).backfill_start == expected


def test_a_backfill_start_that_is_not_a_day_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="LOGFIRE_BACKFILL_START"):
        SyncSettings.from_env({"LOGFIRE_BACKFILL_START": "May 1st"})


def test_a_dataset_named_like_the_duckdb_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = SyncSettings(dataset="logfire_sync")

    with pytest.raises(ConfigurationError, match="LOGFIRE_DATASET"):
        settings.incremental_pipeline()


def test_an_unknown_destination_is_refused() -> None:
    settings = SyncSettings(destination="nowhere")

    with pytest.raises(ConfigurationError, match="nowhere"):
        settings.incremental_pipeline()
