"""The logfire-sync command: run, status and demo, as a user types them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from connector.cli import _duration, main
from tests.connector.synchelp import (
    NOW,
    expected_rows,
    make_metrics,
    make_records,
    sandbox,
)

RECORDS = make_records(800, seed=31, start=NOW - timedelta(hours=2), end=NOW)
METRICS = make_metrics(100, seed=32, start=NOW - timedelta(hours=2), end=NOW)


def _common(server_url: str, state: Path) -> list[str]:
    return ["--base-url", server_url, "--state-dir", str(state)]


def test_run_loads_into_duckdb_under_the_state_folder_and_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with sandbox(RECORDS, METRICS) as server:
        monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
        start = (NOW - timedelta(hours=3)).isoformat()
        code = main(["run", *_common(server.url, tmp_path), "--start", start])

    assert code == 0
    assert "caught up" in capsys.readouterr().out
    database = tmp_path / "logfire_sync.duckdb"
    with duckdb.connect(str(database), read_only=True) as connection:
        records = connection.execute("SELECT count(*) FROM logfire.records").fetchone()
    assert records is not None
    assert records[0] > 0


def test_status_shows_each_table_after_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with sandbox(RECORDS, METRICS) as server:
        monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
        start = (NOW - timedelta(hours=3)).isoformat()
        main(["run", *_common(server.url, tmp_path), "--start", start])
    capsys.readouterr()

    code = main(["status", "--state-dir", str(tmp_path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split()[:2] == ["table", "watermark"]
    tables = {line.split()[0] for line in lines[1:]}
    assert tables == {"records", "metrics"}
    assert all(line.split()[1].startswith("2026-05-27T11:5") for line in lines[1:])


def test_status_before_any_run_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--state-dir", str(tmp_path)])

    assert code == 0
    assert "logfire-sync run" in capsys.readouterr().out


def test_a_refused_token_exits_three_without_printing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "pylf_v1_us_" + "w" * 40
    with sandbox(RECORDS, METRICS) as server:
        monkeypatch.setenv("LOGFIRE_READ_TOKEN", wrong)
        code = main(["run", *_common(server.url, tmp_path)])

    output = capsys.readouterr()
    assert code == 3
    assert "token" in output.err.lower()
    assert wrong not in output.err + output.out


def test_the_demo_syncs_the_sandbox_and_prints_a_sample_query(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "connector.cli", "demo", "--records", "3000"]
    command += ["--metrics", "500", "--state-dir", str(tmp_path)]
    # The demo keeps to its own file, whatever DuckDB the user's config names.
    elsewhere = tmp_path / "elsewhere.duckdb"
    env = {**os.environ, "DESTINATION__DUCKDB__CREDENTIALS": str(elsewhere)}
    first = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env
    )
    again = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env
    )

    assert first.returncode == 0, first.stderr[-2000:]
    assert "Spans per service, from DuckDB:" in first.stdout
    assert (tmp_path / "logfire_demo.duckdb").is_file()
    assert not elsewhere.exists()
    # A second demo serves new rows, and syncs them all rather than going on
    # from the first one's watermark.
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Starting over" in again.stdout
    synced = [
        line.split()[1]
        for line in (first.stdout + again.stdout).splitlines()
        if line.startswith("Synced ")
    ]
    assert synced == ["3,500", "3,500"]


def test_the_command_leaves_airflow_secrets_alone_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", raising=False)
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    assert os.environ["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] == "false"

    # A value the user set stays; this one still keeps Airflow out of the test.
    monkeypatch.setenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "False")
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    assert os.environ["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] == "False"


@pytest.mark.parametrize(
    ("records", "metrics"), [("-5", "100"), ("100", "-1"), ("0", "0")]
)
def test_the_demo_refuses_row_counts_it_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], records: str, metrics: str
) -> None:
    argv = ["demo", "--records", records, "--metrics", metrics]

    assert main([*argv, "--state-dir", str(tmp_path)]) == 2

    assert "give --records and --metrics counts of 0 or more" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_demo_of_metrics_alone_skips_the_spans_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--records", "0", "--metrics", "300"]

    assert main([*argv, "--state-dir", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert "300" in out
    assert "Spans per service" not in out


def test_an_interrupt_while_dlt_extracts_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dlt.extract.extractors import ArrowExtractor

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C lands in dlt's thread, which wraps it in an error of its own.
    monkeypatch.setattr(ArrowExtractor, "write_items", interrupted)
    with sandbox(RECORDS, METRICS) as server:
        monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
        start = (NOW - timedelta(hours=3)).isoformat()
        code = main(["run", *_common(server.url, tmp_path), "--start", start])

    assert code == 130
    assert "Interrupted; committed chunks stay loaded." in capsys.readouterr().err


def test_sigterm_stops_a_run_saying_so_and_the_next_run_loads_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An orchestrator's timeout: the default action ended the run without a word.
    records = make_records(3_000, seed=33, start=NOW - timedelta(hours=6), end=NOW)
    start = (NOW - timedelta(hours=7)).isoformat()
    with sandbox(records, METRICS, latency=0.1) as server:
        command = [sys.executable, "-m", "connector.cli", "run"]
        env = {**os.environ, "LOGFIRE_READ_TOKEN": server.token}
        env["SOURCES__LOGFIRE__CHUNK_ROWS"] = "500"
        argv = [*_common(server.url, tmp_path), "--start", start, "--page-size", "100"]
        running = subprocess.Popen(
            [*command, *argv], env=env, stderr=subprocess.PIPE, text=True
        )
        while server._service.counters.snapshot()["queries"] < 8:
            assert running.poll() is None
            time.sleep(0.05)
        running.send_signal(signal.SIGTERM)
        _, err = running.communicate(timeout=60)

        monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
        again = main(["run", *argv])
        stored = server.store.visible("records", server.clock.now())

    assert running.returncode == 143
    assert "Terminated (SIGTERM); committed chunks stay loaded." in err
    assert again == 0
    database = tmp_path / "logfire_sync.duckdb"
    with duckdb.connect(str(database), read_only=True) as connection:
        keys = connection.execute(
            "SELECT count(*), count(DISTINCT (trace_id, span_id, created_at)) "
            "FROM logfire.records"
        ).fetchone()
    horizon = NOW - timedelta(minutes=5)
    assert keys == (expected_rows(stored, horizon).num_rows,) * 2


def test_status_refuses_the_local_state_of_another_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with sandbox(RECORDS, METRICS) as server:
        monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
        start = (NOW - timedelta(hours=3)).isoformat()
        argv = ["run", *_common(server.url, tmp_path), "--start", start]
        assert main([*argv, "--dataset", "logfire_v2"]) == 0
    capsys.readouterr()

    elsewhere = main(["status", "--state-dir", str(tmp_path)])
    said = capsys.readouterr()
    here = main(["status", "--state-dir", str(tmp_path), "--dataset", "logfire_v2"])

    assert elsewhere == 2
    assert "dataset logfire_v2 in duckdb, not of logfire" in said.err
    assert "watermark" not in said.out
    assert here == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["table", "watermark"]


def test_status_of_another_dataset_before_any_sync_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    capsys.readouterr()

    code = main(["status", "--state-dir", str(tmp_path), "--dataset", "other"])

    assert code == 0
    assert "has synced nothing yet" in capsys.readouterr().out


def test_status_shows_a_watermark_ahead_of_the_clock_as_negative_lag() -> None:
    # Floor division made -3h30m read -4h30m.
    assert _duration(timedelta(hours=-3, minutes=-30)) == "-3h30m"
    assert _duration(timedelta(minutes=-5)) == "-5m"
    assert _duration(timedelta(hours=3, minutes=30)) == "3h30m"
