"""The read token appears nowhere: not in output, logs, errors, traces or files.

One test drives every command a user has (a sync under faults and retries with
DEBUG logging, a backfill, verify, status, and failing runs with a refused
token), gathers everything they leave behind, and searches it for the token.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from dlt.common.versioned_state import decompress_state
from dlt.pipeline.trace import load_trace
from synchelp import NOW, make_metrics, make_records, sandbox

from connector.cli import main
from connector.client import LogfireClient
from connector.errors import LogfireSyncError
from connector.pipeline import PipelineOptions, make_pipeline
from connector.settings import build_settings
from connector.sync import run_sync
from connector.verify import run_verify
from sandbox.faults import FaultPlan

ALPHABET = string.ascii_letters + string.digits
SECRET = "pylf_v1_us_" + "".join(secrets.choice(ALPHABET) for _ in range(40))
LOGGERS = ("", "connector", "dlt", "httpx", "httpcore", "sandbox", "airflow")
FROM = NOW - timedelta(hours=30)
RANGE = ["--start", FROM.isoformat(), "--end", NOW.isoformat()]


class Everything(logging.Handler):
    """Keeps every record's message, arguments, exception and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        formatter = logging.Formatter()
        self.texts += [record.getMessage(), repr(record.args), repr(record.msg)]
        if record.exc_info:
            self.texts.append(formatter.formatException(record.exc_info))
        if record.stack_info:
            self.texts.append(record.stack_info)


@pytest.fixture(autouse=True)
def root_handlers() -> Iterator[None]:
    """Undo the handler main() may add to the root logger for this test's stderr.

    Left in place, it would write to a closed capture stream in later tests.
    """
    saved = logging.root.handlers[:]
    yield
    logging.root.handlers[:] = saved


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def error_texts(error: BaseException) -> list[str]:
    """An error as a user or a log could see it: text, repr, notes, traceback.

    The same for every exception behind it; dlt's chains can loop.
    """
    texts = ["".join(traceback.format_exception(error))]
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        texts += [str(current), repr(current), *getattr(current, "__notes__", [])]
        current = current.__cause__ or current.__context__
    return texts


def trace_texts(state: Path, pipeline_name: str) -> list[str]:
    """The pipeline's last trace, as loaded from its folder, every way shown."""
    pipeline = make_pipeline(PipelineOptions(name=pipeline_name, state_dir=state))
    trace = pipeline.last_trace or load_trace(pipeline.working_dir)
    assert trace is not None
    texts = [str(trace), repr(trace), trace.asstr(verbosity=2)]
    texts.append(json.dumps(trace.asdict(), default=str))
    return texts


def destination_state(state: Path, pipeline_name: str) -> list[str]:
    """The pipeline states kept in the destination, decompressed."""
    database = state / f"{pipeline_name}.duckdb"
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute(
            "SELECT state FROM logfire._dlt_pipeline_state"
        ).fetchall()
    assert rows
    return [json.dumps(decompress_state(blob)) for (blob,) in rows]


def file_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


def cli(argv: list[str], env: dict[str, str], expected: int) -> None:
    saved = {name: os.environ.pop(name, None) for name in (*env, "LOGFIRE_READ_TOKEN")}
    os.environ.update(env)
    try:
        assert main(argv) == expected
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def test_the_token_appears_nowhere(
    tmp_path: Path, logs: Everything, capsys: pytest.CaptureFixture[str]
) -> None:
    records = make_records(1_500, seed=61, start=NOW - timedelta(hours=5), end=NOW)
    metrics = make_metrics(300, seed=62, start=NOW - timedelta(hours=5), end=NOW)
    state = tmp_path / "state"
    texts: list[str] = []
    token = {"LOGFIRE_READ_TOKEN": SECRET}
    refused = {"LOGFIRE_READ_TOKEN": SECRET + "x"}
    kinds = ["500", "503", "429", "drop_before", "drop_during", "truncate"]

    with sandbox(records, metrics, token=SECRET) as server:
        url = ["--base-url", server.url, "--state-dir", str(state)]
        server.faults = FaultPlan(rate=0.3, kinds=[*kinds, "ndjson_error"], seed=5)
        debug = ["--log-level", "DEBUG"]
        cli([*debug, "run", *url, "--start", FROM.isoformat()], token, 0)
        cli([*debug, "backfill", *url, *RANGE, "--page-size", "500"], token, 0)
        cli([*debug, "verify", *url, *RANGE], token, 0)
        cli(["status", "--state-dir", str(state)], token, 0)
        cli([*debug, "run", *url], refused, 3)
        cli([*debug, "verify", *url, *RANGE], refused, 3)
        dlt_secret = {"SOURCES__LOGFIRE__READ_TOKEN": SECRET}
        cli([*debug, "run", *url, "--pipeline", "from_dlt"], dlt_secret, 0)
        faults = sum(server.counters.snapshot()["faults"].values())

        pipeline = make_pipeline(PipelineOptions(state_dir=state))
        with pytest.raises(LogfireSyncError) as failure:
            run_sync(pipeline, read_token=SECRET + "x", base_url=server.url)
        texts += error_texts(failure.value)
        with pytest.raises(LogfireSyncError) as failure:
            run_verify(
                pipeline, FROM, NOW, read_token=SECRET + "x", base_url=server.url
            )
        texts += error_texts(failure.value)

    client = LogfireClient(SECRET, base_url="http://127.0.0.1:1")
    settings = build_settings(read_token=SECRET)
    texts += [repr(client), str(client), repr(settings), str(settings)]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, *logs.texts]
    for name in ("logfire_sync", "from_dlt"):
        texts += trace_texts(state, name) + destination_state(state, name)

    assert faults >= 5
    assert logs.records > 100
    assert any("Attempt 1 failed" in text for text in logs.texts)
    assert any("POST /v2/query ->" in text for text in logs.texts)
    assert "refused the read token pylf_v1_us_****" in captured.err
    leaks = [text for text in texts if SECRET in text]
    assert not leaks, leaks[0][:2_000]
    files = [path for path, data in file_bytes(state) if SECRET.encode() in data]
    assert not files
