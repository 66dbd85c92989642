"""`logfire-sync verify`: the report, its exit codes and `--repair`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from synchelp import NOW, make_metrics, make_records, sandbox

from connector.cli import main
from sandbox.server import SandboxServer

FROM = NOW - timedelta(hours=30)
RANGE = ["--start", FROM.isoformat(), "--end", NOW.isoformat()]


@pytest.fixture(autouse=True)
def root_handlers() -> Iterator[None]:
    """Undo the handler main() may add to the root logger for this test's stderr.

    Left in place, it would write to a closed capture stream in later tests.
    """
    saved = logging.root.handlers[:]
    yield
    logging.root.handlers[:] = saved


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    records = make_records(1_500, seed=71, start=NOW - timedelta(hours=5), end=NOW)
    metrics = make_metrics(300, seed=72, start=NOW - timedelta(hours=5), end=NOW)
    with sandbox(records, metrics) as running:
        yield running


@pytest.fixture
def state(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A state folder after a successful sync."""
    monkeypatch.setenv("LOGFIRE_READ_TOKEN", server.token)
    folder = tmp_path / "state"
    assert main(["run", *common(server, folder), "--start", FROM.isoformat()]) == 0
    return folder


def common(server: SandboxServer, state: Path) -> list[str]:
    return ["--base-url", server.url, "--state-dir", str(state)]


def execute(state: Path, sql: str) -> None:
    with duckdb.connect(str(state / "logfire_sync.duckdb")) as connection:
        connection.execute(sql)


def verify(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", *common(server, state), *RANGE, *extra])
    return code, capsys.readouterr().out


def test_matching_counts_exit_0(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(server, state, capsys)

    assert code == 0
    assert "in buckets of 1h" in out
    assert out.count("all match.") == 2
    assert "(the watermark)" in out


def test_differing_buckets_are_listed_and_exit_7(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = NOW - timedelta(hours=2)
    execute(
        state,
        f"DELETE FROM logfire.records WHERE start_timestamp >= '{bucket}' "
        f"AND start_timestamp < '{bucket + timedelta(hours=1)}'",
    )
    execute(
        state,
        "INSERT INTO logfire.metrics SELECT * FROM logfire.metrics "
        "ORDER BY created_at LIMIT 2",
    )

    code, out = verify(server, state, capsys)

    assert code == 7
    assert "records: 30 buckets" in out
    assert "1 differ." in out
    [line] = [line for line in out.splitlines() if "missing" in line]
    assert line.split()[0] == bucket.isoformat(timespec="microseconds")
    assert (
        sum(int(line.split()[-2]) for line in out.splitlines() if "excess" in line) == 2
    )


def test_repair_fixes_the_differences_and_exits_0(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        state,
        "DELETE FROM logfire.records WHERE span_id IN "
        "(SELECT span_id FROM logfire.records ORDER BY span_id LIMIT 5)",
    )

    code, out = verify(server, state, capsys, "--repair")

    assert code == 0
    before, after = out.split("Verifying again:")
    assert "missing" in before
    assert "The repair read" in before
    assert after.count("all match.") == 2
    assert verify(server, state, capsys)[0] == 0


def test_excess_a_repair_cannot_remove_is_explained_and_exits_7(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        state,
        "INSERT INTO logfire.records SELECT * REPLACE (created_at - INTERVAL 1 "
        "MICROSECOND AS created_at) FROM logfire.records ORDER BY span_id LIMIT 1",
    )

    code, out = verify(server, state, capsys, "--repair")

    assert code == 7
    after = out.split("Verifying again:")[1]
    assert "1 excess" in after
    assert "rows Logfire no longer holds" in after


def test_the_filters_given_decide_what_is_counted(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(server, state, capsys, "--service", "api", "--bucket", "6h")

    assert code == 7
    assert "in buckets of 6h" in out
    assert "excess" in out
    assert "missing" not in out


def test_a_repair_with_narrower_filters_needs_the_flag(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    narrower = ["--service", "api", "--bucket", "6h", "--repair"]
    capsys.readouterr()
    refused = main(["verify", *common(server, state), *RANGE, *narrower])
    said = capsys.readouterr().err

    code, out = verify(server, state, capsys, *narrower, "--accept-filter-change")

    assert refused == 2
    assert "verify --repair" in said
    assert code == 7
    assert "The repair read" in out


def test_the_help_says_which_rows_are_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["verify", "--help"])

    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    assert "stored (created_at) before the table's watermark" in out
    assert "Exits 7 if any bucket differs" in out
    assert "--repair" in out
