"""Bad input to `logfire-sync`: a clear message, a non-zero exit, nothing moved.

Each test starts from the same successful sync (copied into its own state
folder), runs one bad command and checks the exit code, that the message
names the fix, and that the loaded rows and the watermarks are as they were.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from synchelp import NOW, make_metrics, make_records, sandbox

from connector.cli import main
from sandbox.engine import QueryRequest, QueryResult
from sandbox.server import SandboxServer

TOKEN = "pylf_v1_us_q7Rm2XkP9vLc4TzW8nHd3YbF6sJg1QaE5uKo0VxN"
PIPELINE = "logfire_sync"
FROM = NOW - timedelta(hours=30)
RANGE = ["--start", (NOW - timedelta(hours=8)).isoformat(), "--end", NOW.isoformat()]
QUOTED_SERVICE = 'o\'brien "the" (api)'


def records() -> pa.Table:
    rows = make_records(2_000, seed=51, start=NOW - timedelta(hours=5), end=NOW)
    quoted = make_records(
        7, seed=52, start=NOW - timedelta(hours=3), end=NOW, late_fraction=0
    )
    index = quoted.schema.get_field_index("service_name")
    quoted = quoted.set_column(index, "service_name", pa.array([QUOTED_SERVICE] * 7))
    return pa.concat_tables([rows, quoted])


class RecordingEngine:
    """The sandbox's engine, keeping every request it is asked to run."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.requests: list[QueryRequest] = []

    def execute(self, request: QueryRequest) -> QueryResult:
        self.requests.append(request)
        result: QueryResult = self.engine.execute(request)
        return result


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
    metrics = make_metrics(300, seed=53, start=NOW - timedelta(hours=5), end=NOW)
    with sandbox(records(), metrics, token=TOKEN) as running:
        yield running


@pytest.fixture
def engine(server: SandboxServer) -> Iterator[RecordingEngine]:
    service = server._service
    recording = RecordingEngine(service.engine)
    service.engine = recording
    yield recording
    service.engine = recording.engine


@pytest.fixture(scope="module")
def template(server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder after a successful sync, to copy for each test."""
    state = tmp_path_factory.mktemp("template") / "state"
    env = {"LOGFIRE_READ_TOKEN": TOKEN}
    code = run_cli(["run", *common(server, state), "--start", FROM.isoformat()], env)
    assert code == 0
    return state


@pytest.fixture
def state(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOGFIRE_READ_TOKEN", TOKEN)
    copy = tmp_path / "state"
    shutil.copytree(template, copy)
    return copy


def run_cli(argv: list[str], env: dict[str, str]) -> int:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return main(argv)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def common(server: SandboxServer, state: Path) -> list[str]:
    return ["--base-url", server.url, "--state-dir", str(state)]


# A pipeline of its own: the template's state belongs to DuckDB.
INTO_POSTGRES = ["--destination", "postgres", "--pipeline", "into_postgres"]


@dataclass(frozen=True)
class Snapshot:
    """What must not move: rows per table, loads, and the resources' state."""

    rows: dict[str, int]
    loads: int
    resources: dict[str, Any]

    @classmethod
    def of(cls, state: Path) -> Snapshot:
        with duckdb.connect(str(state / f"{PIPELINE}.duckdb"), read_only=True) as db:
            rows = {
                table: count(db, f"logfire.{table}") for table in ("records", "metrics")
            }
            loads = count(db, "logfire._dlt_loads")
        saved = json.loads((state / "pipelines" / PIPELINE / "state.json").read_text())
        resources = saved["sources"]["logfire"]["resources"]
        return cls(rows, loads, resources)


def count(db: duckdb.DuckDBPyConnection, table: str) -> int:
    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def refused(
    capsys: pytest.CaptureFixture[str],
    state: Path,
    argv: list[str],
    code: int,
    *fixes: str,
    env: dict[str, str] | None = None,
) -> str:
    """Run a bad command; check its exit, its advice and that nothing moved."""
    before = Snapshot.of(state)
    capsys.readouterr()

    assert run_cli(argv, env or {}) == code

    err = capsys.readouterr().err
    # From the first line the command printed: a log line may come before it.
    assert "logfire-sync: " in err
    said = err[err.index("logfire-sync: ") :]
    for fix in fixes:
        assert fix in said
    assert Snapshot.of(state) == before
    return said


def test_a_bad_or_expired_token_exits_3_naming_the_setting(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = TOKEN[:-4] + "0000"
    err = refused(
        capsys,
        state,
        ["run", *common(server, state)],
        3,
        "refused the read token",
        "Check LOGFIRE_READ_TOKEN, whether the token has expired",
        env={"LOGFIRE_READ_TOKEN": expired},
    )
    assert expired not in err


def test_no_token_exits_2_naming_every_place_it_may_come_from(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOURCES__LOGFIRE__READ_TOKEN", raising=False)
    refused(
        capsys,
        state,
        ["run", *common(server, state)],
        2,
        "missing: read_token",
        "SOURCES__LOGFIRE__READ_TOKEN",
        "LOGFIRE_READ_TOKEN also works",
        env={"LOGFIRE_READ_TOKEN": ""},
    )


def test_a_token_for_another_region_exits_3_naming_both_services(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    european = "pylf_v1_eu_" + TOKEN.removeprefix("pylf_v1_us_")
    refused(
        capsys,
        state,
        ["run", *common(server, state)],
        3,
        "The token is for the eu region, served at https://logfire-eu.pydantic.dev",
        f"sent to {server.url}",
        "its region matches the base URL",
        env={"LOGFIRE_READ_TOKEN": european},
    )


def test_an_unknown_table_exits_2_listing_the_tables(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(
        capsys,
        state,
        ["run", *common(server, state), "--tables", "records,spans"],
        2,
        "'spans'",
        "Use 'records', 'metrics' or both",
    )


@pytest.mark.parametrize(
    ("columns", "fix"),
    [
        ("records:span_name,spam_name", "Did you mean 'span_name'?"),
        ("metrics:Unit", "Use lowercase letters"),
        ("records", "Write TABLE:COLUMN,COLUMN"),
    ],
)
def test_an_unknown_column_exits_2_with_the_fix(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    columns: str,
    fix: str,
) -> None:
    argv = ["run", *common(server, state), "--columns", columns]
    refused(capsys, state, argv, 2, fix)


def test_an_unknown_column_in_a_where_exits_4_from_the_service(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Accepted as a filter change, so that the query reaches the service.
    where = ["--where", "no_such = 1", "--accept-filter-change"]
    argv = ["backfill", *common(server, state), *RANGE, *where]
    refused(capsys, state, argv, 4, "No field named no_such", "Fix the SQL.")


@pytest.mark.parametrize(
    "where",
    ["1 = 1) OR (1 = 1", "1 = 1; DROP TABLE records", "level > 5 /* and so on"],
)
def test_a_where_that_would_escape_its_parentheses_exits_2(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    argv = ["backfill", *common(server, state), *RANGE, "--where", where]
    refused(capsys, state, argv, 2, "balanced parentheses and closed quotes")


def test_a_nul_in_a_filter_value_exits_2(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", *common(server, state), *RANGE, "--service", "api\x00"]
    refused(capsys, state, argv, 2, "NUL")


def test_filter_values_with_quotes_match_literally_and_inject_nothing(
    server: SandboxServer,
    state: Path,
    engine: RecordingEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = Snapshot.of(state)
    injection = "api' OR '1'='1"
    # Narrower than the loaded rows' filters, which a backfill must be told.
    accept = "--accept-filter-change"
    argv = ["backfill", *common(server, state), *RANGE, accept, "--service", injection]
    assert run_cli(argv, {}) == 0
    assert "loaded 0 rows" in capsys.readouterr().out
    backfills = [request.sql for request in engine.requests if "FROM" in request.sql]
    assert backfills
    assert all("service_name IN ('api'' OR ''1''=''1')" in sql for sql in backfills)

    argv = [
        "backfill",
        *common(server, state),
        *RANGE,
        accept,
        "--service",
        QUOTED_SERVICE,
    ]
    assert run_cli(argv, {}) == 0
    assert f"loaded {quoted_rows(server)} rows" in capsys.readouterr().out
    after = Snapshot.of(state)
    assert after.rows == before.rows
    for table in ("records", "metrics"):
        assert (
            after.resources[table]["watermark"] == before.resources[table]["watermark"]
        )


def quoted_rows(server: SandboxServer) -> int:
    """The rows of the quoted service that a backfill of RANGE reads."""
    table = server.store.visible("records", server.clock.now())
    horizon = pa.scalar(NOW - timedelta(minutes=5), table["created_at"].type)
    mask = pc.and_(
        pc.equal(table["service_name"], QUOTED_SERVICE),
        pc.less(table["created_at"], horizon),
    )
    assert 0 < pc.sum(mask).as_py() <= 7
    return int(pc.sum(mask).as_py())


@pytest.mark.parametrize(
    ("size", "fix"),
    [
        ("0", "Choose a value from 1 to 10000"),
        ("10001", "Choose a value from 1 to 10000"),
        ("many", "whole number from 1 to 10000"),
    ],
)
def test_a_page_size_out_of_range_exits_2(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    size: str,
    fix: str,
) -> None:
    argv = ["run", *common(server, state), "--page-size", size]
    refused(capsys, state, argv, 2, "page_size", fix)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--start", "2026-05-26T06:00:00"],
        ["backfill", "--start", "2026-05-26T06:00:00", "--end", NOW.isoformat()],
        ["verify", "--start", NOW.isoformat(), "--end", "2026-05-28T00:00:00"],
    ],
    ids=["run", "backfill", "verify"],
)
def test_a_naive_timestamp_exits_2_asking_for_an_offset(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    argv = [command[0], *common(server, state), *command[1:]]
    refused(capsys, state, argv, 2, "has no time zone", "Add an offset, such as")


@pytest.mark.parametrize("command", ["backfill", "verify"])
def test_a_start_after_its_end_exits_2(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    backwards = ["--start", NOW.isoformat(), "--end", FROM.isoformat()]
    argv = [command, *common(server, state), *backwards]
    refused(capsys, state, argv, 2, "is not before its end", "earlier instant")


@pytest.mark.parametrize("command", ["run", "backfill", "verify"])
def test_another_dataset_under_the_same_pipeline_exits_2(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    argv = [command, *common(server, state), "--dataset", "elsewhere"]
    argv += RANGE if command != "run" else []
    fixes = ["not of elsewhere in duckdb", "Give each destination and dataset"]
    refused(capsys, state, argv, 2, *fixes)


def test_a_duckdb_file_in_a_missing_folder_exits_2_naming_it(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(missing / "warehouse.duckdb")}
    argv = ["run", *common(server, state)]

    refused(capsys, state, argv, 2, f"{missing}, does not exist", env=env)


def test_a_first_window_wider_than_one_scan_exits_2(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", *common(server, state), "--window", "15d"]
    refused(capsys, state, argv, 2, "at most 13 days", "Choose at most 11 days")


def test_a_backfill_wider_than_14_days_is_read_in_scans_of_at_most_13_days(
    server: SandboxServer,
    state: Path,
    engine: RecordingEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = Snapshot.of(state)
    wide = ["--start", (NOW - timedelta(days=20)).isoformat(), "--end", RANGE[3]]
    argv = ["backfill", *common(server, state), *wide, "--tables", "records"]

    assert run_cli(argv, {}) == 0

    scans = [
        request.max_timestamp - request.min_timestamp
        for request in engine.requests
        if request.max_timestamp is not None
    ]
    assert scans
    # 13 days touch at most 14 calendar dates, if the limit counts those.
    assert max(scans) <= timedelta(days=13)
    assert Snapshot.of(state).rows == before.rows


@pytest.mark.parametrize("command", ["run", "verify"])
def test_an_unreachable_destination_exits_6(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    extra = RANGE if command == "verify" else []
    argv = [command, *common(server, state), *INTO_POSTGRES, *extra]
    closed = "postgresql://loader:hunter2-secret@127.0.0.1:1/warehouse"
    err = refused(
        capsys,
        state,
        argv,
        6,
        "Connection refused",
        "reachable",
        env={"DESTINATION__POSTGRES__CREDENTIALS": closed},
    )
    assert "hunter2-secret" not in err


@pytest.fixture
def small_disk(state: Path) -> Iterator[Path]:
    """The state folder, moved onto a 32 MB tmpfs of its own."""
    saved = state.with_name("saved")
    state.rename(saved)
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(state)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(saved, state, dirs_exist_ok=True)
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65_536)
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("SOURCES__LOGFIRE__SERVICE_NAMES", "api", "Write a list"),
        ("SOURCES__LOGFIRE__TABLES", "records", "SOURCES__LOGFIRE__TABLES='["),
        ("SOURCES__LOGFIRE__CONCURRENCY", "four", "Write a whole number"),
        ("SOURCES__LOGFIRE__REQUIRE_END_MARKER", "maybe", "Write true or false"),
    ],
)
def test_a_config_value_of_the_wrong_type_exits_2_with_its_form(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    fix: str,
) -> None:
    option = variable.removeprefix("SOURCES__LOGFIRE__").lower()
    argv = ["run", *common(server, state)]
    err = refused(
        capsys, state, argv, 2, f"The option {option}", fix, env={variable: value}
    )
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["utils", "Duckdb"])
def test_an_unknown_destination_exits_2_listing_only_destinations(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    argv = ["run", *common(server, state), "--destination", name]

    err = refused(capsys, state, argv, 2, f"The destination {name!r} is not one")

    known = err[err.index("Choose one of: ") :].removeprefix("Choose one of: ")
    names = known.split(".")[0].split(", ")
    assert {"duckdb", "postgres", "filesystem", "bigquery", "snowflake"} <= set(names)
    assert not {"utils", "typing", "impl", "destination"} & set(names)


# With --start, a fresh folder first looks for watermarks in the destination.
@pytest.mark.parametrize("start", [[], ["--start", FROM.isoformat()]])
def test_missing_destination_credentials_exit_2_naming_the_setting(
    server: SandboxServer,
    state: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    start: list[str],
) -> None:
    monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    argv = ["run", *common(server, state), *INTO_POSTGRES, *start]

    refused(capsys, state, argv, 2, "DESTINATION__POSTGRES__CREDENTIALS")


@pytest.mark.parametrize(
    ("failure", "fix"),
    [
        (
            'ModuleNotFoundError("No module named psycopg2", name="psycopg2")',
            "dlt[postgres]",
        ),
        ('ImportError("libpq.so.5: cannot open shared object file")', "libpq.so.5"),
    ],
)
def test_a_destination_driver_that_does_not_import_exits_2_saying_what_to_install(
    server: SandboxServer, tmp_path: Path, failure: str, fix: str
) -> None:
    stub = tmp_path / "stub" / "psycopg2"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(f"raise {failure}\n")
    root = Path(__file__).parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(stub.parent), str(root)]),
        "LOGFIRE_READ_TOKEN": TOKEN,
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://u:p@127.0.0.1:9/db",
    }
    state = tmp_path / "state"
    argv = ["run", *common(server, state), *INTO_POSTGRES, "--tables", "metrics"]

    done = subprocess.run(
        [sys.executable, "-m", "connector.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr[-2000:]
    said = done.stderr[done.stderr.rindex("logfire-sync: ") :]
    assert "then run again" in said
    assert fix in said


def test_credentials_without_a_password_exit_2_naming_the_password(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", *common(server, state), *INTO_POSTGRES]
    url = "postgresql://loader@127.0.0.1:9/postgres"

    err = refused(
        capsys,
        state,
        argv,
        2,
        "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD",
        "Nothing was read.",
        env={"DESTINATION__POSTGRES__CREDENTIALS": url},
    )

    assert "Rows already read" not in err


def test_a_full_disk_under_state_exits_6_and_keeps_the_data(
    server: SandboxServer, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = Snapshot.of(small_disk)
    filler = fill(small_disk)
    argv = ["backfill", *common(server, small_disk), *RANGE]

    assert run_cli(argv, {}) == 6

    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "The disk is full" in err
    assert "pass --state-dir with a folder on a disk that has room" in err
    filler.unlink()
    assert Snapshot.of(small_disk) == before
    verify = ["verify", *common(server, small_disk), *RANGE]
    assert run_cli(verify, {}) == 0


def test_a_damaged_duckdb_file_exits_6_with_how_to_recover(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A kill can leave DuckDB's file damaged, as one crash check run did: the
    # first block after its headers no longer matches its checksum.
    with (state / f"{PIPELINE}.duckdb").open("r+b") as database:
        database.seek(12_288 + 64)
        database.write(b"\xff" * 64)
    saved = (state / "pipelines" / PIPELINE / "state.json").read_text()

    code = run_cli(["run", *common(server, state)], {})

    err = capsys.readouterr().err
    assert code == 6
    assert "Corrupt database file" in err
    assert "no retry repairs" in err
    assert "Restore the file from a copy" in err
    assert (state / "pipelines" / PIPELINE / "state.json").read_text() == saved


def test_a_read_only_state_folder_exits_2(
    server: SandboxServer, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = Snapshot.of(small_disk)
    remounted = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_disk)], capture_output=True
    )
    assert remounted.returncode == 0, remounted.stderr

    code = run_cli(["backfill", *common(server, small_disk), *RANGE], {})

    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot be written" in err
    assert "Pass --state-dir with a writable folder" in err
    assert Snapshot.of(small_disk) == before


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An empty folder on a read-only tmpfs of its own."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
        capture_output=True,
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_destination_folder_that_cannot_be_written_exits_6_naming_it(
    server: SandboxServer,
    state: Path,
    read_only_folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It was blamed on the state folder, with exit 2.
    into_files = ["--destination", "filesystem", "--pipeline", "into_files"]
    argv = ["run", *common(server, state), *into_files, "--start", FROM.isoformat()]
    bucket = {"DESTINATION__FILESYSTEM__BUCKET_URL": read_only_folder.as_uri()}

    code = run_cli(argv, bucket)

    err = capsys.readouterr().err
    assert code == 6, err
    assert f"The destination cannot be written ({read_only_folder}" in err
    assert "--state-dir" not in err


def test_a_start_older_than_retention_warns_on_stderr_and_proceeds(
    server: SandboxServer, tmp_path: Path
) -> None:
    old = (NOW - timedelta(days=40)).isoformat()
    command = [sys.executable, "-m", "connector.cli"]
    argv = ["backfill", *common(server, tmp_path), "--start", old]
    argv += ["--end", NOW.isoformat(), "--max-chunks", "1", "--tables", "records"]
    env = {**os.environ, "LOGFIRE_READ_TOKEN": TOKEN}

    done = subprocess.run(
        [*command, *argv], capture_output=True, text=True, env=env, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert "records: the backfill starts at" in done.stderr
    assert "probably past retention" in done.stderr
    # Few rows: the one chunk reaches the end, 40 days of windows later.
    loaded = re.search(r"The backfill loaded ([\d,]+) rows", done.stdout)
    assert loaded is not None
    assert int(loaded[1].replace(",", "")) > 0
    assert "; caught up." in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_a_first_sync_older_than_retention_warns_and_loads(
    server: SandboxServer, tmp_path: Path
) -> None:
    old = (NOW - timedelta(days=40)).isoformat()
    command = [sys.executable, "-m", "connector.cli", "run"]
    argv = [*common(server, tmp_path), "--start", old, "--max-chunks", "1"]
    env = {**os.environ, "LOGFIRE_READ_TOKEN": TOKEN}

    done = subprocess.run(
        [*command, *argv], capture_output=True, text=True, env=env, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert "the first sync starts at" in done.stderr
    assert "; caught up." in done.stdout


# A fresh machine has the database, but not the pipeline's folder.
@pytest.mark.parametrize("fresh", [False, True], ids=["synced", "fresh"])
def test_a_start_given_to_a_synced_pipeline_is_said_to_be_ignored(
    server: SandboxServer, state: Path, caplog: pytest.LogCaptureFixture, fresh: bool
) -> None:
    before = Snapshot.of(state).resources
    if fresh:
        shutil.rmtree(state / "pipelines")
    argv = ["run", *common(server, state), "--start", FROM.isoformat()]

    assert run_cli(argv, {}) == 0

    assert "--start is ignored for records, metrics" in caplog.text
    for table in ("records", "metrics"):
        after = Snapshot.of(state).resources[table]
        assert after["watermark"] == before[table]["watermark"]


def test_other_filters_than_the_watermarks_exit_2_until_accepted(
    server: SandboxServer, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    narrowed = ["run", *common(server, state), "--service", "api"]
    refused(
        capsys,
        state,
        narrowed,
        2,
        "The filters of records are not the ones",
        "they were none, and are now service_name IN ('api')",
        "logfire-sync run --accept-filter-change",
    )

    assert run_cli([*narrowed, "--accept-filter-change"], {}) == 0
    assert run_cli(narrowed, {}) == 0
