"""Running the benchmark: the data, the sandbox servers and every contender.

The data is generated once as Parquet. For each latency a sandbox server runs
in a process of its own over that data, with its clock all but stopped, so
every contender sees the same rows up to the same horizon. Each contender runs
in a child process; its peak resident memory comes from ``wait4``, and the
bytes and requests the server saw from the server's counters, reset before
each contender. Each contender also reads its own CPU time and the server's
while it is timed: their sum over the cores is the least time the run could
have taken on this machine.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.contender import PAGE_ROWS, DestinationName, Kind, Spec

TOKEN = "bench-token"
_CLOCK_SPEED = 1e-6
"""The servers' clock speed: all but stopped, so the horizon stays put."""

_SERVER_START_SECONDS = 300.0


@dataclass(frozen=True)
class Plan:
    """What one benchmark invocation runs.

    Attributes:
        records: Rows of `records` to generate.
        metrics: Rows of `metrics` to generate.
        tables: The workloads.
        destinations: ``duckdb`` and ``parquet`` (files on the filesystem).
        concurrencies: The connector's concurrencies.
        fetch_concurrencies: The bare fetch's concurrencies. Beyond 1 they run
            only with latency, as the concurrency goal is measured there: they
            show how far the sandbox itself lets more readers go.
        latencies: Seconds of latency added to each request, one server each.
        baseline_rows: About how many rows the SDK baseline reads per run;
            at its speed the whole table would take most of an hour.
        scaling_rows: Smaller syncs of `records` whose peak memory is set
            against the full one's.
        seed: The data's seed.
        workdir: A scratch folder for data, pipelines and destinations.
        data: Serve this folder's Parquet instead of generating data.
    """

    records: int = 2_000_000
    metrics: int = 500_000
    tables: tuple[str, ...] = ("records", "metrics")
    destinations: tuple[DestinationName, ...] = ("duckdb", "parquet")
    concurrencies: tuple[int, ...] = (1, 2, 4)
    fetch_concurrencies: tuple[int, ...] = (1, 4)
    latencies: tuple[float, ...] = (0.0, 0.05)
    baseline_rows: int = 10_000
    scaling_rows: tuple[int, ...] = (200_000, 600_000)
    seed: int = 1
    workdir: Path = Path("bench/.work")
    data: Path | None = None


@dataclass
class Run:
    """The figures of one contender run."""

    contender: Kind
    table: str
    destination: DestinationName
    concurrency: int
    latency_ms: float
    rows: int
    requests: int
    windows: int
    seconds: float
    bytes: int
    server_requests: int
    peak_rss_bytes: int
    purpose: str = "matrix"
    cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Rows per second of the run."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        """Response bytes per second of the run."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_request(self) -> float:
        """Rows per request."""
        return self.rows / self.requests if self.requests else 0.0

    @property
    def cpu_floor_seconds(self) -> float | None:
        """The least time the run's CPU, the server's included, takes on the cores.

        The contender and the sandbox share the machine, so no run can be
        faster than the CPU both of them spent, spread over every core.
        """
        if self.server_cpu_seconds is None:
            return None
        return (self.cpu_seconds + self.server_cpu_seconds) / cores()

    def to_json(self) -> dict[str, Any]:
        """The run as JSON, the derived figures included."""
        data = asdict(self)
        data["rows_per_second"] = self.rows_per_second
        data["bytes_per_second"] = self.bytes_per_second
        data["rows_per_request"] = self.rows_per_request
        data["cpu_floor_seconds"] = self.cpu_floor_seconds
        return data


@dataclass(frozen=True)
class _Data:
    """The generated data, and where each table's reads start."""

    folder: Path
    starts: dict[str, datetime]
    records_cut: dict[int, float]
    """Seconds after the start of `records` that hold the first N rows."""


def run(plan: Plan, log: Any = sys.stderr) -> dict[str, Any]:
    """Run the whole plan and return its figures as JSON-ready data."""
    started = time.perf_counter()
    plan.workdir.mkdir(parents=True, exist_ok=True)
    data = _prepare_data(plan, log)

    runs: list[Run] = []
    for latency in plan.latencies:
        with _server(data.folder, latency, plan.workdir, log) as (url, pid):
            for table in plan.tables:
                for spec, purpose in _specs(plan, data, table, latency, url):
                    spec = replace(spec, server_pid=pid)
                    result = _run_contender(spec, latency, url, plan.workdir, purpose)
                    _log_run(result, log)
                    runs.append(result)

    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
        "machine": machine(),
        "plan": _plan_json(plan),
        "runs": [result.to_json() for result in runs],
    }


def _specs(
    plan: Plan, data: _Data, table: str, latency: float, url: str
) -> Iterator[tuple[Spec, str]]:
    """The contenders to run against one server, for one table."""
    base = Spec(
        kind="fetch",
        table=table,
        destination="none",
        url=url,
        token=TOKEN,
        start=data.starts[table].isoformat(),
        workdir="",
        result_path="",
    )
    for concurrency in plan.fetch_concurrencies:
        if concurrency == 1 or latency > 0:
            yield replace(base, concurrency=concurrency), "matrix"

    for destination in plan.destinations:
        yield (
            replace(
                base, kind="sdk", destination=destination, max_rows=plan.baseline_rows
            ),
            "matrix",
        )
        for concurrency in plan.concurrencies:
            incremental = concurrency == 1 and latency == 0
            yield (
                replace(
                    base,
                    kind="connector",
                    destination=destination,
                    concurrency=concurrency,
                    incremental=incremental,
                ),
                "matrix",
            )

    if table != "records" or latency != 0:
        return
    for destination in plan.destinations:
        for rows in plan.scaling_rows:
            if rows not in data.records_cut:
                continue
            yield (
                replace(
                    base,
                    kind="connector",
                    destination=destination,
                    until_seconds=data.records_cut[rows],
                ),
                f"scaling-{rows}",
            )


def _run_contender(
    spec: Spec, latency: float, url: str, workdir: Path, purpose: str
) -> Run:
    """Run one contender in a child process and gather its figures."""
    name = f"{spec.kind}-{spec.table}-{spec.destination}-c{spec.concurrency}"
    folder = workdir / "runs" / f"{name}-{int(latency * 1000)}ms-{purpose}"
    _clear(folder)
    folder.mkdir(parents=True)
    result_path = folder / "result.json"
    spec = replace(spec, workdir=str(folder), result_path=str(result_path))

    _reset_counters(url)
    command = [sys.executable, "-m", "bench.contender", json.dumps(asdict(spec))]
    with (folder / "output.log").open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=_child_env()
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result_path.is_file():
        tail = (folder / "output.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"The contender {name} failed:\n{tail}")

    figures = json.loads(result_path.read_text())
    counters = _counters(url)
    _clear(folder / "files")
    _clear(folder / "bench.duckdb")
    return Run(
        contender=spec.kind,
        table=spec.table,
        destination=spec.destination,
        concurrency=spec.concurrency,
        latency_ms=latency * 1000,
        rows=figures["rows"],
        requests=figures["requests"],
        windows=figures["windows"],
        seconds=figures["seconds"],
        bytes=counters["bytes_served"],
        server_requests=counters["requests"]["total"],
        # Linux reports the peak in kilobytes.
        peak_rss_bytes=usage.ru_maxrss * 1024,
        purpose=purpose,
        cpu_seconds=figures["cpu_seconds"],
        server_cpu_seconds=figures["server_cpu_seconds"],
        extra=figures["extra"],
    )


def _child_env() -> dict[str, str]:
    """The environment of every child: no Airflow secrets lookups."""
    env = dict(os.environ)
    # With Airflow installed, dlt asks its secrets backend for every config
    # key, which costs seconds per sync; users without Airflow never pay it.
    env["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] = "false"
    env.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    return env


def _prepare_data(plan: Plan, log: Any) -> _Data:
    """Generate the data once (or use the given folder) and read its starts."""
    folder = plan.data or plan.workdir / "data"
    if plan.data is None:
        _clear(folder)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox",
                "generate",
                "--out",
                str(folder),
                "--records",
                str(plan.records),
                "--metrics",
                str(plan.metrics),
                "--hours",
                "24",
                "--seed",
                str(plan.seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=_child_env(),
        )
        print(f"generated the data in {time.perf_counter() - started:.1f} s", file=log)

    starts: dict[str, datetime] = {}
    cuts: dict[int, float] = {}
    for table in plan.tables:
        created = pq.read_table(folder / f"{table}.parquet", columns=["created_at"])
        column = pc.sort_indices(created["created_at"])
        ordered = created["created_at"].take(column)
        first = ordered[0].as_py().replace(microsecond=0)
        starts[table] = first
        if table == "records":
            for rows in plan.scaling_rows:
                if rows < len(ordered):
                    cut = ordered[rows].as_py()
                    cuts[rows] = (cut - first).total_seconds()
    return _Data(folder, starts, cuts)


@contextmanager
def _server(
    folder: Path, latency: float, workdir: Path, log: Any
) -> Iterator[tuple[str, int]]:
    """A sandbox server over `folder` in its own process; yields its URL and pid."""
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "serve",
        "--data",
        str(folder),
        "--port",
        "0",
        "--token",
        TOKEN,
        "--latency",
        str(latency),
        "--speed",
        str(_CLOCK_SPEED),
    ]
    started = time.perf_counter()
    log_path = workdir / f"server-{int(latency * 1000)}ms.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=_child_env()
        )
    try:
        url = _wait_for_url(process, log_path)
        print(
            f"sandbox with {latency * 1000:.0f} ms latency up on {url} in "
            f"{time.perf_counter() - started:.1f} s",
            file=log,
        )
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path) -> str:
    """The URL the server prints once it serves."""
    deadline = time.monotonic() + _SERVER_START_SECONDS
    marker = "serving on "
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if marker in line:
                return line.split(marker, 1)[1].strip()
        if process.poll() is not None:
            raise RuntimeError(f"The sandbox server stopped:\n{text[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError("The sandbox server did not start in time.")


def _reset_counters(url: str) -> None:
    httpx.delete(f"{url}/sandbox/counters", headers=_auth()).raise_for_status()


def _counters(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/sandbox/counters", headers=_auth())
    response.raise_for_status()
    counters: dict[str, Any] = response.json()
    return counters


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _clear(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    elif path.exists():
        path.unlink()


def _log_run(result: Run, log: Any) -> None:
    print(
        f"{result.contender:9s} {result.table:7s} {result.destination:7s} "
        f"c={result.concurrency} {result.latency_ms:3.0f} ms {result.purpose:16s} "
        f"{result.rows:9,d} rows {result.seconds:7.1f} s "
        f"{result.rows_per_second:9,.0f} rows/s {result.requests:5d} requests "
        f"{result.peak_rss_bytes / 2**20:6.0f} MiB {result.cpu_seconds:6.1f} s CPU",
        file=log,
        flush=True,
    )


def _plan_json(plan: Plan) -> dict[str, Any]:
    data = asdict(plan)
    data["workdir"] = str(plan.workdir)
    data["data"] = None if plan.data is None else str(plan.data)
    data["page_rows"] = PAGE_ROWS
    return data


def cores() -> int:
    """The cores this process and its children may run on."""
    return len(os.sched_getaffinity(0))


def machine() -> dict[str, Any]:
    """The machine the figures were taken on."""
    return {
        "cpus": os.cpu_count(),
        "cores_usable": cores(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def parse_list(text: str, kind: type = str) -> tuple[Any, ...]:
    """A comma-separated option as a tuple."""
    return tuple(kind(part) for part in text.split(",") if part.strip())


__all__: Sequence[str] = ["Plan", "Run", "cores", "machine", "parse_list", "run"]
