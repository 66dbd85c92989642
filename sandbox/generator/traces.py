"""Traces drawn from the templates: their shape, then the timing of their spans.

`draw_traces` draws what holds for a whole trace (template, start, duration,
outcome); `lay_out` expands each trace into rows, one per copy of each present
node; `place` times every row inside its parent, level by level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sandbox.generator.columns import random_words
from sandbox.generator.record_catalog import RecordCatalog
from sandbox.generator.services import ENVIRONMENT_WEIGHTS, ENVIRONMENTS, REPLICAS
from sandbox.generator.timing import SECOND, skews
from sandbox.generator.typing import F64, I64, U64, Bool
from sandbox.generator.vocabulary import (
    STATUS_CODES,
    STATUS_FAILED_SHARES,
    STATUS_OK_SHARES,
    param_table,
)

_LONG_JOB_HOURS = (1.2, 20.0)
"""How long a batch job runs: long enough to be stored hours after it began, short
enough that it is stored within the 24 hours Logfire accepts."""


@dataclass(frozen=True)
class Traces:
    """What is drawn once per trace."""

    template: I64
    start: I64
    duration: I64
    failed: Bool
    environment: I64
    replica: I64
    skew: I64
    ok_status: I64
    failed_status: I64
    failure_draw: F64
    param_draw: npt.NDArray[np.float32]
    words: U64


@dataclass(frozen=True)
class Layout:
    """Each row's place: its trace, template node, copy number and parent row."""

    trace: I64
    node: I64
    rank: I64
    copies: I64
    parent: I64
    root: I64
    """The root row of every trace that kept at least one row."""


def draw_traces(
    rng: np.random.Generator, catalog: RecordCatalog, count: int, lo: int, hi: int
) -> Traces:
    """Draw `count` traces starting in [`lo`, `hi`), sorted by start."""
    template = rng.choice(len(catalog.weight), size=count, p=catalog.weight)
    scale = np.clip(rng.lognormal(0.0, 0.6, count), 0.1, 8.0)
    seconds = catalog.root_seconds[template] * scale
    shortest, longest = (math.log(hours) for hours in _LONG_JOB_HOURS)
    hours = np.exp(rng.uniform(shortest, longest, count))
    seconds = np.where(catalog.long[template], hours * 3600.0, seconds)
    statuses = len(STATUS_CODES)
    return Traces(
        template=template,
        start=np.sort(rng.integers(lo, hi, count)),
        duration=(seconds * SECOND).astype(np.int64),
        failed=rng.random(count) < catalog.failure_rate[template],
        environment=rng.choice(len(ENVIRONMENTS), size=count, p=ENVIRONMENT_WEIGHTS),
        replica=rng.integers(0, REPLICAS, count),
        skew=skews(rng, count, catalog.skew_share),
        ok_status=rng.choice(statuses, size=count, p=STATUS_OK_SHARES),
        failed_status=rng.choice(statuses, size=count, p=STATUS_FAILED_SHARES),
        failure_draw=rng.random(count),
        param_draw=rng.random((count, len(param_table().size)), dtype=np.float32),
        words=random_words(rng, (count, 2)),
    )


def lay_out(
    rng: np.random.Generator, catalog: RecordCatalog, traces: Traces, n: int
) -> Layout | None:
    """Expand traces into their first `n` rows, or None if they hold fewer."""
    nodes = catalog.nodes
    per_trace = catalog.node_count[traces.template]
    trace_first_pair = np.cumsum(per_trace) - per_trace
    pair_trace = np.repeat(np.arange(len(per_trace)), per_trace)
    pair_local = np.arange(len(pair_trace)) - trace_first_pair[pair_trace]
    pair_node = catalog.first_node[traces.template][pair_trace] + pair_local

    copies = rng.integers(nodes.repeat_low[pair_node], nodes.repeat_high[pair_node] + 1)
    when = nodes.when[pair_node]
    failed = traces.failed[pair_trace]
    absent = ((when == 1) & ~failed) | ((when == 2) & failed)
    copies = np.where(absent, 0, copies)
    if copies.sum() < n:
        return None

    pair_first_row = np.cumsum(copies) - copies
    row_pair = np.repeat(np.arange(len(copies)), copies)[:n]
    trace = pair_trace[row_pair]
    node = pair_node[row_pair]
    parent_local = nodes.parent[node]
    parent_pair = trace_first_pair[trace] + np.maximum(parent_local, 0)
    kept = int(trace[-1]) + 1
    return Layout(
        trace=trace,
        node=node,
        rank=np.arange(n) - pair_first_row[row_pair],
        copies=copies[row_pair],
        parent=np.where(parent_local >= 0, pair_first_row[parent_pair], -1),
        root=pair_first_row[trace_first_pair[:kept]],
    )


def place(
    rng: np.random.Generator, catalog: RecordCatalog, traces: Traces, rows: Layout
) -> tuple[I64, I64]:
    """Start and end of every row, each child inside its parent."""
    nodes = catalog.nodes
    n = len(rows.node)
    spans = nodes.kind[rows.node] == 0
    slot = nodes.length[rows.node] / rows.copies
    slot_start = nodes.at[rows.node] + slot * rows.rank
    jitter, stretch = rng.random(n), rng.random(n)
    offset = np.where(
        spans, slot_start + slot * 0.15 * jitter, slot_start + slot * jitter
    )
    share = np.where(spans, slot * (0.45 + 0.4 * stretch), 0.0)

    start = np.empty(n, dtype=np.int64)
    duration = np.empty(n, dtype=np.int64)
    depth = nodes.depth[rows.node]
    roots = np.flatnonzero(depth == 0)
    start[roots] = traces.start[rows.trace[roots]]
    duration[roots] = np.where(spans[roots], traces.duration[rows.trace[roots]], 0)
    for level in range(1, int(depth.max()) + 1):
        rows_here = np.flatnonzero(depth == level)
        parent = rows.parent[rows_here]
        start[rows_here] = start[parent] + (
            offset[rows_here] * duration[parent]
        ).astype(np.int64)
        duration[rows_here] = (share[rows_here] * duration[parent]).astype(np.int64)
    return start, start + duration
