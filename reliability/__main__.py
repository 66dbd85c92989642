"""`python -m reliability`: the fault matrix, the crash test, the soak, the load test.

Each command prints what it measured and exits with 0 when the destination
equals the source and every other check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from reliability.crash import CrashOptions, run_crash
from reliability.faultmatrix import matrix, run_matrix
from reliability.load import LoadOptions, run_load
from reliability.processes import quiet_dlt_environment
from reliability.soak import SoakOptions, run_soak


def main(argv: Sequence[str] | None = None) -> int:
    """Run one reliability check; returns the exit code."""
    args = _parser().parse_args(argv)
    for name, value in quiet_dlt_environment().items():
        os.environ.setdefault(name, value)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        passed = args.command(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="reliability-") as folder:
            passed = args.command(args, Path(folder))
    return 0 if passed else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability",
        description="Reliability checks of logfire-sync against the sandbox.",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep data, state and destinations here"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    faults = commands.add_parser(
        "faults", help="each fault kind alone, then all mixed, over many seeds"
    )
    faults.add_argument("--seeds", type=int, default=30, help="mixed seeds (30)")
    faults.add_argument(
        "--unmarked", type=int, default=10, help="mixed seeds without the marker"
    )
    faults.add_argument("--rate", type=float, default=0.3, help="fault share (0.3)")
    faults.add_argument("--first-seed", type=int, default=0)
    faults.set_defaults(command=_faults)

    crash = commands.add_parser("crash", help="SIGKILL a 7-day backfill repeatedly")
    crash.add_argument("--kills", type=int, default=20, help="kills (20)")
    crash.add_argument("--seed", type=int, default=0)
    crash.add_argument("--records", type=int, default=CrashOptions.records)
    crash.add_argument("--metrics", type=int, default=CrashOptions.metrics)
    crash.add_argument(
        "--chunk-hours", type=float, default=3.0, help="backfill chunk (3 h)"
    )
    crash.set_defaults(command=_crash)

    soak = commands.add_parser("soak", help="a simulated day of live traffic")
    soak.add_argument("--hours", type=float, default=24.0, help="simulated (24)")
    soak.add_argument("--speed", type=float, default=200.0, help="clock speed")
    soak.add_argument("--every-minutes", type=float, default=5.0)
    soak.add_argument("--fault-rate", type=float, default=0.2)
    soak.add_argument("--records-per-hour", type=int, default=6_000)
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument(
        "--live-feed",
        action="store_true",
        help="store the traffic from the live feed's thread as the clock runs",
    )
    soak.set_defaults(command=_soak)

    load = commands.add_parser(
        "load", help="4 windows in flight, a query cap and a request budget"
    )
    load.add_argument("--budget", type=int, default=40, help="requests per minute (40)")
    load.add_argument("--records", type=int, default=20_000)
    load.add_argument("--max-concurrent", type=int, default=2)
    load.set_defaults(command=_load)
    return parser


def _faults(args: argparse.Namespace, workdir: Path) -> bool:
    cases = matrix(
        args.seeds, rate=args.rate, first_seed=args.first_seed, unmarked=args.unmarked
    )
    results = run_matrix(cases, workdir)
    failed = [result for result in results if not result.exact]
    print(f"{len(results) - len(failed)} of {len(results)} cases exact.")
    for result in failed:
        for comparison in result.comparisons:
            print(f"  {result.case}: {comparison}")
    return not failed


def _crash(args: argparse.Namespace, workdir: Path) -> bool:
    options = CrashOptions(
        kills=args.kills,
        seed=args.seed,
        records=args.records,
        metrics=args.metrics,
        chunk=timedelta(hours=args.chunk_hours),
    )
    result = run_crash(options, workdir)
    over = [kill for kill in result.kills if not kill.within_one_chunk]
    print(
        f"{len(result.kills)} kills in {result.seconds:.0f} s; at most "
        f"{result.most_redone:,} rows read again after one kill (largest chunk "
        f"{result.largest_chunk:,} rows); {result.rows_served:,} rows served for "
        f"{result.rows_expected:,} in the week; finished in {result.final_runs} "
        f"run(s) after the last kill, reading {max(result.final_redone, 0):,} "
        "rows again."
    )
    for kill in over:
        print(f"  redid more than its chunk: {kill}")
    return result.passed


def _soak(args: argparse.Namespace, workdir: Path) -> bool:
    options = SoakOptions(
        hours=args.hours,
        speed=args.speed,
        every=timedelta(minutes=args.every_minutes),
        fault_rate=args.fault_rate,
        records_per_hour=args.records_per_hour,
        metrics_per_hour=args.records_per_hour // 4,
        seed=args.seed,
        live_feed=args.live_feed,
    )
    result = run_soak(options, workdir)
    faults = sum(result.faults.values())
    print(
        f"Simulated {result.simulated} in {result.seconds:.0f} s: {result.syncs} "
        f"syncs ({result.failed_syncs} gave up), {result.requests:,} requests, "
        f"{faults} faults, {result.rows:,} rows; worst watermark lag after a "
        f"sync {result.largest_lag}, worst feed lag {result.feed_lag}."
    )
    return result.exact


def _load(args: argparse.Namespace, workdir: Path) -> bool:
    options = LoadOptions(
        budget=args.budget,
        records=args.records,
        metrics=args.records // 5,
        max_concurrent_queries=args.max_concurrent,
    )
    return run_load(options, workdir).passed


if __name__ == "__main__":
    sys.exit(main())
