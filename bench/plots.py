"""The benchmark's scaling curves as PNG files, next to its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = dict[str, Any]


def write_plots(runs: list[Row], folder: Path) -> list[Path]:
    """Plot rows/s by concurrency and peak memory by rows; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    return [
        _concurrency_plot(runs, folder / "concurrency.png"),
        _memory_plot(runs, folder / "memory.png"),
    ]


def _concurrency_plot(runs: list[Row], path: Path) -> Path:
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str, float], list[tuple[int, float]]] = {}
    for run in runs:
        if run["contender"] in ("connector", "fetch") and run["purpose"] == "matrix":
            key = (run["table"], run["destination"], run["latency_ms"])
            series.setdefault(key, []).append(
                (run["concurrency"], run["rows_per_second"])
            )
    tables = sorted({table for table, _, _ in series})
    figure, panels = plt.subplots(
        1, max(len(tables), 1), figsize=(11, 5), squeeze=False
    )
    colors = {"duckdb": "tab:blue", "parquet": "tab:orange", "none": "tab:gray"}
    for axes, table in zip(panels[0], tables, strict=False):
        for (name, destination, latency), points in sorted(series.items()):
            if name != table:
                continue
            points.sort()
            label = "bare fetch" if destination == "none" else f"to {destination}"
            axes.plot(
                [c for c, _ in points],
                [rate for _, rate in points],
                "-" if latency == 0 else "--",
                marker="s" if destination == "none" else "o",
                color=colors.get(destination),
                label=f"{label}, {latency:.0f} ms",
            )
        axes.set_title(table)
        axes.set_xlabel("concurrency (windows read at once)")
        axes.set_xticks(sorted({c for points in series.values() for c, _ in points}))
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    panels[0][0].set_ylabel("rows per second, end to end")
    figure.suptitle("Throughput by concurrency: the connector and the bare fetch")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _memory_plot(runs: list[Row], path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for destination in sorted({run["destination"] for run in runs}):
        points = sorted(
            (run["rows"], run["peak_rss_bytes"] / 2**20)
            for run in runs
            if run["contender"] == "connector"
            and run["table"] == "records"
            and run["destination"] == destination
            and run["concurrency"] == 1
            and run["latency_ms"] == 0
        )
        if points:
            axes.plot(
                [r for r, _ in points],
                [m for _, m in points],
                marker="o",
                label=f"records -> {destination}",
            )
    axes.set_xlabel("rows synced (concurrency 1, no added latency)")
    axes.set_ylabel("peak resident memory, MiB")
    axes.set_title("The connector's peak memory against rows")
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
