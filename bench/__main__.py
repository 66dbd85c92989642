"""``python -m bench``: run the benchmark, print its table, write its results.

The defaults are the issue's workloads (2 million records, 500,000 metrics)
and take about ten minutes on two cores; ``--records 3000 --metrics 500``
and narrower lists make a quick check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import harness, plots, report

RESULTS = Path(__file__).parent / "results"


def build_parser() -> argparse.ArgumentParser:
    """The command line, whose defaults are the issue's benchmark."""
    plan = harness.Plan()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--records", type=int, default=plan.records)
    parser.add_argument("--metrics", type=int, default=plan.metrics)
    parser.add_argument("--tables", default=",".join(plan.tables))
    parser.add_argument("--destinations", default=",".join(plan.destinations))
    parser.add_argument("--concurrency", default=",".join(map(str, plan.concurrencies)))
    parser.add_argument(
        "--fetch-concurrency", default=",".join(map(str, plan.fetch_concurrencies))
    )
    parser.add_argument(
        "--latencies",
        default=",".join(map(str, plan.latencies)),
        help="seconds added to each request, one server each",
    )
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=plan.baseline_rows,
        help="rows the SDK baseline reads per run (its rows/s is what counts)",
    )
    parser.add_argument(
        "--scaling-rows",
        default=",".join(map(str, plan.scaling_rows)),
        help="smaller records syncs whose peak memory is set against the full one",
    )
    parser.add_argument("--seed", type=int, default=plan.seed)
    parser.add_argument("--workdir", type=Path, default=plan.workdir)
    parser.add_argument(
        "--data", type=Path, help="serve this folder's Parquet instead of generating"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-plots", action="store_true", help="write no PNG (no matplotlib needed)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = build_parser().parse_args(argv)
    plan = harness.Plan(
        records=args.records,
        metrics=args.metrics,
        tables=harness.parse_list(args.tables),
        destinations=harness.parse_list(args.destinations),
        concurrencies=harness.parse_list(args.concurrency, int),
        fetch_concurrencies=harness.parse_list(args.fetch_concurrency, int),
        latencies=harness.parse_list(args.latencies, float),
        baseline_rows=args.baseline_rows,
        scaling_rows=harness.parse_list(args.scaling_rows, int),
        seed=args.seed,
        workdir=args.workdir,
        data=args.data,
    )
    results = harness.run(plan)
    found = report.goals(results["runs"])
    results["goals"] = report.goals_json(found)
    results["command"] = " ".join(["python -m bench", *(argv or sys.argv[1:])])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(report.markdown(results["runs"], found))
    if not args.no_plots:
        plots.write_plots(results["runs"], args.out)

    print(report.table(results["runs"]))
    print()
    print(report.goals_table(found))
    print(f"\nWrote {args.out / 'results.json'} in {results['seconds']:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
