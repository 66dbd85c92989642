"""The `logfire-sandbox` command (also `python -m sandbox`).

`serve` runs a local Logfire query API over generated or saved telemetry;
`generate` writes generated telemetry as Parquet, for `serve --data`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from sandbox import faults as faults_module

logger = logging.getLogger(__name__)

_FAULTS_HELP = """\
fault spec: comma-separated key=value settings, e.g.
  rate=0.3,kinds=500+502+429+truncate,seed=7,retry_after=1,slow_seconds=2
rate: chance a query request gets a fault (default 1 with kinds, else 0);
kinds: joined by +, from: {kinds};
seed: makes the draws repeatable; retry_after: seconds a 429 asks to wait;
slow_seconds: delay of "slow"; force=KIND*N+...: the next requests get these.

A running server also answers, with the same token: POST /sandbox/faults (body:
a spec) to change the plan, POST /sandbox/clock ({{"seconds": N}}) to move the
clock on, and GET /sandbox/counters (DELETE resets them)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser, with its `serve` and `generate` commands."""
    parser = argparse.ArgumentParser(
        prog="logfire-sandbox",
        description="A local, offline stand-in for Pydantic Logfire's query API.",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="logging level (default WARNING)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_generate(commands)
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument(
        "--records", type=int, default=200_000, help="records rows (default 200000)"
    )
    parser.add_argument(
        "--metrics", type=int, default=50_000, help="metrics rows (default 50000)"
    )
    parser.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help="hours of history, ending now (default 24)",
    )


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the query API",
        description=(
            "Serve Logfire's query API (POST /v2/query), on loopback by default."
        ),
        epilog=_FAULTS_HELP.format(kinds=" ".join(faults_module.ALL_KINDS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument(
        "--port", type=int, default=8765, help="default 8765; 0 picks a free port"
    )
    serve.add_argument(
        "--token", default="sandbox-token", help="read token (default sandbox-token)"
    )
    _add_data_options(serve)
    serve.add_argument(
        "--data",
        type=Path,
        help="serve records.parquet / metrics.parquet from this folder instead",
    )
    serve.add_argument("--faults", default="", help="a fault spec (see below)")
    serve.add_argument(
        "--live",
        action="store_true",
        help="keep producing telemetry as time passes, at the --records/--hours rate",
    )
    serve.add_argument(
        "--speed", type=float, default=1.0, help="clock seconds per real second"
    )
    serve.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to each request"
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="cap on queries running at once; more wait, then get 429",
    )
    serve.add_argument(
        "--queue-timeout",
        type=float,
        default=10.0,
        help="seconds a query may wait for the cap (default 10)",
    )
    serve.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="stream results in batches of at most this many rows",
    )
    serve.add_argument(
        "--no-arrow-end-marker",
        dest="arrow_end_marker",
        action="store_false",
        help="end Arrow streams without their end-of-stream marker",
    )


def _add_generate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    generate = commands.add_parser(
        "generate",
        help="write generated telemetry as Parquet",
        description="Write records.parquet and metrics.parquet into a folder.",
    )
    generate.add_argument("--out", type=Path, required=True, help="output folder")
    _add_data_options(generate)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "generate":
            return _generate(args)
        return _serve(args)
    except (ValueError, OSError) as error:
        print(f"logfire-sandbox: {error}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from sandbox.clock import Clock
    from sandbox.server import SandboxServer
    from sandbox.store import Store

    plan = faults_module.FaultPlan.parse(args.faults)
    _use_jemalloc()
    clock = Clock(speed=args.speed)
    store = Store.from_parquet_dir(args.data) if args.data else None
    server = SandboxServer(
        store,
        token=args.token,
        host=args.host,
        port=args.port,
        clock=clock,
        faults=plan,
        seed=args.seed,
        records=args.records,
        metrics=args.metrics,
        hours=args.hours,
        live=args.live,
        latency=args.latency,
        max_concurrent_queries=args.max_concurrent,
        queue_timeout=args.queue_timeout,
        arrow_end_marker=args.arrow_end_marker,
        batch_rows=args.batch_rows,
    )
    stop = _stop_on_signals()
    with server:
        print(f"Logfire sandbox serving on {server.url}", flush=True)
        print(
            f"Read token: {server.token} (LogfireQueryClient(token, "
            f"base_url={server.url!r}))",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    print("Logfire sandbox stopped.", flush=True)
    return 0


def _use_jemalloc() -> None:
    """Allocate Arrow memory with jemalloc, unless a pool was chosen.

    pyarrow's default allocator, mimalloc, asks the kernel for transparent huge
    pages, which some virtual machines are slow to fault in: reading 2 GB of
    Parquet took 15 s of system time with mimalloc there, 2 s with jemalloc.
    """
    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        logger.debug("This pyarrow has no jemalloc; keeping its default pool.")
        return
    pa.set_memory_pool(pool)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("Received signal %s; stopping.", signum)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _generate(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from sandbox.generator import generate_metrics, generate_records

    end = datetime.now(UTC)
    start = end - timedelta(hours=args.hours)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = {
        "records": generate_records(args.records, seed=args.seed, start=start, end=end),
        "metrics": generate_metrics(
            args.metrics, seed=args.seed + 1, start=start, end=end
        ),
    }
    for name, table in tables.items():
        path = args.out / f"{name}.parquet"
        pq.write_table(table, path)
        print(f"Wrote {table.num_rows} {name} rows to {path}", flush=True)
    return 0
