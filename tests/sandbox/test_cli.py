"""`python -m sandbox`: serving, stopping on signals, generating data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import cli
from sandbox.store import Store

SMALL_DATA = ["--records", "1000", "--metrics", "100", "--hours", "2"]


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m sandbox serve --port 0` in a subprocess, and the URL it printed."""
    command = [sys.executable, "-m", "sandbox", "serve", "--port", "0", *SMALL_DATA]
    process = subprocess.Popen(
        [*command, "--token", "cli-token"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, (
            f"no URL in {line!r}; stderr: {process.stderr and process.stderr.read()}"
        )
        yield process, found.group(0)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def query(url: str) -> httpx.Response:
    body = {
        "sql": "SELECT count(*) AS n FROM records",
        "min_timestamp": "2000-01-01T00:00:00Z",
    }
    return httpx.post(
        f"{url}/v2/query", json=body, headers={"Authorization": "Bearer cli-token"}
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_queries_and_exits_0_on_a_signal(
    served: tuple[subprocess.Popen[str], str], signum: int
) -> None:
    process, url = served

    response = query(url)
    process.send_signal(signum)
    code = process.wait(timeout=15)

    assert response.status_code == 200
    assert 0 < response.json()["data"][0]["n"] <= 1000
    assert code == 0


def test_serve_prints_the_token_hint(served: tuple[subprocess.Popen[str], str]) -> None:
    process, _ = served
    assert process.stdout is not None

    hint = process.stdout.readline()

    assert "cli-token" in hint


def test_generate_writes_parquet_that_serve_can_read(tmp_path: Path) -> None:
    code = cli.main(["generate", "--out", str(tmp_path), "--seed", "3", *SMALL_DATA])

    store = Store.from_parquet_dir(tmp_path)
    assert code == 0
    assert pq.read_metadata(tmp_path / "records.parquet").num_rows == 1000
    assert store.row_count("records") == 1000
    assert store.row_count("metrics") == 100


def test_serve_refuses_a_missing_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["serve", "--port", "0", "--data", str(tmp_path / "nowhere")])

    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_serve_refuses_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["serve", "--port", "0", "--faults", "kinds=teapot"])

    assert code == 2
    assert "teapot" in capsys.readouterr().err


def test_serve_help_explains_the_fault_grammar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])

    text = capsys.readouterr().out
    assert "rate=0.3,kinds=" in text
    assert "drop_during" in text


def test_the_pytest_plugin_serves_a_sandbox_to_a_suite(tmp_path: Path) -> None:
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime, timedelta, timezone

            from logfire.query_client import LogfireQueryClient

            def test_counts(logfire_sandbox):
                with LogfireQueryClient(
                    logfire_sandbox.token, base_url=logfire_sandbox.url
                ) as client:
                    rows = client.query_json_rows(
                        "SELECT count(*) AS n FROM records",
                        min_timestamp=datetime.now(timezone.utc) - timedelta(days=2),
                    )
                assert rows["rows"][0]["n"] > 0
            """
        )
    )
    # Only this plugin: loading every installed one would triple the start-up time.
    environment = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "sandbox.testing",
            "-o",
            "logfire_sandbox_records=500",
            "-o",
            "logfire_sandbox_metrics=50",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def chosen_pools(monkeypatch: pytest.MonkeyPatch) -> list[pa.MemoryPool]:
    """The pools the CLI makes pyarrow's default, recorded instead of set."""
    chosen: list[pa.MemoryPool] = []
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    return chosen


def test_serve_allocates_arrow_memory_with_jemalloc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow has no jemalloc")
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    chosen = chosen_pools(monkeypatch)

    cli._use_jemalloc()

    assert [pool.backend_name for pool in chosen] == ["jemalloc"]


def test_serve_keeps_the_memory_pool_the_environment_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    chosen = chosen_pools(monkeypatch)

    cli._use_jemalloc()

    assert chosen == []
