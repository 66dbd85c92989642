"""The benchmark's table, and its goals checked as ratios within one run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from bench.contender import PAGE_ROWS

Row = dict[str, Any]


@dataclass(frozen=True)
class Goal:
    """One goal of the issue, measured on one workload."""

    goal: str
    workload: str
    measured: float
    target: float
    passed: bool
    detail: str


def find(runs: Iterable[Row], **where: Any) -> Row | None:
    """The first run whose fields match `where` (purpose ``matrix`` unless given)."""
    where.setdefault("purpose", "matrix")
    for run in runs:
        if all(run.get(key) == value for key, value in where.items()):
            return run
    return None


def goals(runs: list[Row]) -> list[Goal]:
    """Every goal that the runs can measure."""
    return [
        *_faster_than_sdk(runs),
        *_close_to_fetch(runs),
        *_concurrency_gain(runs),
        *_flat_memory(runs),
        *_request_count(runs),
        *_cheap_incremental(runs),
    ]


def _workloads(runs: list[Row], contender: str) -> Iterator[tuple[str, str, float]]:
    """The (table, destination, latency) of every matrix run of `contender`."""
    seen = set()
    for run in runs:
        key = (run["table"], run["destination"], run["latency_ms"])
        matrix = run["contender"] == contender and run["purpose"] == "matrix"
        if matrix and key not in seen:
            seen.add(key)
            yield key


def _name(table: str, destination: str, latency: float) -> str:
    return f"{table} -> {destination}, {latency:.0f} ms"


def _faster_than_sdk(runs: list[Row]) -> Iterator[Goal]:
    for table, destination, latency in _workloads(runs, "connector"):
        where = {"table": table, "destination": destination, "latency_ms": latency}
        sdk = find(runs, contender="sdk", **where)
        for concurrency in (1, 4):
            ours = find(runs, contender="connector", concurrency=concurrency, **where)
            if sdk is None or ours is None or not sdk["rows_per_second"]:
                continue
            ratio = ours["rows_per_second"] / sdk["rows_per_second"]
            best = _best_rate(ours)
            most = None if best is None else best / sdk["rows_per_second"]
            yield Goal(
                f"connector c={concurrency} >= 30x the SDK in rows/s",
                _name(table, destination, latency),
                ratio,
                30.0,
                ratio >= 30.0,
                f"{ours['rows_per_second']:,.0f} vs "
                f"{sdk['rows_per_second']:,.0f} rows/s" + _allowed(most, "at most"),
            )


def _close_to_fetch(runs: list[Row]) -> Iterator[Goal]:
    for table, destination, latency in _workloads(runs, "connector"):
        where = {"table": table, "latency_ms": latency, "concurrency": 1}
        fetch = find(runs, contender="fetch", **where)
        ours = find(runs, contender="connector", destination=destination, **where)
        if fetch is None or ours is None or not ours["rows_per_second"]:
            continue
        # Time per row, as both read the same rows up to the same horizon.
        ratio = fetch["rows_per_second"] / ours["rows_per_second"]
        best = _best_rate(ours)
        least = None if best is None else fetch["rows_per_second"] / best
        yield Goal(
            "connector c=1 time <= 1.5x the bare fetch's",
            _name(table, destination, latency),
            ratio,
            1.5,
            ratio <= 1.5,
            f"{ours['seconds']:.1f} s vs {fetch['seconds']:.1f} s"
            + _allowed(least, "no less than"),
        )


def _concurrency_gain(runs: list[Row]) -> Iterator[Goal]:
    for table, destination, latency in _workloads(runs, "connector"):
        if latency < 50:
            continue
        where = {"table": table, "destination": destination, "latency_ms": latency}
        one = find(runs, contender="connector", concurrency=1, **where)
        four = find(runs, contender="connector", concurrency=4, **where)
        if one is None or four is None or not one["rows_per_second"]:
            continue
        ratio = four["rows_per_second"] / one["rows_per_second"]
        best = _best_rate(four)
        most = None if best is None else best / one["rows_per_second"]
        detail = (
            f"{four['rows_per_second']:,.0f} vs {one['rows_per_second']:,.0f} rows/s"
        )
        yield Goal(
            "c=4 >= 2.5x c=1 in rows/s with latency",
            _name(table, destination, latency),
            ratio,
            2.5,
            ratio >= 2.5,
            detail + _fetch_gain(runs, table, latency) + _allowed(most, "at most"),
        )


def _best_rate(run: Row) -> float | None:
    """The rows per second the CPU the run spent allows at best, if measured.

    A run takes at least the CPU time it and the sandbox spent, spread over
    the machine's cores, whatever the connector does with its threads.
    """
    floor = run.get("cpu_floor_seconds")
    return run["rows"] / floor if floor else None


def _allowed(ratio: float | None, bound: str) -> str:
    """What the CPU the run spent allows the ratio to be, when it was measured."""
    if ratio is None:
        return ""
    return f"; the CPU spent allows {bound} {ratio:.2f}x"


def _fetch_gain(runs: list[Row], table: str, latency: float) -> str:
    """The bare fetch's own gain from 1 to 4 readers: what the server allows."""
    where = {"contender": "fetch", "table": table, "latency_ms": latency}
    one = find(runs, concurrency=1, **where)
    four = find(runs, concurrency=4, **where)
    if one is None or four is None or not one["rows_per_second"]:
        return ""
    return f"; the bare fetch: {four['rows_per_second'] / one['rows_per_second']:.2f}x"


def _flat_memory(runs: list[Row]) -> Iterator[Goal]:
    for destination in sorted({run["destination"] for run in runs}):
        full = find(
            runs,
            contender="connector",
            table="records",
            destination=destination,
            concurrency=1,
            latency_ms=0.0,
        )
        small = [
            run
            for run in runs
            if run["purpose"].startswith("scaling-")
            and run["destination"] == destination
        ]
        if full is None or not small:
            continue
        least = min(small, key=lambda run: run["rows"])
        ratio = full["peak_rss_bytes"] / least["peak_rss_bytes"]
        yield Goal(
            "peak memory of the full sync <= 1.3x a small one's",
            f"records -> {destination}, {full['rows']:,} vs {least['rows']:,} rows",
            ratio,
            1.3,
            ratio <= 1.3,
            f"{full['peak_rss_bytes'] / 2**20:,.0f} vs "
            f"{least['peak_rss_bytes'] / 2**20:,.0f} MiB",
        )


def _request_count(runs: list[Row]) -> Iterator[Goal]:
    for run in runs:
        if run["contender"] != "connector":
            continue
        allowed = 1.1 * math.ceil(run["rows"] / PAGE_ROWS) + run["windows"]
        ratio = run["requests"] / allowed if allowed else 0.0
        yield Goal(
            "requests <= 1.1 x ceil(rows / 10,000) + windows",
            f"{_name(run['table'], run['destination'], run['latency_ms'])}, "
            f"c={run['concurrency']} {run['purpose']}",
            ratio,
            1.0,
            ratio <= 1.0,
            f"{run['requests']} requests, {allowed:.0f} allowed",
        )


def _cheap_incremental(runs: list[Row]) -> Iterator[Goal]:
    for run in runs:
        extra = run.get("extra", {})
        if run["contender"] != "connector" or "incremental_seconds" not in extra:
            continue
        ratio = extra["incremental_seconds"] / extra["empty_dlt_run_seconds"]
        yield Goal(
            "a sync that finds nothing <= 2x an empty dlt run",
            _name(run["table"], run["destination"], run["latency_ms"]),
            ratio,
            2.0,
            ratio <= 2.0,
            f"{extra['incremental_seconds']:.2f} s vs "
            f"{extra['empty_dlt_run_seconds']:.2f} s, "
            f"{extra['incremental_rows']} rows",
        )


def goals_json(found: list[Goal]) -> list[dict[str, Any]]:
    """The goals as JSON-ready data."""
    return [asdict(goal) for goal in found]


def table(runs: list[Row]) -> str:
    """The runs as a fixed-width table."""
    header = (
        f"{'contender':9} {'table':7} {'dest':7} {'c':>1} {'lat':>5} "
        f"{'purpose':16} {'rows':>9} {'s':>7} {'rows/s':>9} {'MB/s':>6} "
        f"{'req':>5} {'rows/req':>8} {'peak MiB':>8} {'CPU s':>6} {'sbx CPU':>7}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        lines.append(
            f"{run['contender']:9} {run['table']:7} {run['destination']:7} "
            f"{run['concurrency']:>1} {run['latency_ms']:>3.0f}ms "
            f"{run['purpose']:16} {run['rows']:>9,} {run['seconds']:>7.1f} "
            f"{run['rows_per_second']:>9,.0f} {run['bytes_per_second'] / 1e6:>6.1f} "
            f"{run['requests']:>5} {run['rows_per_request']:>8,.0f} "
            f"{run['peak_rss_bytes'] / 2**20:>8,.0f} "
            f"{run.get('cpu_seconds', 0.0):>6.1f} {_seconds(run):>7}"
        )
    return "\n".join(lines)


def _seconds(run: Row) -> str:
    """The sandbox's CPU seconds during the run, or a dash if not read."""
    spent = run.get("server_cpu_seconds")
    return "-" if spent is None else f"{spent:.1f}"


def goals_table(found: list[Goal]) -> str:
    """The goals, one line each, PASS or FAIL with the ratio."""
    lines = []
    for goal in found:
        verdict = "PASS" if goal.passed else "FAIL"
        lines.append(
            f"{verdict} {goal.goal} [{goal.workload}]: {goal.measured:.2f} "
            f"(target {goal.target:g}; {goal.detail})"
        )
    return "\n".join(lines)


def markdown(runs: list[Row], found: list[Goal]) -> str:
    """The main runs and the goals as Markdown tables, for the README."""
    lines = [
        "| contender | table | destination | concurrency | latency | rows | "
        "seconds | rows/s | MB/s | requests | rows/request | peak MiB | CPU s | "
        "sandbox CPU s |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        lines.append(
            f"| {_label(run)} | {run['table']} | {run['destination']} | "
            f"{run['concurrency']} | {run['latency_ms']:.0f} ms | {run['rows']:,} | "
            f"{run['seconds']:.1f} | {run['rows_per_second']:,.0f} | "
            f"{run['bytes_per_second'] / 1e6:.1f} | {run['requests']} | "
            f"{run['rows_per_request']:,.0f} | {run['peak_rss_bytes'] / 2**20:,.0f} | "
            f"{run.get('cpu_seconds', 0.0):.1f} | {_seconds(run)} |"
        )
    lines += [
        "",
        "| goal | workload | measured | target | result |",
        "|---|---|--:|--:|---|",
    ]
    for goal in found:
        verdict = "pass" if goal.passed else "**fail**"
        lines.append(
            f"| {goal.goal} | {goal.workload} | {goal.measured:.2f} | "
            f"{goal.target:g} | {verdict} ({goal.detail}) |"
        )
    return "\n".join(lines) + "\n"


def _label(run: Row) -> str:
    """The contender, with its purpose when it is not the main matrix."""
    if run["purpose"] == "matrix":
        return str(run["contender"])
    return f"{run['contender']} ({run['purpose']})"
